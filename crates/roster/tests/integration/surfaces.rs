//! Issue #10 (part): shell completions and the manual page, generated
//! from the CLI definition.

use std::process::Command;

use crate::util::*;

#[test]
fn the_bash_completion_is_valid_and_completes_subcommands() {
    let roster = Roster::new();
    let script = roster.ok(&["completions", "bash"]);
    let path = roster.write("roster.bash", &script);
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash");
    assert!(syntax.status.success(), "{syntax:?}");
    // Through bash's own completion machinery: what <TAB> after `roster sta` offers.
    let completed = Command::new("bash")
        .arg("-c")
        .arg(
            "source \"$1\"; spec=$(complete -p roster); \
             COMP_WORDS=(roster sta); COMP_CWORD=1; COMP_LINE='roster sta'; COMP_POINT=${#COMP_LINE}; \
             _roster roster sta roster; echo \"$spec\"; printf '%s\\n' \"${COMPREPLY[@]}\"",
        )
        .arg("bash")
        .arg(&path)
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&completed.stdout);
    assert!(
        text.contains("complete") && text.contains("_roster"),
        "{text}"
    );
    let offered: Vec<&str> = text.lines().skip(1).collect();
    assert!(
        offered.contains(&"start") && offered.contains(&"status"),
        "{offered:?}"
    );
    assert!(!offered.contains(&"stop"), "only what matches: {offered:?}");
    for shell in ["zsh", "fish"] {
        let script = roster.ok(&["completions", shell]);
        assert!(script.contains("roster"), "{shell}: {script}");
    }
    let refused = roster.run(&["completions", "tcsh"]);
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn the_manual_page_is_roff_that_man_renders() {
    let roster = Roster::new();
    let page = roster.ok(&["man"]);
    assert!(
        page.contains(".TH roster 1"),
        "{}",
        &page[..page.len().min(300)]
    );
    for command in ["deploy", "rollback", "install", "secret", "status"] {
        assert!(page.contains(command), "the page names {command}");
    }
    if Command::new("man").arg("--version").output().is_err() {
        skip("manual_page", "man is not installed");
        return;
    }
    let path = roster.write("roster.1", &page);
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&path)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .expect("man");
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(text.contains("NAME") && text.contains("roster"), "{text}");
}
