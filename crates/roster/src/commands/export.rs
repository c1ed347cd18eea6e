//! `roster export systemd|logrotate`: a config as plain systemd units, one
//! per agent, and a logrotate snippet for their logs. Secrets are never
//! read: units reference `env_file` and the home's secrets files.
//!
//! The units are for the home in use (`--home`, `ROSTER_HOME`, or the
//! default, as for every command): its secrets files, and its
//! `logs/NAME.log`, the file roster itself writes and `roster logs` reads.
//! Each program is written by its absolute path, found the way systemd
//! would run it (the agent's `env` PATH, else systemd's own). What the
//! units cannot carry over is said on stderr: an agent that would run as
//! root, secrets encrypted at rest, a logs directory that is missing.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use roster_core::config::AgentSpec;
use roster_core::hardening::Identity;
use roster_store::Home;

use crate::systemd::{agent_unit, agent_unit_name, logrotate, working_directory, ExportOptions};

/// Runs `roster export systemd`.
pub fn systemd(home: &Home, file: &Path, out: Option<&Path>, journal: bool) -> Result<ExitCode> {
    let config = super::check::load(file)?;
    let home = home.root();
    let options = ExportOptions {
        home: home.to_path_buf(),
        journal,
        secrets_encrypted: secrets_encrypted(home),
    };
    if options.secrets_encrypted && !config.agents.is_empty() {
        eprintln!(
            "warning: the secrets in {} are encrypted at rest ({} exists), which systemd cannot read: the units do not refer to them, so exported agents start without their secrets\n  hint: give each agent its secrets in an env_file (0600), or run them under roster",
            home.join("secrets").display(),
            home.join("secrets/key").display()
        );
    }
    if !journal && !config.agents.is_empty() && !home.join("logs").is_dir() {
        eprintln!(
            "warning: {} does not exist: the units append their output there and cannot start without it\n  hint: mkdir -p {} (roster up and roster install make it)",
            home.join("logs").display(),
            home.join("logs").display()
        );
    }
    let mut units = Vec::new();
    for (name, spec) in &config.agents {
        let name = name.as_str();
        if let Some(why) = runs_as_root(&spec.identity) {
            let hint = if spec.identity.root_intended() {
                "the config says so (user = \"root\" or allow_root = true)".to_owned()
            } else {
                format!("hint: set user = \"agent-runner\" (or its own, with create_user = true) in [agents.{name}] or [defaults]")
            };
            eprintln!("warning: agent `{name}` runs as root under its unit: {why}\n  {hint}");
        }
        let program = program_path(name, spec, home)?;
        let text = agent_unit(name, spec, &options, &program).map_err(anyhow::Error::msg)?;
        units.push((agent_unit_name(name), text));
    }
    let mut stdout = std::io::stdout().lock();
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, text) in &units {
                let path = dir.join(name);
                write_file(&path, text.as_bytes())?;
                let _ = writeln!(stdout, "wrote {}", path.display());
            }
            if units.is_empty() {
                let _ = writeln!(stdout, "no agents in {}: nothing written", file.display());
            }
        }
        None => {
            for (name, text) in &units {
                let _ = writeln!(stdout, "# ---- {name}");
                let _ = write!(stdout, "{text}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `roster export logrotate`.
pub fn logrotate_snippet(home: &Home, file: &Path) -> Result<ExitCode> {
    let config = super::check::load(file)?;
    let home = home.root();
    let agents: Vec<(&str, roster_core::StderrMode)> = config
        .agents
        .iter()
        .map(|(name, spec)| (name.as_str(), spec.stderr))
        .collect();
    let logs = home.join("logs");
    // logrotate must not rotate as root in a directory another user owns
    // (that user could plant links in it): it runs as that owner there.
    let su = match std::fs::symlink_metadata(&logs) {
        Ok(metadata) if metadata.uid() != 0 => {
            let user = nix::unistd::User::from_uid(metadata.uid().into())
                .ok()
                .flatten()
                .map(|user| user.name);
            let group = nix::unistd::Group::from_gid(metadata.gid().into())
                .ok()
                .flatten()
                .map(|group| group.name);
            match (user, group) {
                (Some(user), Some(group)) => Some((user, group)),
                _ => bail!(
                    "{} belongs to uid {} gid {}, which have no names here: logrotate's su needs names\n  hint: chown it to a named user and group",
                    logs.display(),
                    metadata.uid(),
                    metadata.gid()
                ),
            }
        }
        _ => None,
    };
    let text = logrotate(
        &config.log,
        home,
        &agents,
        su.as_ref()
            .map(|(user, group)| (user.as_str(), group.as_str())),
    )
    .map_err(anyhow::Error::msg)?;
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{text}");
    Ok(ExitCode::SUCCESS)
}

/// Whether the home's secrets are encrypted at rest. A key that cannot be
/// looked for (no permission) is said, and taken as absent.
fn secrets_encrypted(home: &Path) -> bool {
    let key = home
        .join(crate::paths::SECRETS_DIR)
        .join(roster_store::secrets::KEY_FILE);
    match std::fs::symlink_metadata(&key) {
        Ok(_) => true,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => {
            eprintln!(
                "warning: cannot tell whether {} exists ({error}): if the secrets are encrypted, systemd cannot read them",
                key.display()
            );
            false
        }
    }
}

/// Why an agent's unit would run it as root, if it would: a unit without
/// `User=` runs as root, whatever user roster itself runs as.
fn runs_as_root(identity: &Identity) -> Option<String> {
    let user = identity.user.as_deref();
    match user {
        None => Some("the config gives it no user, and a unit without User= runs as root".into()),
        Some("root" | "0") => Some("its user is root".into()),
        Some(name) if name.bytes().all(|byte| byte.is_ascii_digit()) => None,
        Some(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(user)) if user.uid.is_root() => Some(format!("its user {name} is uid 0 here")),
            _ => None,
        },
    }
}

/// The absolute path of an agent's program, found as systemd would run it:
/// a path with a `/` from the working directory, a bare name in the
/// agent's `env` PATH, else systemd's default PATH.
fn program_path(agent: &str, spec: &AgentSpec, home: &Path) -> Result<PathBuf> {
    let Some(program) = spec.command.first() else {
        bail!("agent `{agent}` has no command");
    };
    let cwd = working_directory(agent, spec, home);
    if program.contains('/') {
        // Components drop the `.` of `./agent.sh`.
        let path: PathBuf = cwd.join(program).components().collect();
        if !is_executable(&path) {
            eprintln!(
                "warning: agent `{agent}`: {} is not an executable file here: its unit fails to start until it is",
                path.display()
            );
        }
        return Ok(path);
    }
    let environment = spec.environment();
    let search_path = environment
        .iter()
        .rev()
        .find(|(key, _)| key == "PATH")
        // The PATH systemd gives a service that sets none (systemd.exec(5)),
        // which is also what the daemon gives an agent of another user.
        .map_or(roster_daemon::tools::SYSTEM_PATH, |(_, value)| {
            value.as_str()
        });
    match roster_daemon::tools::resolve_program(program, &cwd, Some(search_path.as_ref())) {
        Ok(found) => Ok(normal(&found)),
        Err(_) => bail!(
            "agent `{agent}`: {program} is not found in PATH ({search_path}), and its unit must name the program by its absolute path\n  hint: install {program}, set PATH in the agent's env, or write its absolute path as the command's first word"
        ),
    }
}

/// `path` without `.` components (a PATH entry of `.` or ``).
fn normal(path: &Path) -> PathBuf {
    path.components()
        .filter(|component| *component != Component::CurDir)
        .collect()
}

fn is_executable(path: &Path) -> bool {
    path.is_file() && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// Writes a file (0644) by a temp file and a rename.
fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    let temp = path.with_extension("service.tmp");
    std::fs::write(&temp, contents).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path)
        .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_agents_are_found() {
        let identity = |user: Option<&str>| Identity {
            user: user.map(str::to_owned),
            ..Identity::default()
        };
        assert!(runs_as_root(&identity(None)).is_some());
        assert!(runs_as_root(&identity(Some("root"))).is_some());
        assert!(runs_as_root(&identity(Some("0"))).is_some());
        assert!(runs_as_root(&identity(Some("1000"))).is_none());
        assert!(runs_as_root(&identity(Some("nobody"))).is_none());
    }

    #[test]
    fn programs_are_absolute() {
        let config = roster_core::config::parse(
            "t.toml",
            "[agents.a]\ncommand = \"sh -c true\"\n[agents.b]\ncommand = \"./run.sh\"\n[agents.c]\ncommand = \"no-such-program-t\"\n[agents.d]\ncommand = \"sh\"\nenv = { PATH = \"/nowhere\" }\n",
            Path::new("/srv/app"),
        )
        .expect("valid");
        let spec = |name: &str| {
            config
                .agents
                .iter()
                .find(|(agent, _)| agent.as_str() == name)
                .map(|(_, spec)| spec)
                .expect("agent")
        };
        let home = Path::new("/var/lib/roster");
        let sh = program_path("a", spec("a"), home).expect("sh");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(
            program_path("b", spec("b"), home).expect("path"),
            Path::new("/srv/app/run.sh")
        );
        let error = program_path("c", spec("c"), home).expect_err("missing");
        assert!(
            error
                .to_string()
                .contains("no-such-program-t is not found in PATH"),
            "{error}"
        );
        // The agent's own PATH, not roster's.
        let error = program_path("d", spec("d"), home).expect_err("not in /nowhere");
        assert!(error.to_string().contains("(/nowhere)"), "{error}");
    }
}
