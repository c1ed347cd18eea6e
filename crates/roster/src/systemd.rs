//! Text for systemd and logrotate: the installed daemon's unit, one unit per
//! agent for `roster export systemd`, and a logrotate snippet. Pure
//! functions of their inputs; nothing here touches the file system.
//!
//! Quoting follows systemd.syntax(7) and systemd.service(5): a word is
//! written bare when it is plain, else in double quotes with C escapes
//! (`\\`, `\"`, `\n`, `\t`, `\xNN`); `%` is a specifier everywhere, so it is
//! written `%%`; in `ExecStart=`, `$` starts a variable, so it is `$$`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use roster_core::config::{AgentSpec, LogConfig, RestartMode, StderrMode};

use crate::paths;

/// Characters a word may be written with, bare.
fn plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"/_.,:+=@-".contains(&byte)
}

/// One word (an argv element, or `KEY=VALUE` of `Environment=`), quoted
/// if it needs it. `exec`: the word is in an `Exec*=` line, where `$` is
/// a variable.
pub fn quote_word(word: &str, exec: bool) -> String {
    quote(word, exec, false)
}

fn quote(word: &str, exec: bool, force: bool) -> String {
    let bare = !force && !word.is_empty() && word.bytes().all(plain);
    let mut out = String::with_capacity(word.len() + 2);
    if !bare {
        out.push('"');
    }
    for character in word.chars() {
        match character {
            '%' => out.push_str("%%"),
            '$' if exec => out.push_str("$$"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            control if (control as u32) < 0x20 || control as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", control as u32);
            }
            other => out.push(other),
        }
    }
    if !bare {
        out.push('"');
    }
    out
}

/// An argv as an `ExecStart=` value.
pub fn quote_exec(argv: &[String]) -> String {
    argv.iter()
        .enumerate()
        // A first character systemd reads as a prefix (`-@:+!`) is quoted.
        .map(|(index, word)| {
            let prefix = index == 0 && word.starts_with(['-', '@', ':', '+', '!']);
            quote(word, true, prefix)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value systemd takes whole (a path, a description): `%` doubled. A
/// control character (a newline would end the setting) is refused.
pub fn whole_value(value: &str, what: &str) -> Result<String, String> {
    if value.chars().any(char::is_control) {
        return Err(format!(
            "{what} {value:?} has a control character (a newline?), which a unit file cannot hold"
        ));
    }
    Ok(value.replace('%', "%%"))
}

fn path_value(path: &Path, what: &str) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{what} {} is not UTF-8", path.display()))?;
    whole_value(text, what)
}

/// A time span systemd reads: whole seconds as `Ns`, else milliseconds.
pub fn time_span(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// An environment variable name systemd accepts.
fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|byte| byte.is_ascii_alphabetic() || byte == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// What the installed daemon's unit says.
#[derive(Clone, Debug)]
pub struct DaemonUnit {
    /// The roster binary, absolute.
    pub binary: PathBuf,
    /// The user the daemon runs as; `None`: root (it switches agents to
    /// their users).
    pub daemon_user: Option<String>,
    /// `ROSTER_ADMIN_GROUP`: the group whose members may use the daemon.
    pub admin_group: Option<String>,
}

/// The installed daemon's unit file.
pub fn daemon_unit(unit: &DaemonUnit) -> Result<String, String> {
    let binary = unit
        .binary
        .to_str()
        .ok_or_else(|| format!("the roster binary {} is not UTF-8", unit.binary.display()))?;
    let exec = quote_exec(&[
        binary.to_owned(),
        "daemon".to_owned(),
        "-f".to_owned(),
        paths::CONFIG_FILE.to_owned(),
        "--home".to_owned(),
        paths::STATE_HOME.to_owned(),
    ]);
    let mut text = String::new();
    text.push_str(
        "# The roster daemon. Written by `roster install`, which overwrites it:\n\
         # change it with `systemctl edit roster` instead.\n\
         [Unit]\n\
         Description=roster: runs AI agents and keeps them working\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=notify\n\
         NotifyAccess=main\n",
    );
    let _ = writeln!(text, "ExecStart={exec}");
    text.push_str(
        "# `systemctl reload roster`: SIGHUP, on which the daemon applies its config file again\n\
         # (renewed [web] TLS files included).\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         # Agents must not run as root unless the config says user = \"root\" or allow_root = true.\n\
         Environment=ROSTER_INSTALLED=1\n",
    );
    if let Some(group) = &unit.admin_group {
        let _ = writeln!(
            text,
            "Environment={}",
            quote_word(&format!("ROSTER_ADMIN_GROUP={group}"), false)
        );
    }
    match &unit.daemon_user {
        Some(user) => {
            let _ = writeln!(text, "User={}", whole_value(user, "the daemon user")?);
        }
        None => text.push_str(
            "# No User=: the daemon runs as root so that it can start each agent as its own user.\n",
        ),
    }
    text.push_str(
        "Restart=always\n\
         RestartSec=1\n\
         # On SIGTERM the daemon stops its agents itself (each with its stop_signal\n\
         # and stop_timeout); systemd kills what is left after TimeoutStopSec.\n\
         KillMode=mixed\n\
         TimeoutStopSec=90\n\
         # The daemon's loop sends WATCHDOG=1 every WatchdogSec/2: a hung loop\n\
         # is restarted.\n\
         WatchdogSec=30\n\
         LimitNOFILE=65536\n\
         # The daemon puts each agent in a cgroup of its own, under this unit's.\n\
         Delegate=yes\n\
         ProtectControlGroups=no\n\
         # Hardening. Agents are started by the daemon and inherit all of it: outside\n\
         # ReadWritePaths= the file system is read-only for them too (give an agent's\n\
         # working directory with `systemctl edit roster`: ReadWritePaths=/srv/agent).\n\
         ProtectSystem=strict\n",
    );
    let _ = writeln!(
        text,
        "ReadWritePaths={} {}",
        paths::STATE_HOME,
        paths::CONFIG_DIR
    );
    text.push_str(
        "PrivateTmp=yes\n\
         ProtectHome=read-only\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         RestrictRealtime=yes\n\
         # No NoNewPrivileges=: switching an agent to its user needs none (root only\n\
         # drops privileges), but every agent would inherit the flag, and agents that\n\
         # run setuid helpers (sudo, ping, newuidmap for rootless containers) would\n\
         # break. Units from `roster export systemd` set it per agent.\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
    );
    Ok(text)
}

/// How `roster export systemd` writes units.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The home in use: the units read its `secrets/NAME.env` and append
    /// to its `logs/NAME.log`.
    pub home: PathBuf,
    /// Output to the journal instead of `<home>/logs/NAME.log`.
    pub journal: bool,
    /// The home's secrets are encrypted at rest (`<home>/secrets/key`
    /// exists): systemd cannot read them, so no unit refers to them.
    pub secrets_encrypted: bool,
}

/// The directory an agent runs in: its `cwd`, or its live release.
pub fn working_directory(agent: &str, spec: &AgentSpec, home: &Path) -> PathBuf {
    if spec.release_cwd {
        home.join("agents")
            .join(agent)
            .join("current")
            .join(&spec.release_subdir)
    } else {
        spec.cwd.clone()
    }
}

/// The unit file name for an agent.
pub fn agent_unit_name(agent: &str) -> String {
    format!("roster-{agent}.service")
}

/// A plain systemd unit that runs one agent as roster would, as far as
/// systemd can. `program` is the command's program, absolute (the caller
/// resolves it: systemd would search its own PATH, not the agent's). Never
/// holds a secret: `env_file` and the agent's secrets file are referenced,
/// not read.
pub fn agent_unit(
    agent: &str,
    spec: &AgentSpec,
    options: &ExportOptions,
    program: &Path,
) -> Result<String, String> {
    let cwd = working_directory(agent, spec, &options.home);
    let mut argv = spec.command.clone();
    let Some(first) = argv.first_mut() else {
        return Err(format!("agent `{agent}` has no command"));
    };
    if !program.is_absolute() {
        return Err(format!(
            "agent `{agent}`: the program {} is not an absolute path",
            program.display()
        ));
    }
    *first = program
        .to_str()
        .ok_or_else(|| format!("agent `{agent}`: {} is not UTF-8", program.display()))?
        .to_owned();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Agent `{agent}`, exported by `roster export systemd`.\n[Unit]\nDescription=roster agent {}\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=simple",
        whole_value(agent, "the agent name")?
    );
    if let Some(user) = &spec.identity.user {
        if spec.identity.create_user {
            let _ = writeln!(
                text,
                "# create_user: create it first: useradd -r -M -s /usr/sbin/nologin {user}"
            );
        }
        let _ = writeln!(text, "User={}", whole_value(user, "the user")?);
    }
    if let Some(group) = &spec.identity.group {
        let _ = writeln!(text, "Group={}", whole_value(group, "the group")?);
    }
    let _ = writeln!(
        text,
        "WorkingDirectory={}",
        path_value(&cwd, "the working directory")?
    );
    let _ = writeln!(text, "ExecStart={}", quote_exec(&argv));
    for (key, value) in spec.environment() {
        if !valid_env_name(&key) {
            return Err(format!(
                "agent `{agent}`: {key:?} is not an environment variable name systemd accepts"
            ));
        }
        let _ = writeln!(
            text,
            "Environment={}",
            quote_word(&format!("{key}={value}"), false)
        );
    }
    if let Some(env_file) = &spec.env_file {
        let _ = writeln!(
            text,
            "EnvironmentFile={}",
            path_value(env_file, "the env_file")?
        );
    }
    let secrets = paths::secrets_file(&options.home, agent);
    let secrets = path_value(&secrets, "the secrets file")?;
    if options.secrets_encrypted {
        let _ = writeln!(
            text,
            "# Secrets: {secrets} is encrypted at rest (the home has secrets/key),\n# which systemd cannot read: not referenced. Give the agent its secrets in an\n# env_file (0600) instead."
        );
    } else {
        let _ = writeln!(
            text,
            "# Secrets (`roster secret set {agent} KEY`); a missing file is fine.\nEnvironmentFile=-{secrets}"
        );
    }
    let restart = match spec.restart.mode {
        RestartMode::Always => "always",
        RestartMode::OnFailure => "on-failure",
        RestartMode::Never => "no",
    };
    let _ = writeln!(text, "Restart={restart}");
    let _ = writeln!(
        text,
        "RestartSec={}",
        time_span(spec.restart.delay.max(Duration::from_millis(100)))
    );
    let _ = writeln!(text, "KillSignal={}", spec.stop.signal.name());
    let _ = writeln!(text, "TimeoutStopSec={}", time_span(spec.stop.timeout));
    text.push_str("KillMode=control-group\n");
    if let Some(bytes) = spec.limits.memory_max {
        let _ = writeln!(text, "MemoryMax={bytes}");
    }
    if let Some(percent) = spec.limits.cpu_quota {
        let _ = writeln!(text, "CPUQuota={percent}%");
    }
    if let Some(tasks) = spec.limits.tasks_max {
        let _ = writeln!(text, "TasksMax={tasks}");
    }
    if let Some(files) = spec.limits.nofile {
        let _ = writeln!(text, "LimitNOFILE={files}");
    }
    text.push_str(
        "NoNewPrivileges=yes\n\
         ProtectSystem=full\n\
         PrivateTmp=yes\n",
    );
    let home_dirs = ["/home", "/root", "/run/user"];
    if home_dirs.iter().any(|dir| cwd.starts_with(dir)) {
        text.push_str("# No ProtectHome=: the agent works under a home directory.\n");
    } else {
        text.push_str("ProtectHome=read-only\n");
    }
    text.push_str(
        "ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectControlGroups=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         RestrictRealtime=yes\n",
    );
    if options.journal {
        text.push_str("StandardOutput=journal\nStandardError=inherit\n");
    } else {
        let log = paths::log_file(&options.home, agent);
        let _ = writeln!(
            text,
            "# The file `roster logs {agent}` reads; {} must exist (roster up and\n# roster install make it). Rotate it with `roster export logrotate`.\nStandardOutput=append:{}",
            path_value(log.parent().unwrap_or(&options.home), "the logs directory")?,
            path_value(&log, "the log file")?,
        );
        if spec.stderr.is_separate() {
            let err_log = paths::err_log_file(&options.home, agent);
            let _ = writeln!(
                text,
                "# stderr = \"separate\": the file `roster logs {agent} --stderr` reads.\nStandardError=append:{}",
                path_value(&err_log, "the stderr log file")?,
            );
        } else {
            text.push_str("StandardError=inherit\n");
        }
    }
    let mut dropped = Vec::new();
    if spec.health.is_some() {
        dropped.push("its health check");
    }
    if spec.watch.as_ref().is_some_and(|rules| !rules.is_empty()) {
        dropped.push("its watch rules");
    }
    if spec.deploy.is_some() {
        dropped.push("deploys (the unit runs the live release)");
    }
    if !spec.listen.is_empty() {
        dropped.push("its listen sockets (write a .socket unit)");
    }
    if spec.restart.crash_loop > 0 {
        dropped.push("crash-loop detection and backoff");
    }
    if !dropped.is_empty() {
        let _ = writeln!(text, "# Not exported, roster only: {}.", dropped.join(", "));
    }
    text.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    Ok(text)
}

/// A path as logrotate reads it: in double quotes. Characters logrotate
/// would read as a glob, a quote or a block are refused.
fn logrotate_path(path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    if text
        .chars()
        .any(|character| character.is_control() || "\"\\*?[]{}".contains(character))
    {
        return Err(format!(
            "{text:?} has a character logrotate would read as a glob, a quote or a block: logrotate cannot name it safely"
        ));
    }
    Ok(format!("\"{text}\""))
}

/// A logrotate snippet for the logs units from `roster export systemd`
/// write: exactly `<home>/logs/NAME.log` of each agent (and its
/// `NAME.err.log` with `stderr = "separate"`), rotated under the names
/// roster gives its own (`NAME.log.1`, then `NAME.log.2.gz`), so that
/// `roster logs` reads them. `su`: the owner of `<home>/logs` when not
/// root (logrotate then rotates as that user, not through its links).
pub fn logrotate(
    log: &LogConfig,
    home: &Path,
    agents: &[(&str, StderrMode)],
    su: Option<(&str, &str)>,
) -> Result<String, String> {
    let mut text = format!(
        "# For agents run by units from `roster export systemd`, which append their\n\
         # output to {logs}/NAME.log (the file `roster logs NAME` reads) and never\n\
         # reopen it: hence copytruncate (a line written between the copy and the\n\
         # truncation is lost). Rotated files are named as roster names its own.\n\
         # Not for agents a roster daemon runs: it rotates their logs itself by\n\
         # [log] max_size, keep and compress.\n",
        logs = home.join("logs").display(),
    );
    if agents.is_empty() {
        text.push_str("# (The config has no agents: nothing to rotate.)\n");
        return Ok(text);
    }
    let files = agents
        .iter()
        .flat_map(|(agent, stderr)| {
            let err_log = stderr
                .is_separate()
                .then(|| paths::err_log_file(home, agent));
            std::iter::once(paths::log_file(home, agent)).chain(err_log)
        })
        .map(|path| logrotate_path(&path))
        .collect::<Result<Vec<_>, _>>()?;
    let _ = writeln!(text, "{} {{", files.join(" "));
    if let Some((user, group)) = su {
        let _ = writeln!(text, "    su {user} {group}");
    }
    let _ = write!(
        text,
        "\x20   daily\n\
         \x20   maxsize {size}\n\
         \x20   rotate {keep}\n\
         {compress}\
         \x20   nodateext\n\
         \x20   missingok\n\
         \x20   notifempty\n\
         \x20   copytruncate\n\
         }}\n",
        size = log.max_size,
        keep = log.keep,
        compress = if log.compress {
            "    compress\n    delaycompress\n"
        } else {
            "    nocompress\n"
        },
    );
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> AgentSpec {
        let config =
            roster_core::config::parse("t.toml", text, Path::new("/srv/app")).expect("valid");
        config.agents.into_values().next().expect("one agent")
    }

    #[test]
    fn plain_words_are_bare_others_quoted() {
        assert_eq!(quote_word("/usr/bin/python3", true), "/usr/bin/python3");
        assert_eq!(quote_word("--port=8080", true), "--port=8080");
        assert_eq!(quote_exec(&["-x".into(), "-y".into()]), "\"-x\" -y");
        assert_eq!(quote_word("a b", true), "\"a b\"");
        assert_eq!(quote_word("", true), "\"\"");
        assert_eq!(quote_word(";", true), "\";\"");
        assert_eq!(quote_word("it's \"x\"", true), "\"it's \\\"x\\\"\"");
        assert_eq!(quote_word("a\\b", true), "\"a\\\\b\"");
    }

    #[test]
    fn specifiers_and_variables_are_escaped() {
        assert_eq!(quote_word("100%", true), "\"100%%\"");
        assert_eq!(quote_word("$HOME", true), "\"$$HOME\"");
        assert_eq!(quote_word("${X}", true), "\"$${X}\"");
        // Environment= does not expand variables.
        assert_eq!(quote_word("A=$x%y", false), "\"A=$x%%y\"");
    }

    #[test]
    fn newlines_and_control_characters_are_escaped() {
        assert_eq!(quote_word("a\nb", false), "\"a\\nb\"");
        assert_eq!(quote_word("a\tb\r", false), "\"a\\tb\\r\"");
        assert_eq!(quote_word("\u{1}\u{7f}", false), "\"\\x01\\x7f\"");
        let quoted = quote_word("K=line1\nExecStartPre=/bin/evil", false);
        assert!(!quoted.contains('\n'), "{quoted}");
        assert!(whole_value("/srv/a\nb", "path").is_err());
        assert_eq!(
            whole_value("/srv/100%", "path").as_deref(),
            Ok("/srv/100%%")
        );
    }

    #[test]
    fn time_spans() {
        assert_eq!(time_span(Duration::from_secs(10)), "10s");
        assert_eq!(time_span(Duration::from_millis(1500)), "1500ms");
        assert_eq!(time_span(Duration::ZERO), "0s");
    }

    #[test]
    fn the_daemon_unit() {
        let unit = daemon_unit(&DaemonUnit {
            binary: PathBuf::from("/usr/local/bin/roster"),
            daemon_user: None,
            admin_group: Some("ops".into()),
        })
        .expect("unit");
        for line in [
            "Type=notify",
            "ExecStart=/usr/local/bin/roster daemon -f /etc/roster/roster.toml --home /var/lib/roster",
            "Environment=ROSTER_INSTALLED=1",
            "Environment=ROSTER_ADMIN_GROUP=ops",
            "KillMode=mixed",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/roster /etc/roster",
            "WantedBy=multi-user.target",
        ] {
            assert!(unit.lines().any(|got| got == line), "{line} missing:\n{unit}");
        }
        assert!(!unit.lines().any(|line| line.starts_with("User=")));
        assert!(!unit.lines().any(|line| line.starts_with("NoNewPrivileges")));
        let spaced = daemon_unit(&DaemonUnit {
            binary: PathBuf::from("/opt/my tools/roster"),
            daemon_user: Some("agent-runner".into()),
            admin_group: None,
        })
        .expect("unit");
        assert!(spaced.contains("ExecStart=\"/opt/my tools/roster\" daemon"));
        assert!(spaced.contains("\nUser=agent-runner\n"));
    }

    #[test]
    fn an_agent_unit() {
        let agent = spec(
            "[agents.web]\ncommand = [\"./run.sh\", \"--say\", \"100% $HOME\", \"a\\nb\"]\nuser = \"svc\"\ngroup = \"svc\"\nmemory_max = \"512MiB\"\ncpu_quota = \"50%\"\ntasks_max = 64\nnofile = 4096\nrestart = \"on-failure\"\nrestart_delay = \"10ms\"\nstop_signal = \"SIGINT\"\nstop_timeout = \"1500ms\"\nenv_file = \"web.env\"\nenv = { GREETING = \"hi \\\"there\\\"\\nExecStartPre=/bin/evil\" }\n",
        );
        let unit = agent_unit(
            "web",
            &agent,
            &ExportOptions {
                home: PathBuf::from("/srv/roster home"),
                journal: false,
                secrets_encrypted: false,
            },
            Path::new("/srv/app/run.sh"),
        )
        .expect("unit");
        for line in [
            "Description=roster agent web",
            "User=svc",
            "Group=svc",
            "WorkingDirectory=/srv/app",
            "ExecStart=/srv/app/run.sh --say \"100%% $$HOME\" \"a\\nb\"",
            "Environment=\"GREETING=hi \\\"there\\\"\\nExecStartPre=/bin/evil\"",
            "Environment=PYTHONUNBUFFERED=1",
            "EnvironmentFile=/srv/app/web.env",
            "EnvironmentFile=-/srv/roster home/secrets/web.env",
            "Restart=on-failure",
            "RestartSec=100ms",
            "KillSignal=SIGINT",
            "TimeoutStopSec=1500ms",
            "KillMode=control-group",
            "MemoryMax=536870912",
            "CPUQuota=50%",
            "TasksMax=64",
            "LimitNOFILE=4096",
            "NoNewPrivileges=yes",
            "ProtectHome=read-only",
            "StandardOutput=append:/srv/roster home/logs/web.log",
            "StandardError=inherit",
        ] {
            assert!(
                unit.lines().any(|got| got == line),
                "{line} missing:\n{unit}"
            );
        }
        assert!(!unit.lines().any(|line| line.starts_with("ExecStartPre")));
    }

    /// `stderr = "separate"`: the unit appends stderr to `NAME.err.log`,
    /// where `roster logs NAME --stderr` reads it.
    #[test]
    fn an_agent_with_a_separate_stderr_log() {
        let agent = spec("[agents.web]\ncommand = \"/srv/app/run.sh\"\nstderr = \"separate\"\n");
        let unit = agent_unit(
            "web",
            &agent,
            &ExportOptions {
                home: PathBuf::from("/srv/h"),
                journal: false,
                secrets_encrypted: false,
            },
            Path::new("/srv/app/run.sh"),
        )
        .expect("unit");
        for line in [
            "StandardOutput=append:/srv/h/logs/web.log",
            "StandardError=append:/srv/h/logs/web.err.log",
        ] {
            assert!(
                unit.lines().any(|got| got == line),
                "{line} missing:\n{unit}"
            );
        }
        assert!(!unit.contains("StandardError=inherit"), "{unit}");
    }

    #[test]
    fn an_agent_under_home_and_to_the_journal() {
        let mut agent = spec("[agents.bot]\ncommand = \"python3 bot.py\"\nrestart = \"never\"\n");
        agent.cwd = PathBuf::from("/home/me/bot");
        let unit = agent_unit(
            "bot",
            &agent,
            &ExportOptions {
                home: PathBuf::from("/var/lib/roster"),
                journal: true,
                secrets_encrypted: true,
            },
            Path::new("/usr/bin/python3"),
        )
        .expect("unit");
        assert!(!unit.contains("ProtectHome=read-only"), "{unit}");
        assert!(unit.contains("\nStandardOutput=journal\n"), "{unit}");
        assert!(unit.contains("\nRestart=no\n"), "{unit}");
        assert!(
            unit.contains("\nExecStart=/usr/bin/python3 bot.py\n"),
            "{unit}"
        );
        // Encrypted secrets are not handed to systemd, which would pass the
        // ciphertext on as the values.
        assert!(!unit.contains("EnvironmentFile="), "{unit}");
        assert!(unit.contains("is encrypted at rest"), "{unit}");
        assert!(!unit.contains("User="), "{unit}");
        agent.cwd = PathBuf::from("/srv/new\nline");
        assert!(agent_unit(
            "bot",
            &agent,
            &ExportOptions {
                home: PathBuf::from("/var/lib/roster"),
                journal: true,
                secrets_encrypted: false,
            },
            Path::new("/usr/bin/python3"),
        )
        .is_err());
        agent.cwd = PathBuf::from("/srv/bot");
        assert!(
            agent_unit(
                "bot",
                &agent,
                &ExportOptions {
                    home: PathBuf::from("/var/lib/roster"),
                    journal: true,
                    secrets_encrypted: false,
                },
                Path::new("python3"),
            )
            .is_err(),
            "a program that is not absolute"
        );
    }

    const MERGED: StderrMode = StderrMode::Merge;

    #[test]
    fn a_logrotate_snippet() {
        let log = LogConfig {
            max_size: 1024,
            keep: 3,
            compress: false,
            ..LogConfig::default()
        };
        let text = logrotate(
            &log,
            Path::new("/srv/my home"),
            &[("bot", MERGED), ("web", MERGED)],
            None,
        )
        .expect("snippet");
        assert!(
            text.contains("\n\"/srv/my home/logs/bot.log\" \"/srv/my home/logs/web.log\" {\n"),
            "{text}"
        );
        assert!(!text.contains('*'), "no glob: {text}");
        assert!(text.contains("    maxsize 1024\n"), "{text}");
        assert!(text.contains("    rotate 3\n"), "{text}");
        assert!(text.contains("    nocompress\n"), "{text}");
        assert!(text.contains("    nodateext\n"), "{text}");
        assert!(text.contains("    copytruncate\n"), "{text}");
        assert!(!text.contains("    su "), "{text}");
        let compressed = logrotate(
            &LogConfig {
                compress: true,
                ..log.clone()
            },
            Path::new("/h"),
            &[("web", MERGED)],
            Some(("svc", "svc")),
        )
        .expect("snippet");
        // NAME.log.1 plain, NAME.log.2.gz on: the names roster uses.
        assert!(
            compressed.contains("    compress\n    delaycompress\n"),
            "{compressed}"
        );
        assert!(compressed.contains("\n    su svc svc\n"), "{compressed}");
        let none = logrotate(&log, Path::new("/h"), &[], None).expect("snippet");
        assert!(!none.contains('{'), "{none}");
        assert!(logrotate(&log, Path::new("/h/*"), &[("web", MERGED)], None).is_err());
        assert!(logrotate(&log, Path::new("/h\"x"), &[("web", MERGED)], None).is_err());
        // A separate stderr log is rotated with its agent's log.
        let separate = logrotate(
            &log,
            Path::new("/h"),
            &[("web", StderrMode::Separate), ("db", MERGED)],
            None,
        )
        .expect("snippet");
        assert!(
            separate
                .contains("\n\"/h/logs/web.log\" \"/h/logs/web.err.log\" \"/h/logs/db.log\" {\n"),
            "{separate}"
        );
    }
}
