use std::path::Path;

use super::{add_agent, keep_line_endings, remove_agent, set_instances, EditError, NewAgent};
use crate::name::AgentName;

/// A file written by hand: comments above, between and after tables, odd
/// spacing, sub-tables of an agent, a section comment.
const COMMENTED: &str = r#"# roster for the support team
#   (edited by hand)

[log]
max_size   =   "10MiB"    # per file
keep=3

# ---- agents ----

# answers the chat
[agents.support]
command = ["python3", "main.py"]   # the bot
env = { MODEL = "small" }
  # the poller is next

[agents.support.health]
exec = ["true"]

# polls the queue
[agents.poller]
command = "sleep 1000"

[[agents.poller.watch]]
metric = "memory_bytes"
above = 1000000000
action = "alert"

# keeps the index fresh
[agents.indexer]
command = ["sleep", "1000"]
# the end
"#;

fn agent(name: &str, command: &[&str]) -> NewAgent {
    NewAgent {
        name: AgentName::new(name).expect("valid name"),
        command: command.iter().map(|word| (*word).to_owned()).collect(),
        cwd: None,
        env: Vec::new(),
        user: None,
        health_http: None,
    }
}

fn valid(text: &str) -> crate::config::Config {
    crate::config::parse("roster.toml", text, Path::new("/srv"))
        .unwrap_or_else(|error| panic!("not a valid config:\n{error}\n{text}"))
}

#[test]
fn an_added_agent_is_appended_and_everything_before_stays() {
    let mut new = agent("web.1", &["python3", "-m", "http.server", "8000"]);
    new.cwd = Some("web app".into());
    new.env = vec![
        ("PORT".into(), "8000".into()),
        ("A B".into(), "q\"uote".into()),
    ];
    new.user = Some("www-data".into());
    new.health_http = Some("http://127.0.0.1:8000/".into());
    let (text, first_line) = add_agent(COMMENTED, &new).expect("added");
    let appended = text
        .strip_prefix(COMMENTED)
        .expect("the old text is a prefix");
    assert_eq!(
        appended,
        "\n[agents.\"web.1\"]\n\
         command = [\"python3\", \"-m\", \"http.server\", \"8000\"]\n\
         cwd = \"web app\"\n\
         env = { PORT = \"8000\", \"A B\" = 'q\"uote' }\n\
         user = \"www-data\"\n\
         \n\
         [agents.\"web.1\".health]\n\
         http = \"http://127.0.0.1:8000/\"\n"
    );
    assert_eq!(text.lines().nth(first_line - 1), Some("[agents.\"web.1\"]"));
    let mut without_env = new.clone();
    without_env.env.retain(|(key, _)| key == "PORT");
    let (text, _) = add_agent(COMMENTED, &without_env).expect("added");
    let config = valid(&text);
    let web = &config.agents[&AgentName::new("web.1").expect("name")];
    assert_eq!(web.command, ["python3", "-m", "http.server", "8000"]);
    assert_eq!(web.cwd, Path::new("/srv/web app"));
    assert_eq!(web.identity.user.as_deref(), Some("www-data"));
    assert!(web.health.is_some());
    assert_eq!(config.agents.len(), 4);
}

#[test]
fn added_to_nothing_or_to_a_file_without_a_last_newline() {
    let (text, first_line) = add_agent("", &agent("a", &["true"])).expect("added");
    assert_eq!(text, "[agents.a]\ncommand = [\"true\"]\n");
    assert_eq!(first_line, 1);
    let (text, first_line) = add_agent("[log]\nkeep = 3", &agent("a", &["true"])).expect("added");
    assert_eq!(
        text,
        "[log]\nkeep = 3\n\n[agents.a]\ncommand = [\"true\"]\n"
    );
    assert_eq!(first_line, 4);
    let (text, _) = add_agent("[log]\nkeep = 3\n\n", &agent("a", &["true"])).expect("added");
    assert_eq!(
        text,
        "[log]\nkeep = 3\n\n[agents.a]\ncommand = [\"true\"]\n"
    );
}

#[test]
fn an_agent_already_there_an_empty_command_and_broken_toml_are_refused() {
    for name in ["support", "poller", "indexer"] {
        assert!(matches!(
            add_agent(COMMENTED, &agent(name, &["true"])),
            Err(EditError::AlreadyThere(taken)) if taken == name
        ));
    }
    // However the existing agent is written.
    let inline = "[agents]\nweb = { command = \"x\" }\n";
    assert!(matches!(
        add_agent(inline, &agent("web", &["true"])),
        Err(EditError::AlreadyThere(_))
    ));
    assert!(matches!(
        add_agent(COMMENTED, &agent("new", &[])),
        Err(EditError::EmptyCommand)
    ));
    assert!(matches!(
        add_agent(COMMENTED, &agent("new", &[""])),
        Err(EditError::EmptyCommand)
    ));
    assert!(matches!(
        add_agent("[agents.a\ncommand = 1\n", &agent("new", &["true"])),
        Err(EditError::NotToml(_))
    ));
}

#[test]
fn a_removed_agent_takes_its_sub_tables_and_its_own_comment() {
    let text = remove_agent(COMMENTED, "poller").expect("removed");
    let expected = COMMENTED.replace(
        "# polls the queue\n[agents.poller]\ncommand = \"sleep 1000\"\n\n\
         [[agents.poller.watch]]\nmetric = \"memory_bytes\"\nabove = 1000000000\naction = \"alert\"\n\n",
        "",
    );
    assert_ne!(expected, COMMENTED, "the test's text is out of date");
    assert_eq!(text, expected);
    assert_eq!(valid(&text).agents.len(), 2);
}

#[test]
fn a_section_comment_above_a_removed_agent_stays() {
    let text = remove_agent(COMMENTED, "support").expect("removed");
    // What was below the agent's last key (" # the poller is next") stays
    // with what follows.
    let expected = COMMENTED.replace(
        "# answers the chat\n[agents.support]\ncommand = [\"python3\", \"main.py\"]   # the bot\n\
         env = { MODEL = \"small\" }\n  # the poller is next\n\n[agents.support.health]\nexec = [\"true\"]\n\n",
        "",
    );
    assert_ne!(expected, COMMENTED, "the test's text is out of date");
    assert_eq!(text, expected);
}

#[test]
fn the_last_agent_removed_leaves_the_comments_after_it() {
    let text = remove_agent(COMMENTED, "indexer").expect("removed");
    let expected = COMMENTED.replace(
        "# keeps the index fresh\n[agents.indexer]\ncommand = [\"sleep\", \"1000\"]\n",
        "",
    );
    assert_eq!(text, expected);
    // All of them, one by one: the file's own comments stay.
    let mut text = COMMENTED.to_owned();
    for name in ["indexer", "support", "poller"] {
        text = remove_agent(&text, name).expect("removed");
    }
    assert_eq!(
        text,
        "# roster for the support team\n#   (edited by hand)\n\n[log]\n\
         max_size   =   \"10MiB\"    # per file\nkeep=3\n\n# ---- agents ----\n\n# the end\n"
    );
    valid(&text);
}

#[test]
fn agents_written_inline_or_dotted_are_removed_too() {
    let inline = "[agents]\n# a\na = { command = \"x\" }\nb = { command = \"y\" } # b\n";
    assert_eq!(
        remove_agent(inline, "a").expect("removed"),
        "[agents]\nb = { command = \"y\" } # b\n"
    );
    let dotted = "[agents]\na.command = \"x\"\na.cwd = \"/\"\nb.command = \"y\"\n";
    assert_eq!(
        remove_agent(dotted, "a").expect("removed"),
        "[agents]\nb.command = \"y\"\n"
    );
}

#[test]
fn an_unknown_agent_is_an_error_naming_those_there() {
    match remove_agent(COMMENTED, "nope") {
        Err(EditError::Unknown { name, known }) => {
            assert_eq!(name, "nope");
            assert_eq!(known, ["support", "poller", "indexer"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        remove_agent("[log]\nkeep = 3\n", "web"),
        Err(EditError::Unknown { known, .. }) if known.is_empty()
    ));
}

/// `roster scale`: the count set where the agent is written, every other
/// line as it was; an existing value keeps its comment.
#[test]
fn instances_are_set_in_place() {
    let (text, previous) = set_instances(COMMENTED, "support", 3).expect("set");
    assert_eq!(previous, None);
    assert_eq!(
        text,
        COMMENTED.replace(
            "env = { MODEL = \"small\" }\n",
            "env = { MODEL = \"small\" }\ninstances = 3\n"
        )
    );
    let config = crate::config::parse("r.toml", &text, Path::new("/srv")).expect("valid");
    assert!(config
        .agents
        .contains_key(&AgentName::new("support.3").expect("name")));

    let (again, previous) = set_instances(
        &text.replace("instances = 3\n", "instances   = 3   # busy days\n"),
        "support",
        1,
    )
    .expect("set");
    assert_eq!(previous, Some(3));
    assert!(again.contains("instances   = 1   # busy days\n"), "{again}");
    assert_eq!(again.lines().count(), text.lines().count());

    match set_instances(COMMENTED, "support.2", 2) {
        Err(EditError::Unknown { known, .. }) => {
            assert_eq!(known, ["support", "poller", "indexer"]);
        }
        other => panic!("{other:?}"),
    }
}

/// A file edited on Windows keeps its CRLF endings, the added lines too,
/// and still reads as the same config.
#[test]
fn crlf_files_stay_crlf() {
    let old = COMMENTED.replace('\n', "\r\n");
    let (added, _) = add_agent(&old, &agent("extra", &["python3", "x.py"])).expect("added");
    let kept = keep_line_endings(&old, &added);
    assert!(kept.starts_with(&old));
    assert_eq!(
        kept.matches('\n').count(),
        kept.matches("\r\n").count(),
        "{kept:?}"
    );
    let (scaled, _) = set_instances(&old, "poller", 2).expect("scaled");
    let kept = keep_line_endings(&old, &scaled);
    assert_eq!(
        kept.matches('\n').count(),
        kept.matches("\r\n").count(),
        "{kept:?}"
    );
    assert!(!kept.contains("\r\r"));
    let config = crate::config::parse("r.toml", &kept, Path::new("/srv")).expect("valid");
    assert!(config
        .agents
        .contains_key(&AgentName::new("poller.2").expect("name")));
    // An LF file is left as it is.
    assert_eq!(keep_line_endings(COMMENTED, "a\nb\n"), "a\nb\n");
}
