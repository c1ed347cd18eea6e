//! `instances = N`: the copies, `{instance}` in their keys, and the
//! mistakes that are told once, at the place they are written.

use std::path::Path;

use super::*;
use crate::health::Check;
use crate::name::AgentName;

fn parse_text(text: &str) -> Result<Config, ConfigError> {
    parse("roster.toml", text, Path::new("/srv/app"))
}

fn name(raw: &str) -> AgentName {
    AgentName::new(raw).expect("valid name")
}

const WORKER: &str = r#"
[defaults]
env = { SHARD = "s{instance}" }

[agents.worker]
instances = 3
command = ["python3", "worker.py", "--id", "{instance}"]
cwd = "work/{instance}"
env = { PORT = "81{instance}0" }
listen = { http = "127.0.0.1:90{instance}0" }
health = { http = "http://127.0.0.1:90{instance}0/health" }
user = "{name}"

[agents.solo]
command = "python3 solo.py {instance}"
"#;

#[test]
fn each_copy_gets_its_number_in_its_keys() {
    let config = parse_text(WORKER).expect("valid");
    let names: Vec<&str> = config.agents.keys().map(AgentName::as_str).collect();
    assert_eq!(names, ["solo", "worker.1", "worker.2", "worker.3"]);
    for number in 1..=3u32 {
        let spec = &config.agents[&name(&format!("worker.{number}"))];
        assert_eq!(
            spec.instance,
            Some(Instance {
                of: name("worker"),
                number
            })
        );
        assert_eq!(spec.command[3], number.to_string());
        assert_eq!(spec.cwd, Path::new(&format!("/srv/app/work/{number}")));
        assert_eq!(spec.env["PORT"], format!("81{number}0"));
        // `[defaults]`' values are numbered too.
        assert_eq!(spec.env["SHARD"], format!("s{number}"));
        assert_eq!(
            spec.listen["http"].to_string(),
            format!("127.0.0.1:90{number}0")
        );
        match &spec.health.as_ref().expect("a check").check {
            Check::Http(target) => assert_eq!(target.address, format!("127.0.0.1:90{number}0")),
            other => panic!("{other:?}"),
        }
        // `{name}` is the copy's name.
        assert_eq!(
            spec.identity.user.as_deref(),
            Some(format!("worker.{number}").as_str())
        );
    }
    // Without `instances`, `{instance}` is just text.
    let solo = &config.agents[&name("solo")];
    assert_eq!(solo.instance, None);
    assert_eq!(solo.command, ["python3", "solo.py", "{instance}"]);
}

#[test]
fn one_instance_is_still_a_numbered_copy() {
    let config =
        parse_text("[agents.w]\ninstances = 1\ncommand = \"run {instance}\"\n").expect("valid");
    let names: Vec<&str> = config.agents.keys().map(AgentName::as_str).collect();
    assert_eq!(names, ["w.1"]);
    assert_eq!(config.agents[&name("w.1")].command, ["run", "1"]);
}

#[test]
fn a_shared_port_is_reported_with_the_way_out() {
    let text =
        "[agents.w]\ninstances = 2\ncommand = \"run\"\nlisten = { http = \"127.0.0.1:9000\" }\n";
    let error = parse_text(text)
        .expect_err("two copies on one port")
        .to_string();
    assert!(
        error.contains("agent `w.2` listens on 127.0.0.1:9000, as agent `w.1` does"),
        "{error}"
    );
    assert!(error.contains("{instance}"), "{error}");
    assert!(error.starts_with("roster.toml:1:"), "{error}");
}

#[test]
fn bad_counts_and_clashes_are_refused() {
    for (text, expected) in [
        (
            "[agents.w]\ninstances = 0\ncommand = \"run\"\n",
            "roster.toml:2:13:",
        ),
        (
            "[agents.w]\ninstances = 1001\ncommand = \"run\"\n",
            "roster.toml:2:13:",
        ),
        (
            "[agents.w]\ninstances = \"3\"\ncommand = \"run\"\n",
            "roster.toml:2:13:",
        ),
        (
            "[agents.w]\ninstances = 2\ncommand = \"run\"\n[agents.\"w.2\"]\ncommand = \"run\"\n",
            "agent `w.2` is written twice",
        ),
        (
            "[agents.w]\ninstances = 2\ncommand = \"run\"\n[agents.w.deploy]\n",
            "has `instances` and is shipped as releases",
        ),
    ] {
        let error = parse_text(text).expect_err(text).to_string();
        assert!(error.contains(expected), "{text}\n{error}");
    }
    let long = "x".repeat(62);
    let error = parse_text(&format!(
        "[agents.{long}]\ninstances = 10\ncommand = \"run\"\n"
    ))
    .expect_err("w.10 is 65 characters")
    .to_string();
    assert!(error.contains("copy 10 of agent"), "{error}");
}

/// A mistake in the template is told once, not once per copy, and where
/// it is written even though `{instance}` was replaced in it.
#[test]
fn a_mistake_in_a_numbered_value_is_told_once_at_its_place() {
    let text = "[agents.w]\ninstances = 3\ncommand = \"run\"\n\
                listen = { http = \"127.0.0.1:9{instance}x\" }\n";
    let error = parse_text(text).expect_err("not a port").to_string();
    assert_eq!(error.matches("roster.toml:").count(), 1, "{error}");
    assert!(error.starts_with("roster.toml:4:"), "{error}");
    // Only the copy that overflows the port range is wrong.
    let text = "[agents.w]\ninstances = 7\ncommand = \"run\"\n\
                listen = { http = \"127.0.0.1:6553{instance}\" }\n";
    let error = parse_text(text).expect_err("65536").to_string();
    assert!(error.starts_with("roster.toml:4:"), "{error}");
    assert!(error.contains("65536"), "{error}");
}
