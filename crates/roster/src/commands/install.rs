//! `roster install` and `roster uninstall`: the system user, the
//! directories of an installed roster, and its systemd unit.
//!
//! Both plan first (comparing what is on disk with what should be), then
//! print each change on a line of its own as they make it; `--dry-run`
//! prints the plan and makes nothing. A run with nothing to do says so.
//!
//! With `--root DIR`, every path is under DIR and the system user goes into
//! DIR/etc/passwd, DIR/etc/group, DIR/etc/shadow and DIR/etc/gshadow
//! through `useradd --prefix DIR` (shadow's `--root` would chroot into DIR
//! and need a whole system there; `--prefix` only needs those four files,
//! which are created empty when missing). Owners under DIR are resolved
//! from DIR's files, not the host's. systemd is left alone.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use crate::paths::{self, under};
use crate::systemd::{daemon_unit, DaemonUnit};

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
    /// Also remove /etc/roster, /var/lib/roster and the user.
    #[arg(long)]
    pub purge: bool,
    /// Print every change, make none.
    #[arg(long)]
    pub dry_run: bool,
}

/// `user:group` by name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owner {
    user: String,
    group: String,
}

impl Owner {
    fn new(user: &str, group: &str) -> Self {
        Self {
            user: user.to_owned(),
            group: group.to_owned(),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.user, self.group)
    }
}

/// One change, printed as one line.
#[derive(Debug)]
enum Step {
    CreateUser {
        name: String,
        group_exists: bool,
    },
    CreateGroup {
        name: String,
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
        mode: u32,
    },
    Chown {
        path: PathBuf,
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
    DeleteUser {
        name: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateUser { name, .. } => write!(
                f,
                "create system user {name} (group {name}, no login shell, home {})",
                paths::STATE_HOME
            ),
            Step::CreateGroup { name } => write!(f, "create system group {name}"),
            Step::Mkdir { path, mode, owner } => {
                write!(f, "mkdir {} {mode:04o} {owner}", path.display())
            }
            Step::Write {
                path,
                mode,
                owner,
                why,
                ..
            } => write!(f, "write {} {mode:04o} {owner} ({why})", path.display()),
            Step::Chmod { path, mode } => write!(f, "chmod {mode:04o} {}", path.display()),
            Step::Chown { path, owner } => write!(f, "chown {owner} {}", path.display()),
            Step::Run { argv } => write!(f, "run {}", argv.join(" ")),
            Step::Remove { path } => write!(f, "remove {}", path.display()),
            Step::RemoveTree { path } => write!(f, "remove {} and all in it", path.display()),
            Step::DeleteUser { name } => write!(f, "delete user {name} and its group"),
        }
    }
}

/// Users and groups of the system, or of the root given.
struct Accounts {
    root: Option<PathBuf>,
}

impl Accounts {
    /// `(uid, primary gid)` of a user, None when missing.
    fn user(&self, name: &str) -> Result<Option<(u32, u32)>> {
        if name == "root" {
            return Ok(Some((0, 0)));
        }
        match &self.root {
            None => Ok(nix::unistd::User::from_name(name)
                .with_context(|| format!("looking up the user {name}"))?
                .map(|user| (user.uid.as_raw(), user.gid.as_raw()))),
            Some(root) => {
                let entry = find_entry(&root.join("etc/passwd"), name)?;
                Ok(entry.and_then(|fields| {
                    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
                }))
            }
        }
    }

    /// The gid of a group, None when missing.
    fn group(&self, name: &str) -> Result<Option<u32>> {
        if name == "root" {
            return Ok(Some(0));
        }
        match &self.root {
            None => Ok(nix::unistd::Group::from_name(name)
                .with_context(|| format!("looking up the group {name}"))?
                .map(|group| group.gid.as_raw())),
            Some(root) => {
                let entry = find_entry(&root.join("etc/group"), name)?;
                Ok(entry.and_then(|fields| fields.get(2)?.parse().ok()))
            }
        }
    }

    /// The name of a user's primary group.
    fn primary_group(&self, user: &str) -> Result<String> {
        if user == "root" {
            return Ok("root".into());
        }
        let Some((_, gid)) = self.user(user)? else {
            // Created by this install with a group of its own name.
            return Ok(user.to_owned());
        };
        match &self.root {
            None => Ok(
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                    .with_context(|| format!("looking up group {gid}"))?
                    .map(|group| group.name)
                    .unwrap_or_else(|| gid.to_string()),
            ),
            Some(root) => {
                let text = read_or_empty(&root.join("etc/group"))?;
                Ok(text
                    .lines()
                    .map(|line| line.split(':').collect::<Vec<_>>())
                    .find(|fields| fields.get(2) == Some(&gid.to_string().as_str()))
                    .and_then(|fields| fields.first().map(|name| (*name).to_owned()))
                    .unwrap_or_else(|| gid.to_string()))
            }
        }
    }

    /// Numeric ids of an owner; both must exist by now.
    fn ids(&self, owner: &Owner) -> Result<(u32, u32)> {
        let (uid, _) = self
            .user(&owner.user)?
            .with_context(|| format!("no user {}", owner.user))?;
        let gid = self
            .group(&owner.group)?
            .with_context(|| format!("no group {}", owner.group))?;
        Ok((uid, gid))
    }

    /// The `--prefix DIR` arguments of useradd and friends.
    fn prefix_args(&self) -> Vec<String> {
        match &self.root {
            Some(root) => vec!["--prefix".into(), root.display().to_string()],
            None => Vec::new(),
        }
    }
}

fn read_or_empty(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// The `:`-separated fields of `name`'s line in a passwd-style file.
fn find_entry(path: &Path, name: &str) -> Result<Option<Vec<String>>> {
    let text = read_or_empty(path)?;
    Ok(text
        .lines()
        .map(|line| line.split(':').map(str::to_owned).collect::<Vec<_>>())
        .find(|fields| fields.first().map(String::as_str) == Some(name)))
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
fn plan_path(
    accounts: &Accounts,
    steps: &mut Vec<Step>,
    path: &Path,
    want_dir: bool,
    mode: u32,
    owner: &Owner,
    create: Step,
) -> Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            plan_parents(steps, path);
            steps.push(create);
            return Ok(());
        }
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let right_kind = if want_dir {
        metadata.file_type().is_dir()
    } else {
        metadata.file_type().is_file()
    };
    if !right_kind {
        bail!(
            "{} is not a {} (a symlink or something else): move it away and run again",
            path.display(),
            if want_dir {
                "directory"
            } else {
                "regular file"
            }
        );
    }
    if metadata.mode() & 0o7777 != mode {
        steps.push(Step::Chmod {
            path: path.to_path_buf(),
            mode,
        });
    }
    let owned = match (accounts.user(&owner.user)?, accounts.group(&owner.group)?) {
        (Some((uid, _)), Some(gid)) => metadata.uid() == uid && metadata.gid() == gid,
        _ => false,
    };
    if !owned {
        steps.push(Step::Chown {
            path: path.to_path_buf(),
            owner: owner.clone(),
        });
    }
    Ok(())
}

/// Plans missing parents of `path` (0755 root:root), outermost first,
/// unless an earlier step already makes them.
fn plan_parents(steps: &mut Vec<Step>, path: &Path) {
    let mut missing = Vec::new();
    let mut parent = path.parent();
    while let Some(dir) = parent {
        if dir.as_os_str().is_empty() || dir.exists() {
            break;
        }
        let planned = steps
            .iter()
            .any(|step| matches!(step, Step::Mkdir { path, .. } if path == dir));
        if !planned {
            missing.push(dir.to_path_buf());
        }
        parent = dir.parent();
    }
    for dir in missing.into_iter().rev() {
        steps.push(Step::Mkdir {
            path: dir,
            mode: 0o755,
            owner: Owner::new("root", "root"),
        });
    }
}

/// Plans a file whose contents must be `contents` (`replace`) or that is
/// only written when missing.
#[allow(clippy::too_many_arguments)]
fn plan_file(
    accounts: &Accounts,
    steps: &mut Vec<Step>,
    path: &Path,
    mode: u32,
    owner: &Owner,
    contents: &[u8],
    replace: bool,
    why: &'static str,
) -> Result<()> {
    let write = Step::Write {
        path: path.to_path_buf(),
        mode,
        owner: owner.clone(),
        contents: contents.to_vec(),
        why,
    };
    if replace && path.is_file() {
        let current = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
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
    plan_path(accounts, steps, path, false, mode, owner, write)
}

/// Makes one step.
fn apply(accounts: &Accounts, step: &Step) -> Result<()> {
    match step {
        Step::CreateUser { name, group_exists } => {
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
            if *group_exists {
                argv.extend(["-g".to_owned(), name.clone()]);
            } else {
                argv.push("-U".to_owned());
            }
            argv.push(name.clone());
            run("useradd", &argv)
        }
        Step::CreateGroup { name } => {
            let mut argv = accounts.prefix_args();
            argv.extend(["-r".to_owned(), name.clone()]);
            run("groupadd", &argv)
        }
        Step::Mkdir { path, mode, owner } => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            set_owner_and_mode(accounts, path, *mode, owner)
        }
        Step::Write {
            path,
            mode,
            owner,
            contents,
            ..
        } => write_atomically(accounts, path, *mode, owner, contents),
        Step::Chmod { path, mode } => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                .with_context(|| format!("chmod {}", path.display()))
        }
        Step::Chown { path, owner } => {
            let (uid, gid) = accounts.ids(owner)?;
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", path.display()))
        }
        Step::Run { argv } => match argv.split_first() {
            Some((program, args)) => run(program, args),
            None => Ok(()),
        },
        Step::Remove { path } => match std::fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(error).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        },
        Step::RemoveTree { path } => match std::fs::remove_dir_all(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(error).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        },
        Step::DeleteUser { name } => {
            let mut argv = accounts.prefix_args();
            argv.push(name.clone());
            run("userdel", &argv)?;
            // userdel removes the user's own group unless others use it.
            if accounts.group(name)?.is_some() {
                let mut argv = accounts.prefix_args();
                argv.push(name.clone());
                run("groupdel", &argv)?;
            }
            Ok(())
        }
    }
}

fn set_owner_and_mode(accounts: &Accounts, path: &Path, mode: u32, owner: &Owner) -> Result<()> {
    let (uid, gid) = accounts.ids(owner)?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Writes a temp file beside `path` with its owner and mode, fsyncs it,
/// renames it over `path` and fsyncs the directory.
fn write_atomically(
    accounts: &Accounts,
    path: &Path,
    mode: u32,
    owner: &Owner,
    contents: &[u8],
) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no directory", path.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let temp = dir.join(format!(".{}.roster-tmp", name.to_string_lossy()));
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("creating {}", temp.display()))?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temp.display()))
        .and_then(|()| set_owner_and_mode(accounts, &temp, mode, owner))
        .and_then(|()| {
            std::fs::rename(&temp, path)
                .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    if let Ok(directory) = std::fs::File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// Runs a program, failing with its stderr.
fn run(program: &str, args: &[String]) -> Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
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
fn systemctl_says(query: &str) -> bool {
    Command::new("systemctl")
        .args([query, "--quiet", paths::UNIT_NAME])
        .status()
        .is_ok_and(|status| status.success())
}

fn systemctl(args: &[&str]) -> Step {
    let mut argv = vec!["systemctl".to_owned()];
    argv.extend(args.iter().map(|arg| (*arg).to_owned()));
    Step::Run { argv }
}

/// Prints the steps and makes them (or, dry, only prints them).
fn carry_out(accounts: &Accounts, steps: &[Step], dry_run: bool) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    if steps.is_empty() {
        let _ = writeln!(stdout, "nothing to change");
        return Ok(());
    }
    if dry_run {
        let _ = writeln!(stdout, "dry run: would make these changes (making none):");
    }
    for step in steps {
        let _ = writeln!(stdout, "{}{step}", if dry_run { "  " } else { "" });
        let _ = stdout.flush();
        if !dry_run {
            apply(accounts, step).with_context(|| format!("{step}"))?;
        }
    }
    Ok(())
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
    let root = root.as_deref();
    let accounts = Accounts {
        root: root.map(Path::to_path_buf),
    };
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
            roster_daemon::config_file::load_config(&file).map_err(anyhow::Error::msg)?;
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
    if let Some(root) = root {
        // useradd --prefix needs the account files to exist.
        let etc = root.join("etc");
        for (name, mode) in [
            ("passwd", 0o644),
            ("group", 0o644),
            ("shadow", 0o600),
            ("gshadow", 0o600),
        ] {
            let path = etc.join(name);
            if !path.exists() {
                plan_parents(&mut steps, &path);
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
    if !user_exists {
        steps.push(Step::CreateUser {
            name: user.to_owned(),
            group_exists,
        });
    } else if !group_exists {
        steps.push(Step::CreateGroup {
            name: user.to_owned(),
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
    let config_dir = under(root, paths::CONFIG_DIR);
    plan_path(
        &accounts,
        &mut steps,
        &config_dir,
        true,
        0o750,
        &config_owner,
        Step::Mkdir {
            path: config_dir.clone(),
            mode: 0o750,
            owner: config_owner.clone(),
        },
    )?;
    let config_file = under(root, paths::CONFIG_FILE);
    plan_file(
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
    let home = under(root, paths::STATE_HOME);
    let logs = home.join("logs");
    let secrets = home.join(paths::SECRETS_DIR);
    for (path, mode, owner) in [
        (&home, 0o750, &home_owner),
        (&logs, 0o750, &home_owner),
        (&secrets, 0o700, &secrets_owner),
    ] {
        plan_path(
            &accounts,
            &mut steps,
            path,
            true,
            mode,
            owner,
            Step::Mkdir {
                path: path.clone(),
                mode,
                owner: owner.clone(),
            },
        )?;
    }
    let unit_path = under(root, paths::UNIT_FILE);
    let unit_changed = !path_has(&unit_path, unit.as_bytes());
    plan_file(
        &accounts,
        &mut steps,
        &unit_path,
        0o644,
        &Owner::new("root", "root"),
        unit.as_bytes(),
        true,
        "the daemon's unit",
    )?;
    let manage_systemd = root.is_none() && systemd_runs();
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
    carry_out(&accounts, &steps, options.dry_run)?;
    if options.config.is_some() && config_file.is_file() && !path_has(&config_file, &starter) {
        println!(
            "kept {}, which differs from --config: it is never overwritten (copy it yourself, then roster apply)",
            config_file.display()
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
        } else if root.is_some() {
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

fn path_has(path: &Path, contents: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|current| current == contents)
}

/// `--root DIR` made absolute (the paths under it are printed and compared).
fn absolute_root(root: Option<&Path>) -> Result<Option<PathBuf>> {
    root.map(|root| {
        std::path::absolute(root).with_context(|| format!("resolving {}", root.display()))
    })
    .transpose()
}

/// Runs `roster uninstall`.
pub fn uninstall(options: &UninstallOptions) -> Result<ExitCode> {
    let root = options.root.as_deref();
    require_root("uninstall", root)?;
    let root = absolute_root(root)?;
    let root = root.as_deref();
    let accounts = Accounts {
        root: root.map(Path::to_path_buf),
    };
    let manage_systemd = root.is_none() && systemd_runs();
    let unit_path = under(root, paths::UNIT_FILE);
    let unit_exists = unit_path.symlink_metadata().is_ok();
    let mut steps = Vec::new();
    if manage_systemd && unit_exists {
        steps.push(systemctl(&["disable", "--now", paths::UNIT_NAME]));
    }
    if unit_exists {
        steps.push(Step::Remove { path: unit_path });
        if manage_systemd {
            steps.push(systemctl(&["daemon-reload"]));
        }
    }
    let config_dir = under(root, paths::CONFIG_DIR);
    let home = under(root, paths::STATE_HOME);
    if options.purge {
        // With the unit gone the daemon is stopped; one started by hand is not.
        let locked = !(manage_systemd && unit_exists)
            && roster_daemon::Home::new(home.clone())
                .is_locked()
                .unwrap_or(false);
        if locked {
            bail!(
                "a roster daemon is running in {}: stop it first (roster --home {} down), then purge",
                home.display(),
                home.display()
            );
        }
        for path in [&config_dir, &home] {
            if path.symlink_metadata().is_ok() {
                steps.push(Step::RemoveTree { path: path.clone() });
            }
        }
        if options.user != "root" && accounts.user(&options.user)?.is_some() {
            steps.push(Step::DeleteUser {
                name: options.user.clone(),
            });
        }
    }
    carry_out(&accounts, &steps, options.dry_run)?;
    if !options.purge {
        let kept: Vec<String> = [&config_dir, &home]
            .into_iter()
            .filter(|path| path.exists())
            .map(|path| path.display().to_string())
            .collect();
        if !kept.is_empty() {
            println!(
                "kept {} (config, state, logs, secrets) and the user {}: --purge removes them",
                kept.join(" and "),
                options.user
            );
        }
    }
    Ok(ExitCode::SUCCESS)
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
    fn steps_print_as_one_line_each() {
        let step = Step::Mkdir {
            path: PathBuf::from("/etc/roster"),
            mode: 0o750,
            owner: Owner::new("root", "agent-runner"),
        };
        assert_eq!(step.to_string(), "mkdir /etc/roster 0750 root:agent-runner");
        assert_eq!(
            Step::Chmod {
                path: PathBuf::from("/x"),
                mode: 0o700
            }
            .to_string(),
            "chmod 0700 /x"
        );
    }

    #[test]
    fn accounts_are_read_from_a_root() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("etc")).expect("etc");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "svc:x:998:997::/nonexistent:/usr/sbin/nologin\n",
        )
        .expect("passwd");
        std::fs::write(dir.path().join("etc/group"), "svcgrp:x:997:\n").expect("group");
        let accounts = Accounts {
            root: Some(dir.path().to_path_buf()),
        };
        assert_eq!(accounts.user("svc").expect("read"), Some((998, 997)));
        assert_eq!(accounts.user("other").expect("read"), None);
        assert_eq!(accounts.group("svcgrp").expect("read"), Some(997));
        assert_eq!(accounts.primary_group("svc").expect("read"), "svcgrp");
        assert_eq!(accounts.user("root").expect("root"), Some((0, 0)));
    }
}
