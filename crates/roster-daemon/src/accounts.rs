//! Before a config is applied (off the loop): the users agents ask for
//! with `create_user = true` created, each such agent given a directory of
//! its own, and the home let through for agents of other users whose
//! directory lies inside it (their releases).
//!
//! Which directory is an agent's own is decided by [`own_directory`], a
//! pure function of the config and the paths: never a directory another
//! agent works in too, nor one that holds the config file or the home
//! (giving `/etc/roster` to a tenant would let it rewrite what the root
//! daemon runs).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::User;

use roster_core::{AgentName, Config};

use crate::identity::resolve;

/// Runs a command to its end: `Ok(true)` when it exits 0.
pub type RunCommand<'a> = &'a dyn Fn(&[String]) -> Result<bool, String>;

/// The directory an agent works in and may own: `shared/` of its release
/// store when it is shipped as releases, else its `cwd`.
fn agent_directory(home: &Path, agent: &AgentName, config: &Config) -> Option<PathBuf> {
    let spec = config.agents.get(agent)?;
    Some(if spec.deploy.is_some() {
        crate::releases::Releases::new(home, agent).shared_dir()
    } else {
        spec.cwd.clone()
    })
}

/// `agent`'s directory when it may be given to the agent's user, or why
/// not. `config_file` is the file the config was read from.
pub(crate) fn own_directory(
    home: &Path,
    config_file: &Path,
    config: &Config,
    agent: &AgentName,
) -> Result<PathBuf, String> {
    let directory = agent_directory(home, agent, config)
        .ok_or_else(|| format!("no agent {agent} in the config"))?;
    if config_file.starts_with(&directory) {
        return Err(format!(
            "{} holds the config file {}",
            directory.display(),
            config_file.display()
        ));
    }
    if home.starts_with(&directory) {
        return Err(format!("{} holds roster's home", directory.display()));
    }
    let shared = config.agents.keys().find(|other| {
        *other != agent
            && agent_directory(home, other, config)
                .is_some_and(|theirs| theirs.starts_with(&directory))
    });
    if let Some(other) = shared {
        return Err(format!(
            "{} is also where agent {other} works, or holds its directory",
            directory.display()
        ));
    }
    Ok(directory)
}

/// Creates the users agents ask for with `create_user = true`
/// (`useradd --system`, no login, no home), gives each such agent its
/// own directory (see [`own_directory`]), owned by its user and closed to
/// everyone else (mode 0700), and lets other users through the home when
/// an agent of theirs works inside it. Returns lines for the journal
/// (what was done, or why not).
pub fn prepare_accounts(
    home: &Path,
    config_file: &Path,
    config: &Config,
    run: RunCommand<'_>,
) -> Vec<(AgentName, String)> {
    let mut notes = Vec::new();
    for (agent, spec) in &config.agents {
        let identity = &spec.identity;
        let Some(name) = identity.user.as_deref().filter(|_| identity.create_user) else {
            continue;
        };
        if name.parse::<u32>().is_ok() || name == "root" {
            continue;
        }
        if matches!(User::from_name(name), Ok(None)) {
            let argv: Vec<String> = [
                "useradd",
                "--system",
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                "--home-dir",
                "/nonexistent",
                name,
            ]
            .iter()
            .map(|word| (*word).to_owned())
            .collect();
            match run(&argv) {
                Ok(true) => notes.push((agent.clone(), format!("created the system user {name}"))),
                Ok(false) => {
                    notes.push((
                        agent.clone(),
                        format!("useradd {name} failed; the agent cannot start"),
                    ));
                    continue;
                }
                Err(error) => {
                    notes.push((
                        agent.clone(),
                        format!("could not run useradd for {name}: {error}"),
                    ));
                    continue;
                }
            }
        }
        let account = match resolve(identity) {
            Ok(account) => account,
            Err(error) => {
                notes.push((agent.clone(), error));
                continue;
            }
        };
        let directory = match own_directory(home, config_file, config, agent) {
            Ok(directory) => directory,
            Err(why) => {
                notes.push((
                    agent.clone(),
                    format!(
                        "not giving its directory to {name}: {why}; give the agent a cwd of its own (e.g. cwd = \"/srv/agents/{agent}\")"
                    ),
                ));
                continue;
            }
        };
        let owned = std::fs::create_dir_all(&directory)
            .and_then(|()| {
                std::os::unix::fs::chown(&directory, Some(account.uid), Some(account.gid))
            })
            .and_then(|()| {
                std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o700))
            });
        if let Err(error) = owned {
            notes.push((
                agent.clone(),
                format!("giving {} to {name}: {error}", directory.display()),
            ));
        }
    }
    if let Some(note) = let_through_home(home, config) {
        notes.push(note);
    }
    notes
}

/// An agent of another user whose directory (its releases, its `cwd`)
/// lies inside the home reaches it only through the home: others get the
/// right to traverse it (`o+x`), never to list it; what lies directly
/// inside stays closed (0700 and 0600), `agents/` is 0711.
fn let_through_home(home: &Path, config: &Config) -> Option<(AgentName, String)> {
    let daemon = nix::unistd::geteuid().as_raw();
    let agent = config.agents.iter().find_map(|(agent, spec)| {
        let user = spec.identity.user.as_deref()?;
        let other = match user.parse::<u32>() {
            Ok(uid) => uid != daemon,
            Err(_) => user != "root" || daemon != 0,
        };
        let inside = agent_directory(home, agent, config).is_some_and(|dir| dir.starts_with(home));
        (other && inside).then_some(agent)
    })?;
    let mode = std::fs::metadata(home).ok()?.permissions().mode() & 0o7777;
    if mode & 0o001 != 0 {
        return None;
    }
    let changed = std::fs::set_permissions(home, std::fs::Permissions::from_mode(mode | 0o001));
    Some((
        agent.clone(),
        match changed {
            Ok(()) => format!(
                "let other users through {} (mode {:04o}) so that {agent}'s user reaches its directory there",
                home.display(),
                mode | 0o001
            ),
            Err(error) => format!(
                "could not let {agent}'s user through {}: {error}; it cannot reach its directory",
                home.display()
            ),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(agents: &str) -> Config {
        roster_core::config::parse("roster.toml", agents, Path::new("/srv/project"))
            .unwrap_or_else(|error| panic!("{error}"))
    }

    fn name(agent: &str) -> AgentName {
        AgentName::new(agent).unwrap_or_else(|error| panic!("{error}"))
    }

    const FILE: &str = "/srv/project/roster.toml";

    #[test]
    fn an_agent_owns_its_own_cwd_only() {
        let home = Path::new("/var/lib/roster");
        let both = config(
            "[agents.a]\ncommand = [\"x\"]\ncwd = \"work/a\"\n\
             [agents.b]\ncommand = [\"x\"]\ncwd = \"work/b\"\n",
        );
        assert_eq!(
            own_directory(home, Path::new(FILE), &both, &name("a")),
            Ok(PathBuf::from("/srv/project/work/a"))
        );
        // The default cwd is the config's folder: never given away.
        let default = config("[agents.a]\ncommand = [\"x\"]\n");
        let refused = own_directory(home, Path::new(FILE), &default, &name("a"));
        assert!(
            refused
                .as_ref()
                .is_err_and(|why| why.contains("holds the config file")),
            "{refused:?}"
        );
        // A folder holding another agent's is not given, nor one two
        // agents share; the inner one is (a project folder, a work/NAME
        // per agent).
        let nested = config(
            "[agents.a]\ncommand = [\"x\"]\ncwd = \"/srv/w\"\n\
             [agents.b]\ncommand = [\"x\"]\ncwd = \"/srv/w/b\"\n\
             [agents.c]\ncommand = [\"x\"]\ncwd = \"/srv/w/b\"\n",
        );
        for agent in ["a", "b", "c"] {
            let refused = own_directory(home, Path::new(FILE), &nested, &name(agent));
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|why| why.contains("is also where agent")),
                "{agent}: {refused:?}"
            );
        }
        let inner = config(
            "[agents.a]\ncommand = [\"x\"]\ncwd = \"/srv/w\"\n\
             [agents.b]\ncommand = [\"x\"]\ncwd = \"/srv/w/b\"\n",
        );
        assert_eq!(
            own_directory(home, Path::new(FILE), &inner, &name("b")),
            Ok(PathBuf::from("/srv/w/b"))
        );
        // The home, or a folder holding it.
        let around = config("[agents.a]\ncommand = [\"x\"]\ncwd = \"/var/lib\"\n");
        let refused = own_directory(home, Path::new(FILE), &around, &name("a"));
        assert!(
            refused
                .as_ref()
                .is_err_and(|why| why.contains("holds roster's home")),
            "{refused:?}"
        );
    }

    #[test]
    fn an_agent_shipped_as_releases_owns_its_shared_directory() {
        let home = Path::new("/var/lib/roster");
        let config = config(
            "[agents.a]\ncommand = [\"x\"]\n[agents.a.deploy]\n\
             [agents.b]\ncommand = [\"x\"]\n[agents.b.deploy]\n",
        );
        assert_eq!(
            own_directory(home, Path::new(FILE), &config, &name("a")),
            Ok(PathBuf::from("/var/lib/roster/agents/a/shared"))
        );
    }
}
