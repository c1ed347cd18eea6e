//! The apply-conflict rule: a config file that is not the one this home
//! last applied may not remove agents that file started, unless the user
//! says `--replace`. `roster up` in another project's directory must not
//! silently stop this one's agents; applying the same file again, or a
//! file that only adds and changes agents, is never refused.

use std::path::Path;

use crate::api::ApplyConflict;
use crate::config::Config;
use crate::name::AgentName;

/// Why applying `config`, read from `file`, is refused, if it is: `last`
/// is the file this home last applied (none before the first apply) and
/// `running` the agents the supervisor has now.
pub fn conflict(
    file: &Path,
    config: &Config,
    last: Option<&Path>,
    running: &[AgentName],
    replace: bool,
) -> Option<ApplyConflict> {
    let applied = last.filter(|applied| *applied != file)?;
    let would_remove: Vec<String> = running
        .iter()
        .filter(|name| !config.agents.contains_key(*name))
        .map(|name| name.to_string())
        .collect();
    if replace || would_remove.is_empty() {
        return None;
    }
    let applied = applied.display().to_string();
    Some(ApplyConflict {
        error: format!(
            "{} is not the config this home last applied ({applied}), and applying it would remove {}\n  \
             hint: pass --replace to apply it anyway, or use another --home for this project",
            file.display(),
            would_remove.join(", ")
        ),
        applied,
        would_remove,
    })
}

/// The journal's line for a refused apply of `file` (`config_rejected`).
pub fn journal_detail(file: &Path, conflict: &ApplyConflict) -> String {
    format!(
        "{} would remove {} started by {}; not applied (no --replace)",
        file.display(),
        conflict.would_remove.join(", "),
        conflict.applied
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn config(agents: &[&str]) -> Config {
        let text: String = agents
            .iter()
            .map(|agent| format!("[agents.{agent}]\ncommand = \"sleep 100\"\n"))
            .collect();
        parse("other.toml", &text, Path::new("/tmp")).expect("valid config")
    }

    fn names(agents: &[&str]) -> Vec<AgentName> {
        agents
            .iter()
            .map(|agent| AgentName::new(agent).expect("name"))
            .collect()
    }

    const MINE: &str = "/srv/app/roster.toml";
    const OTHER: &str = "/srv/other/roster.toml";

    #[test]
    fn another_file_that_would_remove_agents_is_refused() {
        let refused = conflict(
            Path::new(OTHER),
            &config(&["web"]),
            Some(Path::new(MINE)),
            &names(&["web", "worker", "cron"]),
            false,
        )
        .expect("refused");
        assert_eq!(refused.applied, MINE);
        assert_eq!(refused.would_remove, vec!["worker", "cron"]);
        assert_eq!(
            refused.error,
            "/srv/other/roster.toml is not the config this home last applied (/srv/app/roster.toml), \
             and applying it would remove worker, cron\n  \
             hint: pass --replace to apply it anyway, or use another --home for this project"
        );
        assert_eq!(
            journal_detail(Path::new(OTHER), &refused),
            "/srv/other/roster.toml would remove worker, cron started by /srv/app/roster.toml; \
             not applied (no --replace)"
        );
    }

    #[test]
    fn replace_applies_it_anyway() {
        let applied = conflict(
            Path::new(OTHER),
            &config(&["web"]),
            Some(Path::new(MINE)),
            &names(&["web", "worker"]),
            true,
        );
        assert_eq!(applied, None);
    }

    #[test]
    fn the_same_file_may_remove_its_own_agents() {
        let applied = conflict(
            Path::new(MINE),
            &config(&["web"]),
            Some(Path::new(MINE)),
            &names(&["web", "worker"]),
            false,
        );
        assert_eq!(applied, None);
    }

    #[test]
    fn another_file_that_removes_nothing_is_applied() {
        // It keeps every agent and adds one.
        let applied = conflict(
            Path::new(OTHER),
            &config(&["web", "worker", "new"]),
            Some(Path::new(MINE)),
            &names(&["web", "worker"]),
            false,
        );
        assert_eq!(applied, None);
    }

    #[test]
    fn the_first_apply_of_a_home_is_never_refused() {
        let applied = conflict(
            Path::new(OTHER),
            &config(&["web"]),
            None,
            &names(&["web", "worker"]),
            false,
        );
        assert_eq!(applied, None);
    }
}
