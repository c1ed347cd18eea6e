//! `roster install` and `roster uninstall`: the system user, the
//! directories of an installed roster, and its systemd unit.
//!
//! Both plan first (comparing what is on disk with what should be), then
//! print each change on a line of its own as they make it; `--dry-run`
//! prints the plan and makes nothing. A run with nothing to do says so.
//!
//! Install records what it made in `/etc/roster/.installed` ([`record`]);
//! `uninstall --purge` removes that and nothing else: roster's state
//! directories with all in them, its files, the directories it made when
//! they are empty, and the user and group it created. What it keeps, it
//! names.
//!
//! With `--root DIR`, every path is under DIR and the system user goes into
//! DIR/etc/passwd, DIR/etc/group, DIR/etc/shadow and DIR/etc/gshadow
//! through `useradd --prefix DIR` (shadow's `--root` would chroot into DIR
//! and need a whole system there; `--prefix` only needs those four files,
//! which are created empty when missing). Owners under DIR are resolved
//! from DIR's files, and the ids of an account made there are chosen so
//! that this host does not use them either ([`accounts`]). No link below
//! DIR is followed ([`tree`]). systemd is left alone.

mod accounts;
mod record;
mod steps;
mod tree;
mod uninstall;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::paths;
use crate::systemd::{daemon_unit, DaemonUnit};
use accounts::{Accounts, Owner};
use record::{Entry, Record};
use steps::{carry_out, systemctl, systemctl_says, Step};
use tree::{Kind, Tree};
pub use uninstall::uninstall;

/// The user `roster install` creates unless told otherwise.
pub const DEFAULT_USER: &str = "agent-runner";

/// The config written when there is none: valid, with no agents.
const STARTER_CONFIG: &str = "\
# roster's config, applied by the daemon at start. Apply a change with
#   roster apply -f /etc/roster/roster.toml --home /var/lib/roster
# Check one with `roster check -f FILE`. A minimal agent:
#
# [agents.hello]
# command = [\"/usr/bin/python3\", \"-u\", \"/srv/hello/agent.py\"]
# cwd = \"/srv/hello\"
# user = \"agent-runner\"       # never root unless `allow_root = true`
# memory_max = \"512MiB\"
# cpu_quota = \"50%\"
# env_file = \"/srv/hello/hello.env\"
#
# [log]
# max_size = \"10MiB\"
# keep = 14
";

/// What `roster install` was asked.
#[derive(Debug, clap::Args)]
pub struct InstallOptions {
    /// The system user (and group) agents run as.
    #[arg(long, default_value = DEFAULT_USER)]
    pub user: String,
    /// Install under DIR instead of / (users go into DIR/etc/passwd).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print every change, make none.
    #[arg(long)]
    pub dry_run: bool,
    /// Install this config as /etc/roster/roster.toml if there is none.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Members of GROUP may use the daemon and read its home.
    #[arg(long, value_name = "GROUP")]
    pub admin_group: Option<String>,
    /// Run the daemon as USER instead of root (agents then all run as
    /// USER: only root can switch users).
    #[arg(long, value_name = "USER")]
    pub daemon_user: Option<String>,
}

/// What `roster uninstall` was asked.
#[derive(Debug, clap::Args)]
pub struct UninstallOptions {
    /// The system user --purge deletes.
    #[arg(long, default_value = DEFAULT_USER)]
    pub user: String,
    /// Uninstall from under DIR instead of /.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Also remove what roster install made (it keeps a record in
    /// /etc/roster/.installed): /etc/roster, /var/lib/roster, the user.
    #[arg(long)]
    pub purge: bool,
    /// Print every change, make none.
    #[arg(long)]
    pub dry_run: bool,
}

/// Whether systemd is the init system here.
fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn require_root(command: &str, root: Option<&Path>) -> Result<()> {
    if root.is_none() && !nix::unistd::geteuid().is_root() {
        bail!(
            "roster {command} must run as root: it manages a system user, /etc/roster, {} and a systemd unit\n  hint: sudo roster {command} (or --root DIR to work under a scratch directory)",
            paths::STATE_HOME
        );
    }
    Ok(())
}

/// Plans what to do for one path that should be a directory or a file
/// with `mode` and `owner`; `create` is the step that makes it.
#[allow(clippy::too_many_arguments)]
fn plan_path(
    tree: &Tree,
    accounts: &Accounts,
    steps: &mut Vec<Step>,
    path: &Path,
    kind: Kind,
    mode: u32,
    owner: &Owner,
    create: Step,
) -> Result<()> {
    let Some(found) = tree.expect(path, kind)? else {
        plan_parents(tree, steps, path)?;
        steps.push(create);
        return Ok(());
    };
    if found.mode != mode {
        steps.push(Step::Chmod {
            path: path.to_path_buf(),
            kind,
            mode,
        });
    }
    let owned = match (accounts.user(&owner.user)?, accounts.group(&owner.group)?) {
        (Some((uid, _)), Some(gid)) => found.uid == uid && found.gid == gid,
        _ => false,
    };
    if !owned {
        steps.push(Step::Chown {
            path: path.to_path_buf(),
            kind,
            owner: owner.clone(),
        });
    }
    Ok(())
}

/// Plans missing directories on the way to `path` (0755 root:root),
/// outermost first, unless an earlier step already makes them.
fn plan_parents(tree: &Tree, steps: &mut Vec<Step>, path: &Path) -> Result<()> {
    let mut missing = Vec::new();
    for directory in path.ancestors().skip(1) {
        if directory == Path::new("/") || tree.expect(directory, Kind::Directory)?.is_some() {
            break;
        }
        let planned = steps
            .iter()
            .any(|step| matches!(step, Step::Mkdir { path, .. } if path == directory));
        if !planned {
            missing.push(directory.to_path_buf());
        }
    }
    for directory in missing.into_iter().rev() {
        steps.push(Step::Mkdir {
            path: directory,
            mode: 0o755,
            owner: Owner::new("root", "root"),
        });
    }
    Ok(())
}

/// Plans a file whose contents must be `contents` (`replace`) or that is
/// only written when missing.
#[allow(clippy::too_many_arguments)]
fn plan_file(
    tree: &Tree,
    accounts: &Accounts,
    steps: &mut Vec<Step>,
    path: &Path,
    mode: u32,
    owner: &Owner,
    contents: &[u8],
    replace: bool,
    why: &'static str,
) -> Result<()> {
    if replace {
        if let Some(current) = tree.read(path)? {
            if current != contents {
                steps.push(Step::Write {
                    path: path.to_path_buf(),
                    mode,
                    owner: owner.clone(),
                    contents: contents.to_vec(),
                    why: "changed",
                });
                return Ok(());
            }
        }
    }
    let write = Step::Write {
        path: path.to_path_buf(),
        mode,
        owner: owner.clone(),
        contents: contents.to_vec(),
        why,
    };
    plan_path(tree, accounts, steps, path, Kind::File, mode, owner, write)
}

/// What a step makes, for the record: only what uninstall --purge may
/// take away again.
fn made_by(step: &Step) -> Vec<Entry> {
    let made = match step {
        Step::CreateUser { name, group, .. } => {
            let mut made = vec![Entry::User(name.clone())];
            if group.is_none() {
                made.push(Entry::Group(name.clone()));
            }
            made
        }
        Step::CreateGroup { name, .. } => vec![Entry::Group(name.clone())],
        Step::Mkdir { path, .. } => vec![Entry::directory(path)],
        Step::Write { path, why, .. } if *why != "changed" => vec![Entry::File(path.clone())],
        _ => Vec::new(),
    };
    made.into_iter().filter(Entry::is_roster_s).collect()
}

/// The record install left, if any; entries it does not obey are warned
/// about on stderr.
fn read_record(tree: &Tree) -> Result<Option<Record>> {
    let path = Path::new(paths::INSTALL_RECORD);
    let Some(text) = tree.read(path)? else {
        return Ok(None);
    };
    let (record, problems) = Record::parse(&String::from_utf8_lossy(&text));
    for problem in problems {
        eprintln!("warning: {}: {problem}", tree.shown(path).display());
    }
    Ok(Some(record))
}

/// The step that writes the record.
fn write_record(record: &Record) -> Step {
    Step::Write {
        path: PathBuf::from(paths::INSTALL_RECORD),
        mode: 0o600,
        owner: Owner::new("root", "root"),
        contents: record.render().into_bytes(),
        why: "what roster install made, for uninstall --purge",
    }
}

/// Runs `roster install`.
pub fn install(options: &InstallOptions) -> Result<ExitCode> {
    let root = options.root.as_deref();
    require_root("install", root)?;
    for (what, name) in [
        ("--user", Some(&options.user)),
        ("--daemon-user", options.daemon_user.as_ref()),
        ("--admin-group", options.admin_group.as_ref()),
    ] {
        if let Some(name) = name {
            if !roster_core::hardening::valid_account(name) {
                bail!("{what} {name:?} is not a user or group name (letters, digits, '.', '_' and '-', not starting with '-')");
            }
        }
    }
    let root = absolute_root(root)?;
    let tree = Tree::new(root.as_deref(), "install");
    let accounts = Accounts::new(&tree);
    let user = options.user.as_str();
    let daemon_user = options.daemon_user.as_deref().unwrap_or("root");
    if daemon_user != "root" && daemon_user != user && accounts.user(daemon_user)?.is_none() {
        bail!("--daemon-user {daemon_user}: no such user\n  hint: create it first, or use --daemon-user {user}");
    }
    if let Some(group) = &options.admin_group {
        if accounts.group(group)?.is_none() {
            bail!(
                "--admin-group {group}: no such group\n  hint: create it first: groupadd {group}"
            );
        }
    }
    let starter = match &options.config {
        Some(file) => {
            let file = super::config_path(file)?;
            roster_store::config_file::load_config(&file).map_err(anyhow::Error::msg)?;
            std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?
        }
        None => STARTER_CONFIG.as_bytes().to_vec(),
    };
    let binary = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("finding this roster binary")?;
    let unit = daemon_unit(&DaemonUnit {
        binary: binary.clone(),
        daemon_user: options.daemon_user.clone(),
        admin_group: options.admin_group.clone(),
    })
    .map_err(anyhow::Error::msg)?;

    let mut steps = Vec::new();
    if tree.root().is_some() {
        // useradd --prefix needs the account files to exist.
        for (name, mode) in [
            ("passwd", 0o644),
            ("group", 0o644),
            ("shadow", 0o600),
            ("gshadow", 0o600),
        ] {
            let path = Path::new("/etc").join(name);
            if tree.expect(&path, Kind::File)?.is_none() {
                plan_parents(&tree, &mut steps, &path)?;
                steps.push(Step::Write {
                    path,
                    mode,
                    owner: Owner::new("root", "root"),
                    contents: Vec::new(),
                    why: "empty, for useradd --prefix",
                });
            }
        }
    }
    let user_exists = accounts.user(user)?.is_some();
    let group_exists = accounts.group(user)?.is_some();
    // Under a root the group is made first, with the gid chosen here.
    let group_first = !group_exists && (user_exists || tree.root().is_some());
    if group_first {
        steps.push(Step::CreateGroup {
            name: user.to_owned(),
            gid: accounts.new_gid(user)?,
        });
    }
    if !user_exists {
        steps.push(Step::CreateUser {
            name: user.to_owned(),
            uid: accounts.new_uid(user)?,
            group: (group_exists || group_first).then(|| user.to_owned()),
        });
    }
    let daemon_group = if daemon_user == user {
        user.to_owned()
    } else {
        accounts.primary_group(daemon_user)?
    };
    let home_group = options
        .admin_group
        .clone()
        .unwrap_or_else(|| daemon_group.clone());
    let config_owner = Owner::new("root", user);
    let home_owner = Owner::new(daemon_user, &home_group);
    let secrets_owner = Owner::new(daemon_user, &daemon_group);
    let config_dir = PathBuf::from(paths::CONFIG_DIR);
    plan_path(
        &tree,
        &accounts,
        &mut steps,
        &config_dir,
        Kind::Directory,
        0o750,
        &config_owner,
        Step::Mkdir {
            path: config_dir.clone(),
            mode: 0o750,
            owner: config_owner.clone(),
        },
    )?;
    let config_file = PathBuf::from(paths::CONFIG_FILE);
    plan_file(
        &tree,
        &accounts,
        &mut steps,
        &config_file,
        0o640,
        &config_owner,
        &starter,
        false,
        if options.config.is_some() {
            "the config given"
        } else {
            "a commented config with no agents"
        },
    )?;
    let home = PathBuf::from(paths::STATE_HOME);
    let logs = home.join("logs");
    let secrets = home.join(paths::SECRETS_DIR);
    for (path, mode, owner) in [
        (&home, 0o750, &home_owner),
        (&logs, 0o750, &home_owner),
        (&secrets, 0o700, &secrets_owner),
    ] {
        plan_path(
            &tree,
            &accounts,
            &mut steps,
            path,
            Kind::Directory,
            mode,
            owner,
            Step::Mkdir {
                path: path.clone(),
                mode,
                owner: owner.clone(),
            },
        )?;
    }
    let unit_path = PathBuf::from(paths::UNIT_FILE);
    let unit_changed = tree.read(&unit_path)?.as_deref() != Some(unit.as_bytes());
    plan_file(
        &tree,
        &accounts,
        &mut steps,
        &unit_path,
        0o644,
        &Owner::new("root", "root"),
        unit.as_bytes(),
        true,
        "the daemon's unit",
    )?;
    let recorded = read_record(&tree)?.unwrap_or_default();
    let mut record = recorded.clone();
    record.entries.extend(steps.iter().flat_map(made_by));
    if record != recorded {
        steps.push(write_record(&record));
    }
    let manage_systemd = tree.root().is_none() && systemd_runs();
    let was_active = manage_systemd && systemctl_says("is-active");
    if manage_systemd {
        if unit_changed {
            steps.push(systemctl(&["daemon-reload"]));
        }
        if unit_changed || !systemctl_says("is-enabled") || !was_active {
            steps.push(systemctl(&["enable", "--now", paths::UNIT_NAME]));
        }
    }
    let changed = !steps.is_empty();
    if let Err(interrupted) = carry_out(&tree, &accounts, &steps, options.dry_run) {
        record_what_was_made(&tree, &accounts, recorded, &steps[..interrupted.done]);
        return Err(interrupted.error);
    }
    if options.config.is_some() && tree.read(&config_file)?.is_some_and(|kept| kept != starter) {
        println!(
            "kept {}, which differs from --config: it is never overwritten (copy it yourself, then roster apply)",
            tree.shown(&config_file).display()
        );
    }
    if changed || options.dry_run {
        let daemon = format!(
            "{} daemon -f {} --home {}",
            binary.display(),
            paths::CONFIG_FILE,
            paths::STATE_HOME
        );
        let mut stdout = std::io::stdout().lock();
        if manage_systemd {
            if unit_changed && was_active {
                let _ = writeln!(stdout, "the unit changed: `systemctl restart roster` runs the daemon under it (it restarts every agent)");
            }
            let _ = writeln!(
                stdout,
                "status: systemctl status roster; agents: roster --home {} status",
                paths::STATE_HOME
            );
        } else if tree.root().is_some() {
            let _ = writeln!(stdout, "on the system booted from that root, start it with: systemctl daemon-reload && systemctl enable --now roster");
        } else {
            let _ = writeln!(
                stdout,
                "systemd is not running here: start the daemon with: {daemon}"
            );
        }
        let _ = writeln!(
            stdout,
            "agents go in {}; agents' secrets: roster secret set AGENT KEY",
            paths::CONFIG_FILE
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// After a failed install, records what the steps `done` made, so that
/// purge can still take it away (when the config directory is there to
/// hold the record).
fn record_what_was_made(tree: &Tree, accounts: &Accounts, mut record: Record, done: &[Step]) {
    let before = record.clone();
    record.entries.extend(done.iter().flat_map(made_by));
    let config_dir = Path::new(paths::CONFIG_DIR);
    let has_dir = matches!(tree.find(config_dir), Ok(Some(found)) if found.kind == Kind::Directory);
    if record == before || !has_dir {
        return;
    }
    let step = write_record(&record);
    match carry_out(tree, accounts, std::slice::from_ref(&step), false) {
        Ok(()) => {}
        Err(interrupted) => eprintln!("warning: {:#}", interrupted.error),
    }
}

/// `--root DIR` made absolute (the paths under it are printed and
/// compared); DIR must exist.
fn absolute_root(root: Option<&Path>) -> Result<Option<PathBuf>> {
    let Some(root) = root else {
        return Ok(None);
    };
    let absolute =
        std::path::absolute(root).with_context(|| format!("resolving {}", root.display()))?;
    if !absolute.is_dir() {
        bail!(
            "--root {}: no such directory\n  hint: create it first (mkdir -p {})",
            absolute.display(),
            absolute.display()
        );
    }
    Ok(Some(absolute))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_config_is_valid() {
        let config =
            roster_core::config::parse("roster.toml", STARTER_CONFIG, Path::new("/etc/roster"))
                .expect("valid");
        assert!(config.agents.is_empty());
    }

    #[test]
    fn only_roster_s_paths_are_recorded() {
        let made = |step: Step| made_by(&step);
        assert_eq!(
            made(Step::Mkdir {
                path: "/var/lib/roster".into(),
                mode: 0o750,
                owner: Owner::new("root", "root"),
            }),
            vec![Entry::Tree("/var/lib/roster".into())]
        );
        assert_eq!(
            made(Step::Write {
                path: "/etc/passwd".into(),
                mode: 0o644,
                owner: Owner::new("root", "root"),
                contents: Vec::new(),
                why: "empty, for useradd --prefix",
            }),
            vec![]
        );
        assert_eq!(
            made(Step::Write {
                path: paths::UNIT_FILE.into(),
                mode: 0o644,
                owner: Owner::new("root", "root"),
                contents: Vec::new(),
                why: "changed",
            }),
            vec![],
            "a file that was there is not install's"
        );
        assert_eq!(
            made(Step::CreateUser {
                name: "svc".into(),
                uid: None,
                group: None,
            }),
            vec![Entry::User("svc".into()), Entry::Group("svc".into())]
        );
    }
}
