//! `roster uninstall`: the unit goes; with `--purge`, what the install
//! record says install made, and nothing else.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

use super::accounts::Accounts;
use super::record::{Entry, Record};
use super::steps::{carry_out, systemctl, Step};
use super::tree::{Kind, Tree};
use super::{absolute_root, read_record, require_root, systemd_runs, UninstallOptions};
use crate::paths;

/// Runs `roster uninstall`.
pub fn uninstall(options: &UninstallOptions) -> Result<ExitCode> {
    let root = options.root.as_deref();
    require_root("uninstall", root)?;
    let root = absolute_root(root)?;
    let tree = Tree::new(root.as_deref(), "uninstall");
    let accounts = Accounts::new(&tree);
    let manage_systemd = tree.root().is_none() && systemd_runs();
    let unit_path = PathBuf::from(paths::UNIT_FILE);
    // A link in the unit's place is removed itself, never what it points to.
    let unit_exists = match tree.find(&unit_path)? {
        Some(found) if found.kind == Kind::Directory => {
            tree.expect(&unit_path, Kind::File)?;
            true
        }
        found => found.is_some(),
    };
    let mut steps = Vec::new();
    // What the steps remove (as on the installed system), and what is kept.
    let mut removed = BTreeSet::new();
    let mut kept = Vec::new();
    if manage_systemd && unit_exists {
        steps.push(systemctl(&["disable", "--now", paths::UNIT_NAME]));
    }
    if unit_exists {
        steps.push(Step::Remove {
            path: unit_path.clone(),
        });
        removed.insert(unit_path);
        if manage_systemd {
            steps.push(systemctl(&["daemon-reload"]));
        }
    }
    let config_dir = PathBuf::from(paths::CONFIG_DIR);
    let home = PathBuf::from(paths::STATE_HOME);
    let config_dir_exists = tree.expect(&config_dir, Kind::Directory)?.is_some();
    let home_exists = tree.expect(&home, Kind::Directory)?.is_some();
    if options.purge {
        // With the unit gone the daemon is stopped; one started by hand is not.
        let locked = !(manage_systemd && unit_exists)
            && home_exists
            && roster_store::Home::new(tree.shown(&home))
                .is_locked()
                .unwrap_or(false);
        if locked {
            let shown = tree.shown(&home);
            bail!(
                "a roster daemon is running in {}: stop it first (roster --home {} down), then purge",
                shown.display(),
                shown.display()
            );
        }
        match read_record(&tree)? {
            Some(record) => plan_purge(
                &tree,
                &accounts,
                &record,
                &options.user,
                &mut steps,
                &mut removed,
                &mut kept,
            )?,
            None => {
                let mut present: Vec<String> =
                    [(&config_dir, config_dir_exists), (&home, home_exists)]
                        .into_iter()
                        .filter(|(_, exists)| *exists)
                        .map(|(path, _)| tree.shown(path).display().to_string())
                        .collect();
                if options.user != "root" && accounts.user(&options.user)?.is_some() {
                    present.push(format!("the user {}", options.user));
                }
                if !present.is_empty() {
                    kept.push(format!(
                        "{}: there is no record of what roster install made ({} is missing: installed by an older roster?); remove them yourself if they are roster's",
                        present.join(" and "),
                        tree.shown(Path::new(paths::INSTALL_RECORD)).display()
                    ));
                }
            }
        }
    }
    if let Err(interrupted) = carry_out(&tree, &accounts, &steps, options.dry_run) {
        return Err(interrupted.error);
    }
    for why in kept {
        println!(
            "{}{why}",
            if options.dry_run {
                "would keep "
            } else {
                "kept "
            }
        );
    }
    if !options.purge {
        let present: Vec<String> = [(&config_dir, config_dir_exists), (&home, home_exists)]
            .into_iter()
            .filter(|(_, exists)| *exists)
            .map(|(path, _)| tree.shown(path).display().to_string())
            .collect();
        if !present.is_empty() {
            println!(
                "kept {} (config, state, logs, secrets) and the user {}: --purge removes them",
                present.join(" and "),
                options.user
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How many names of what keeps a directory are printed.
const SHOWN_NAMES: usize = 8;

/// Plans what `--purge` removes: what the record says install made, and
/// only that. `removed` gathers the paths the steps remove; `kept` says
/// what stays and why.
fn plan_purge(
    tree: &Tree,
    accounts: &Accounts,
    record: &Record,
    user: &str,
    steps: &mut Vec<Step>,
    removed: &mut BTreeSet<PathBuf>,
    kept: &mut Vec<String>,
) -> Result<()> {
    for path in record.outermost_trees() {
        if tree.expect(path, Kind::Directory)?.is_some() {
            steps.push(Step::RemoveTree {
                path: path.to_path_buf(),
            });
            removed.insert(path.to_path_buf());
        }
    }
    for own in [paths::CONFIG_DIR, paths::STATE_HOME] {
        let path = Path::new(own);
        if !record.made_directory(path) && tree.find(path)?.is_some() {
            kept.push(format!(
                "{}: roster install did not make it (it was there before)",
                tree.shown(path).display()
            ));
        }
    }
    let config_file = PathBuf::from(paths::CONFIG_FILE);
    if record.has(&Entry::File(config_file.clone()))
        && tree.expect(&config_file, Kind::File)?.is_some()
    {
        steps.push(Step::Remove {
            path: config_file.clone(),
        });
        removed.insert(config_file);
    }
    let user_made = record.has(&Entry::User(user.to_owned()));
    let group_made = record.has(&Entry::Group(user.to_owned()));
    if accounts.user(user)?.is_some() {
        if user_made {
            steps.push(Step::DeleteUser {
                name: user.to_owned(),
                group: group_made,
            });
        } else {
            kept.push(format!("the user {user}: roster install did not create it"));
        }
    } else if group_made && accounts.group(user)?.is_some() {
        steps.push(Step::DeleteGroup {
            name: user.to_owned(),
        });
    }
    let record_path = PathBuf::from(paths::INSTALL_RECORD);
    steps.push(Step::Remove {
        path: record_path.clone(),
    });
    removed.insert(record_path);
    for directory in record.directories() {
        if tree.expect(directory, Kind::Directory)?.is_none() {
            continue;
        }
        let mut left: Vec<String> = tree
            .list(directory)?
            .into_iter()
            .filter(|name| !removed.contains(&directory.join(name)))
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        left.sort();
        if left.is_empty() {
            steps.push(Step::RemoveEmptyDirectory {
                path: directory.to_path_buf(),
            });
            removed.insert(directory.to_path_buf());
        } else {
            let more = left.len().saturating_sub(SHOWN_NAMES);
            left.truncate(SHOWN_NAMES);
            kept.push(format!(
                "{}: not empty ({}{})",
                tree.shown(directory).display(),
                left.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
    }
    Ok(())
}
