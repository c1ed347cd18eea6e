//! `[agents.NAME.deploy]` and `[agents.NAME.listen]`, and what `cwd`
//! means for an agent shipped as releases: a directory inside its release
//! (issue #14: an absolute `cwd` kept the agent running the old code while
//! a deploy reported the new one live). A part of the checker of its own so
//! that the agent reading does not grow with every deploy setting.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use toml_edit::TableLike;

use super::diagnostics::{key_span, span_of, Checker};
use super::keys::{Entry, Floor, Key, Read};
use super::model::AgentSpec;
use crate::deploy::{
    valid_listen_name, DeploySpec, ListenSpec, Strategy, DEFAULT_MAX_SIZE, MAX_LISTEN, MIN_MAX_SIZE,
};
use crate::units::format_size;

/// Keys of `[agents.NAME.deploy]`.
#[rustfmt::skip]
const DEPLOY_KEYS: &[Key<DeploySpec>] = &[
    Key::new("strategy", Read::Custom(strategy)),
    Key::new("build", Read::Command(|d, v| d.build = Some(v))),
    Key::new("build_timeout", Read::PositiveDuration(|d, v| d.build_timeout = v)),
    Key::new("smoke_test", Read::Command(|d, v| d.smoke_test = Some(v))),
    Key::new("smoke_timeout", Read::PositiveDuration(|d, v| d.smoke_timeout = v)),
    Key::new("ready_timeout", Read::PositiveDuration(|d, v| d.ready_timeout = v)),
    Key::new("verify_for", Read::Duration(|d, v| d.verify_for = v)),
    Key::new("keep", Read::Integer(2, 1000, |d, v| d.keep = v as u32)),
    Key::new("max_size", Read::Size(RELEASE_FLOOR, |d, v| d.max_size = v)),
];

const RELEASE_FLOOR: Floor = Floor {
    min: MIN_MAX_SIZE,
    message: "`max_size` must be at least 1MiB",
    hint: || {
        format!(
            "it bounds the unpacked size of a release; the default is {}",
            format_size(DEFAULT_MAX_SIZE)
        )
    },
};

fn strategy(checker: &mut Checker, entry: &Entry<'_>, deploy: &mut DeploySpec) {
    if let Some(raw) = checker.string(entry.item, entry.key) {
        match raw {
            "blue-green" => deploy.strategy = Strategy::BlueGreen,
            "restart" => deploy.strategy = Strategy::Restart,
            other => checker.problem(
                span_of(entry.item),
                format!("unknown deploy strategy {other:?}"),
                Some("use \"blue-green\" or \"restart\"".into()),
            ),
        }
    }
}

impl Checker {
    pub(super) fn deploy(&mut self, name: &str, table: &dyn TableLike) -> Option<DeploySpec> {
        let before = self.problems.len();
        let place = format!("[agents.{name}.deploy]");
        let mut spec = DeploySpec::default();
        self.read_keys(table, DEPLOY_KEYS, &place, &mut spec);
        (self.problems.len() == before).then_some(spec)
    }

    pub(super) fn listen(&mut self, name: &str, table: &dyn TableLike) -> ListenSpec {
        let mut sockets = ListenSpec::new();
        for (key, item) in table.iter() {
            if !valid_listen_name(key) {
                self.problem(
                    key_span(table, key, item),
                    format!("bad socket name {key:?} in [agents.{name}.listen]"),
                    Some("use letters, digits and punctuation other than `:`".into()),
                );
                continue;
            }
            let Some(raw) = self.string(item, key) else {
                continue;
            };
            match raw.parse::<std::net::SocketAddr>() {
                Ok(address) if address.port() != 0 => {
                    sockets.insert(key.to_owned(), address);
                }
                _ => self.problem(
                    span_of(item),
                    format!("bad listen address {raw:?}: expected IP:PORT"),
                    Some("e.g. http = \"127.0.0.1:8080\" or \"[::]:8080\" (no host names, no port 0)".into()),
                ),
            }
        }
        if sockets.len() > MAX_LISTEN {
            self.problem(
                0..0,
                format!("[agents.{name}.listen] names more than {MAX_LISTEN} sockets"),
                None,
            );
        }
        sockets
    }

    /// An agent with `[deploy]` runs in its live release: a relative `cwd`
    /// names a directory inside it. An absolute one, or one that climbs out
    /// with `..`, would run code that no deploy ships, so it is refused.
    pub(super) fn release_cwd(
        &mut self,
        name: &str,
        spec: &mut AgentSpec,
        cwd: Option<(String, Range<usize>)>,
        base_dir: &Path,
    ) {
        spec.release_cwd = true;
        spec.cwd = base_dir.to_path_buf();
        let Some((cwd, span)) = cwd else {
            return;
        };
        let path = Path::new(&cwd);
        if path.is_absolute() {
            self.problem(
                span,
                format!(
                    "agent `{name}` is shipped as releases ([agents.{name}.deploy]), but its `cwd` {cwd:?} is outside them: it would keep running the code there whatever is deployed"
                ),
                Some(format!(
                    "leave `cwd` out to run in the top directory of the live release, or give a directory inside the release (e.g. cwd = \"app\"); keep data in $ROSTER_SHARED (<home>/agents/{name}/shared)"
                )),
            );
            return;
        }
        if path
            .components()
            .any(|component| matches!(component, Component::ParentDir))
        {
            self.problem(
                span,
                format!(
                    "agent `{name}` runs in its live release, and `cwd` {cwd:?} climbs out of it with `..`"
                ),
                Some("name a directory inside the release, e.g. cwd = \"app\"".into()),
            );
            return;
        }
        spec.release_subdir = path
            .components()
            .filter(|component| matches!(component, Component::Normal(_)))
            .collect::<PathBuf>();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::{parse, Config, ConfigError};
    use crate::name::AgentName;

    fn parse_text(text: &str) -> Result<Config, ConfigError> {
        parse("roster.toml", text, Path::new("/srv/app"))
    }

    #[test]
    fn deploy_and_listen_tables_parse_and_bad_ones_are_located() {
        let good = parse_text(
            "[agents.web]\ncommand = \"python3 main.py\"\n[agents.web.deploy]\nstrategy = \"restart\"\nsmoke_test = [\"python3\", \"main.py\", \"--self-test\"]\nverify_for = \"5s\"\nkeep = 3\n[agents.web.listen]\nhttp = \"127.0.0.1:8080\"\nadmin = \"[::1]:8081\"\n\n[agents.plain]\ncommand = \"true\"\ncwd = \"here\"\n[agents.plain.deploy]\n",
        )
        .expect("valid");
        let web = &good.agents[&AgentName::new("web").expect("name")];
        let deploy = web.deploy.as_ref().expect("a deploy section");
        assert_eq!(deploy.strategy, Strategy::Restart);
        assert_eq!(deploy.keep, 3);
        assert_eq!(deploy.verify_for, Duration::from_secs(5));
        assert_eq!(deploy.ready_timeout, Duration::from_secs(60), "default");
        assert!(web.release_cwd, "no cwd: runs from its live release");
        assert_eq!(web.release_subdir, Path::new(""), "its top directory");
        assert_eq!(deploy.max_size, DEFAULT_MAX_SIZE);
        assert_eq!(
            web.listen.keys().collect::<Vec<_>>(),
            ["admin", "http"],
            "handed over in name order"
        );
        let plain = &good.agents[&AgentName::new("plain").expect("name")];
        assert_eq!(
            plain.deploy.as_ref().map(|d| d.strategy),
            Some(Strategy::BlueGreen)
        );
        assert!(plain.release_cwd, "a relative cwd is inside the release");
        assert_eq!(plain.release_subdir, Path::new("here"));

        let text = "[agents.a]\ncommand = \"true\"\n[agents.a.deploy]\nstrategy = \"rolling\"\nkeep = 1\nverify = \"1s\"\n[agents.a.listen]\nhttp = \"localhost:80\"\n\"a:b\" = \"127.0.0.1:1\"\nzero = \"127.0.0.1:0\"\n\n[agents.b]\ncommand = \"true\"\nlisten = { http = \"127.0.0.1:9000\" }\n\n[agents.c]\ncommand = \"true\"\nlisten = { web = \"127.0.0.1:9000\" }\n";
        let rendered = parse_text(text).expect_err("invalid").to_string();
        for expected in [
            "roster.toml:4:12: unknown deploy strategy \"rolling\"",
            "roster.toml:5:8: ",
            "roster.toml:6:1: unknown key `verify` in [agents.a.deploy]",
            "known keys here: strategy, build",
            "roster.toml:8:8: bad listen address \"localhost:80\": expected IP:PORT",
            "bad socket name \"a:b\"",
            "bad listen address \"127.0.0.1:0\"",
            "roster.toml:16:9: agent `c` listens on 127.0.0.1:9000, as agent `b` does",
        ] {
            assert!(
                rendered.contains(expected),
                "missing {expected:?} in:\n{rendered}"
            );
        }
    }

    #[test]
    fn a_deploy_agents_cwd_is_inside_its_release() {
        let good = parse_text(
            "[agents.web]\ncommand = \"python3 main.py\"\ncwd = \"./app/bin/\"\n[agents.web.deploy]\n",
        )
        .expect("valid");
        let web = &good.agents[&AgentName::new("web").expect("name")];
        assert!(web.release_cwd);
        assert_eq!(web.release_subdir, Path::new("app/bin"));
        assert_eq!(web.cwd, Path::new("/srv/app"), "not the config's app/bin");

        // Issue #14: an absolute cwd with [deploy] kept the old code running.
        let text = "[agents.web]\ncommand = \"python3 main.py\"\ncwd = \"/srv/web\"\n[agents.web.deploy]\n\n[agents.up]\ncommand = \"true\"\ncwd = \"app/../../x\"\n[agents.up.deploy]\n";
        let rendered = parse_text(text).expect_err("refused").to_string();
        for expected in [
            "roster.toml:3:7: agent `web` is shipped as releases ([agents.web.deploy]), but its `cwd` \"/srv/web\" is outside them",
            "hint: leave `cwd` out to run in the top directory of the live release",
            "roster.toml:8:7: agent `up` runs in its live release, and `cwd` \"app/../../x\" climbs out of it",
        ] {
            assert!(
                rendered.contains(expected),
                "missing {expected:?} in:\n{rendered}"
            );
        }

        // Without [deploy], an absolute cwd is what it always was.
        let plain =
            parse_text("[agents.p]\ncommand = \"true\"\ncwd = \"/srv/web\"\n").expect("valid");
        let p = &plain.agents[&AgentName::new("p").expect("name")];
        assert!(!p.release_cwd);
        assert_eq!(p.cwd, Path::new("/srv/web"));
    }

    #[test]
    fn max_size_bounds_a_release() {
        let good = parse_text(
            "[agents.web]\ncommand = \"true\"\n[agents.web.deploy]\nmax_size = \"200MiB\"\n",
        )
        .expect("valid");
        let web = &good.agents[&AgentName::new("web").expect("name")];
        assert_eq!(
            web.deploy.as_ref().map(|deploy| deploy.max_size),
            Some(200 << 20)
        );
        let rendered = parse_text(
            "[agents.web]\ncommand = \"true\"\n[agents.web.deploy]\nmax_size = \"10KiB\"\n",
        )
        .expect_err("too small")
        .to_string();
        assert!(
            rendered.contains("roster.toml:4:12: `max_size` must be at least 1MiB"),
            "{rendered}"
        );
    }
}
