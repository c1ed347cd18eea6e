//! The changes install and uninstall make, one printed line each, and
//! how each is made: files and directories through the [`Tree`] (never
//! through a link), accounts through useradd and friends.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Result};

use super::accounts::{Accounts, Owner};
use super::tree::{Kind, Tree};
use crate::paths;

/// One change, printed as one line. Paths are as on the installed system.
#[derive(Debug)]
pub enum Step {
    CreateUser {
        name: String,
        /// Chosen by install under `--root`; else useradd's choice.
        uid: Option<u32>,
        /// Its existing primary group; `None`: a group of its own name is
        /// created with it.
        group: Option<String>,
    },
    CreateGroup {
        name: String,
        /// Chosen by install under `--root`; else groupadd's choice.
        gid: Option<u32>,
    },
    Mkdir {
        path: PathBuf,
        mode: u32,
        owner: Owner,
    },
    Write {
        path: PathBuf,
        mode: u32,
        owner: Owner,
        contents: Vec<u8>,
        why: &'static str,
    },
    Chmod {
        path: PathBuf,
        kind: Kind,
        mode: u32,
    },
    Chown {
        path: PathBuf,
        kind: Kind,
        owner: Owner,
    },
    Run {
        argv: Vec<String>,
    },
    Remove {
        path: PathBuf,
    },
    RemoveTree {
        path: PathBuf,
    },
    RemoveEmptyDirectory {
        path: PathBuf,
    },
    DeleteUser {
        name: String,
        /// Also its group (install made both).
        group: bool,
    },
    DeleteGroup {
        name: String,
    },
}

impl Step {
    /// The step's line, with paths as they are here.
    pub fn describe(&self, tree: &Tree) -> String {
        let shown = |path: &PathBuf| tree.shown(path).display().to_string();
        match self {
            Step::CreateUser { name, uid, group } => format!(
                "create system user {name} ({}group {}, no login shell, home {})",
                uid.map(|uid| format!("uid {uid}, ")).unwrap_or_default(),
                group.as_deref().unwrap_or(name),
                paths::STATE_HOME
            ),
            Step::CreateGroup { name, gid } => format!(
                "create system group {name}{}",
                gid.map(|gid| format!(" (gid {gid})")).unwrap_or_default()
            ),
            Step::Mkdir { path, mode, owner } => {
                format!("mkdir {} {mode:04o} {owner}", shown(path))
            }
            Step::Write {
                path,
                mode,
                owner,
                why,
                ..
            } => format!("write {} {mode:04o} {owner} ({why})", shown(path)),
            Step::Chmod { path, mode, .. } => format!("chmod {mode:04o} {}", shown(path)),
            Step::Chown { path, owner, .. } => format!("chown {owner} {}", shown(path)),
            Step::Run { argv } => format!("run {}", argv.join(" ")),
            Step::Remove { path } => format!("remove {}", shown(path)),
            Step::RemoveTree { path } => format!("remove {} and all in it", shown(path)),
            Step::RemoveEmptyDirectory { path } => format!("remove {} (empty)", shown(path)),
            Step::DeleteUser { name, group: true } => format!("delete user {name} and its group"),
            Step::DeleteUser { name, group: false } => format!("delete user {name}"),
            Step::DeleteGroup { name } => format!("delete group {name}"),
        }
    }

    /// Makes the step.
    fn apply(&self, tree: &Tree, accounts: &Accounts) -> Result<()> {
        match self {
            Step::CreateUser { name, uid, group } => {
                let mut argv = accounts.prefix_args();
                argv.extend(
                    [
                        "-r",
                        "-M",
                        "-s",
                        "/usr/sbin/nologin",
                        "-d",
                        paths::STATE_HOME,
                    ]
                    .map(String::from),
                );
                if let Some(uid) = uid {
                    argv.extend(["-u".to_owned(), uid.to_string()]);
                }
                match group {
                    Some(group) => argv.extend(["-g".to_owned(), group.clone()]),
                    None => argv.push("-U".to_owned()),
                }
                argv.push(name.clone());
                run("useradd", &argv)
            }
            Step::CreateGroup { name, gid } => {
                let mut argv = accounts.prefix_args();
                argv.push("-r".to_owned());
                if let Some(gid) = gid {
                    argv.extend(["-g".to_owned(), gid.to_string()]);
                }
                argv.push(name.clone());
                run("groupadd", &argv)
            }
            Step::Mkdir { path, mode, owner } => tree.mkdir(path, *mode, accounts.ids(owner)?),
            Step::Write {
                path,
                mode,
                owner,
                contents,
                ..
            } => tree.write_atomically(path, contents, *mode, accounts.ids(owner)?),
            Step::Chmod { path, kind, mode } => {
                tree.set_owner_and_mode(path, *kind, None, Some(*mode))
            }
            Step::Chown { path, kind, owner } => {
                tree.set_owner_and_mode(path, *kind, Some(accounts.ids(owner)?), None)
            }
            Step::Run { argv } => match argv.split_first() {
                Some((program, args)) => run(program, args),
                None => Ok(()),
            },
            Step::Remove { path } => tree.remove_file(path),
            Step::RemoveTree { path } => {
                let kept = tree.remove_tree(path)?;
                for path in kept {
                    println!(
                        "kept {}: another file system is mounted there",
                        path.display()
                    );
                }
                Ok(())
            }
            Step::RemoveEmptyDirectory { path } => {
                if !tree.remove_empty_directory(path)? {
                    println!("kept {}: it is not empty", tree.shown(path).display());
                }
                Ok(())
            }
            Step::DeleteUser { name, group } => {
                let mut argv = accounts.prefix_args();
                argv.push(name.clone());
                run("userdel", &argv)?;
                // userdel removes the user's own group unless others use it.
                if *group && accounts.group(name)?.is_some() {
                    let mut argv = accounts.prefix_args();
                    argv.push(name.clone());
                    run("groupdel", &argv)?;
                }
                Ok(())
            }
            Step::DeleteGroup { name } => {
                if accounts.group(name)?.is_some() {
                    let mut argv = accounts.prefix_args();
                    argv.push(name.clone());
                    run("groupdel", &argv)?;
                }
                Ok(())
            }
        }
    }
}

/// A run of steps stopped by a failure after `done` of them were made.
pub struct Interrupted {
    pub done: usize,
    pub error: anyhow::Error,
}

/// Prints the steps and makes them (or, dry, only prints them).
pub fn carry_out(
    tree: &Tree,
    accounts: &Accounts,
    steps: &[Step],
    dry_run: bool,
) -> Result<(), Interrupted> {
    let mut stdout = std::io::stdout().lock();
    if steps.is_empty() {
        let _ = writeln!(stdout, "nothing to change");
        return Ok(());
    }
    if dry_run {
        let _ = writeln!(stdout, "dry run: would make these changes (making none):");
    }
    for (done, step) in steps.iter().enumerate() {
        let line = step.describe(tree);
        let _ = writeln!(stdout, "{}{line}", if dry_run { "  " } else { "" });
        let _ = stdout.flush();
        if !dry_run {
            step.apply(tree, accounts).map_err(|error| Interrupted {
                done,
                error: error.context(line),
            })?;
        }
    }
    Ok(())
}

/// Runs a program, failing with its stderr.
pub fn run(program: &str, args: &[String]) -> Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| anyhow::anyhow!("running {program}: {error}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Whether `systemctl QUERY roster` says yes.
pub fn systemctl_says(query: &str) -> bool {
    Command::new("systemctl")
        .args([query, "--quiet", paths::UNIT_NAME])
        .status()
        .is_ok_and(|status| status.success())
}

/// A `systemctl ...` step.
pub fn systemctl(args: &[&str]) -> Step {
    let mut argv = vec!["systemctl".to_owned()];
    argv.extend(args.iter().map(|arg| (*arg).to_owned()));
    Step::Run { argv }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_print_as_one_line_each() {
        let tree = Tree::new(None, "install");
        let step = Step::Mkdir {
            path: PathBuf::from("/etc/roster"),
            mode: 0o750,
            owner: Owner::new("root", "agent-runner"),
        };
        assert_eq!(
            step.describe(&tree),
            "mkdir /etc/roster 0750 root:agent-runner"
        );
        assert_eq!(
            Step::Chmod {
                path: PathBuf::from("/x"),
                kind: Kind::Directory,
                mode: 0o700
            }
            .describe(&Tree::new(
                Some(std::path::Path::new("/scratch")),
                "install"
            )),
            "chmod 0700 /scratch/x"
        );
        assert_eq!(
            Step::CreateUser {
                name: "svc".into(),
                uid: Some(990),
                group: Some("svc".into())
            }
            .describe(&tree),
            "create system user svc (uid 990, group svc, no login shell, home /var/lib/roster)"
        );
    }
}
