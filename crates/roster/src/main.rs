//! The `roster` command: parses the command line, runs one command, renders
//! its errors once, and maps them to exit codes (0 ok, 1 failed, 2 usage;
//! `deploy` adds 3 rolled back and 4 outcome unknown).

#![forbid(unsafe_code)]

mod client;
mod commands;
mod paths;
mod render;
mod systemd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Runs AI agents on Linux servers and keeps them working.
#[derive(Parser, Debug)]
#[command(name = "roster", version, about, propagate_version = true)]
pub struct Cli {
    /// Where this roster keeps its socket, journal and logs.
    /// Default: /var/lib/roster for root, else $XDG_STATE_HOME/roster or ~/.local/state/roster.
    #[arg(long, global = true, env = "ROSTER_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a config file: exit 0, or 1 with each problem as FILE:LINE:COL.
    Check {
        /// The config file.
        #[arg(short = 'f', long = "file", default_value = "roster.toml")]
        file: PathBuf,
    },
    /// Start the daemon if needed, apply the config, wait until every agent runs or has failed.
    Up {
        /// The config file.
        #[arg(short = 'f', long = "file", default_value = "roster.toml")]
        file: PathBuf,
        /// Give up waiting for agents to settle after this long.
        #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
        timeout: std::time::Duration,
        /// Apply even though the file is not the one this home last applied
        /// and would remove agents started from that one.
        #[arg(long)]
        replace: bool,
    },
    /// Run the daemon in the foreground (for systemd and containers).
    Daemon {
        /// A config file to apply at start.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Leave the caller's session first (used by `roster up`).
        #[arg(long, hide = true)]
        detach: bool,
    },
    /// Converge a running daemon to the file: new agents start, removed ones
    /// stop, changed ones restart, the rest are untouched.
    Apply {
        /// The config file.
        #[arg(short = 'f', long = "file", default_value = "roster.toml")]
        file: PathBuf,
        /// Apply even though the file is not the one this home last applied
        /// and would remove agents started from that one.
        #[arg(long)]
        replace: bool,
        /// Return once applied, without waiting for added and changed
        /// agents to run.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting for agents to settle after this long.
        #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
        timeout: std::time::Duration,
    },
    /// Add an agent to the config file (created if missing), keeping its
    /// comments; check the whole file (an invalid one is left as it was);
    /// then start it as `up` does.
    Add {
        /// The agent's name.
        name: String,
        /// Its working directory, relative to the current one [default:
        /// the current directory].
        #[arg(long, value_name = "DIR")]
        cwd: Option<PathBuf>,
        /// An environment variable; repeat for more.
        #[arg(long = "env", value_name = "K=V", value_parser = commands::add::parse_env)]
        env: Vec<(String, String)>,
        /// The user it runs as.
        #[arg(long, value_name = "U")]
        user: Option<String>,
        /// A health check: healthy while this URL answers 2xx.
        #[arg(long = "health-http", value_name = "URL")]
        health_http: Option<String>,
        /// The config file.
        #[arg(short = 'f', long = "file", default_value = "roster.toml")]
        file: PathBuf,
        /// Give up waiting for agents to settle after this long.
        #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
        timeout: std::time::Duration,
        /// The command and its arguments, after `--` (no shell).
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Take an agent out of the config file (its sub-tables too, other
    /// lines kept), check the whole file, then apply it: the agent stops.
    Remove {
        /// The agent's name.
        name: String,
        /// The config file.
        #[arg(short = 'f', long = "file", default_value = "roster.toml")]
        file: PathBuf,
        /// Give up waiting for the agent to stop after this long.
        #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
        timeout: std::time::Duration,
    },
    /// Run N copies of an agent (`instances = N` in its table, other lines
    /// kept), check the whole file, then apply it: new copies start, the
    /// highest-numbered ones go, drained (drain_signal, drain_timeout).
    Scale {
        /// The agent's name in the file (`worker` for worker.1 … worker.N).
        name: String,
        /// How many copies, 1 to 1000.
        count: u32,
        /// The config file.
        #[arg(short = 'f', long = "file", default_value = "roster.toml")]
        file: PathBuf,
        /// Give up waiting for copies to start or stop after this long.
        #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
        timeout: std::time::Duration,
    },
    /// Stop every agent gracefully, then the daemon.
    Down,
    /// Show agents: a table, or with --json the documented object.
    Status {
        /// Only these agents.
        names: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what exactly runs for an agent, as the daemon has it applied:
    /// command and resolved program, cwd, user, environment (with
    /// sources; secrets masked), limits, sockets, release, checks, log,
    /// restart policy and the last exits.
    Describe {
        /// The agent.
        name: String,
        /// Print JSON (field names in README, "describe").
        #[arg(long)]
        json: bool,
    },
    /// Start agents (`all` for every agent); clears `failed` at once.
    Start {
        /// Agent names, or `all`.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop agents gracefully (`all` for every agent).
    Stop {
        /// Agent names, or `all`.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop, then start agents (`all` for every agent).
    Restart {
        /// Agent names, or `all`; an agent with copies (`instances`)
        /// restarts one copy at a time, each back before the next.
        #[arg(required = true)]
        names: Vec<String>,
        /// Restart every copy of an agent with copies together.
        #[arg(long)]
        all_at_once: bool,
    },
    /// Show agents' logs, interleaved by time, each line prefixed `NAME | `.
    Logs {
        /// Only these agents (default: all).
        names: Vec<String>,
        /// Keep printing new lines, across rotations.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many of the last lines to print.
        #[arg(short = 'n', long = "lines", default_value_t = 10)]
        lines: usize,
        /// Keep roster's UTC timestamp on each line.
        #[arg(short = 't', long)]
        timestamps: bool,
        /// Show the stderr log (NAME.err.log) of agents with [log] stderr = "separate".
        #[arg(long)]
        stderr: bool,
    },
    /// Show firing alerts and recent resolved ones.
    Alerts {
        /// Print JSON: {"firing": [...], "recent": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Show the journal: starts, exits, restarts, failures, config applies.
    Events {
        /// Only these agents.
        names: Vec<String>,
        /// Only events newer than this (e.g. 10m, 2h, 1d).
        #[arg(long, value_parser = parse_duration_arg)]
        since: Option<std::time::Duration>,
        /// At most this many, the newest.
        #[arg(short = 'n', long = "lines")]
        lines: Option<u32>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Keep printing new events.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Ship a new release of an agent: stage, build, smoke-test, cut over,
    /// verify. Exit 0 deployed, 1 failed, 3 rolled back, 4 outcome unknown.
    // `--version` names the release here, not roster's version.
    #[command(disable_version_flag = true)]
    Deploy {
        /// The agent (it needs a deploy section).
        name: String,
        /// The release: a directory or a .tar.gz.
        source: PathBuf,
        /// The release's name (default: a UTC timestamp and a content hash).
        #[arg(long)]
        version: Option<String>,
        /// Print only the final progress, as JSON.
        #[arg(long)]
        json: bool,
        /// Stop waiting for the outcome after this long (the deploy goes on).
        #[arg(long, default_value = "30m", value_parser = parse_duration_arg)]
        timeout: std::time::Duration,
    },
    /// Make an earlier release live again. Exit 0 when it is, 1 if not,
    /// 4 outcome unknown.
    Rollback {
        /// The agent.
        name: String,
        /// The release (default: the one live before the current one).
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// Print only the final progress, as JSON.
        #[arg(long)]
        json: bool,
        /// Stop waiting for the outcome after this long (the rollback goes on).
        #[arg(long, default_value = "30m", value_parser = parse_duration_arg)]
        timeout: std::time::Duration,
    },
    /// Show an agent's releases, newest first.
    Releases {
        /// The agent.
        name: String,
        /// Print JSON: {"agent": ..., "releases": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Install roster as a system service (as root): the system user,
    /// /etc/roster, /var/lib/roster and the systemd unit. Idempotent.
    Install(commands::install::InstallOptions),
    /// Remove the systemd unit; keep config, state, logs and secrets
    /// unless --purge.
    Uninstall(commands::install::UninstallOptions),
    /// Write a config as plain systemd units, or a logrotate snippet.
    Export {
        #[command(subcommand)]
        what: Export,
    },
    /// Print a shell completion script: `roster completions bash > /etc/bash_completion.d/roster`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Check this host and this home against the operating principles;
    /// each finding with its fix. Exit 0 only when nothing is found.
    Doctor {
        /// The config file to check [default: ./roster.toml when it
        /// exists, else the one this home's daemon runs]
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Look for the installed unit under DIR instead of /.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Print JSON: {"findings": [{"severity", "check", "agent", "message", "fix"}]}.
        #[arg(long)]
        json: bool,
    },
    /// What is wrong on this host and why: the daemon's view, the journal,
    /// the logs and the host, classified into failure modes (most severe
    /// first), each with its evidence and the action to take. Exit 0 only
    /// when nothing is wrong (info findings aside), 1 otherwise.
    Diagnose {
        /// The config to judge [default: ./roster.toml when it exists, else
        /// the one this home's daemon runs]
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Print JSON: {"findings": [{"mode", "severity", "agent", "evidence", "action"}], "collected": [...]}.
        #[arg(long)]
        json: bool,
        /// How far back to read the journal.
        #[arg(long, default_value = "1h", value_parser = parse_duration_arg)]
        since: std::time::Duration,
        /// Also write a support bundle (tar.gz, secrets redacted) to FILE.
        #[arg(long, value_name = "FILE.tar.gz")]
        bundle: Option<PathBuf>,
    },
    /// Fix what can be fixed safely: collect and classify as `diagnose`
    /// does, then for each finding the smallest safe step (start a stopped
    /// daemon or an agent that should run, free disk by deleting the oldest
    /// rotated logs); never signals a process. Diagnoses again and appends
    /// the report to HOME/recovery.log. Exit 0 only when nothing is left
    /// wrong, 1 otherwise, 2 when refused.
    Recover {
        /// The config [default: ./roster.toml when it exists, else the one
        /// the daemon runs or last applied]
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Print the plan and change nothing (exit 0 when it is empty).
        #[arg(long)]
        dry_run: bool,
        /// Apply without asking (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Print JSON: {"found": [...], "steps": [{"mode", "agent", "step", "result", "detail"}], "left": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Back up, while agents run, the config the daemon runs, the journal,
    /// the secrets (sealed with a key) and each agent's live and previous
    /// release, to a .tar.gz with a manifest of checksums.
    /// `roster backup verify FILE` drills a restore.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Backup {
        #[command(subcommand)]
        command: Option<BackupCommand>,
        /// The archive to write (.tar.gz).
        #[arg(required = true)]
        file: Option<PathBuf>,
        /// Leave the secrets out.
        #[arg(long)]
        no_secrets: bool,
        /// Seal the secrets with this 32-byte key [default: the home's secrets/key].
        #[arg(long, value_name = "K")]
        key_file: Option<PathBuf>,
    },
    /// Restore a backup into an empty home (--home): every checksum is
    /// checked before anything is written; then `roster up -f PATH`.
    Restore {
        /// The archive.
        file: PathBuf,
        /// Where to write the config [default: where it was, if free].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The key the secrets were sealed with [default: the home's secrets/key].
        #[arg(long, value_name = "K")]
        key_file: Option<PathBuf>,
    },
    /// Start a project: answer a few questions (on a terminal, or with
    /// flags), get a recommended pattern (single-agent, multi-agent,
    /// multi-tenant) with its reasons, and a commented roster.toml plus a
    /// starter agent per kind in DIR. Never overwrites without --force.
    Init(commands::init::Options),
    /// Print the manual page (roff): `roster man > /usr/local/share/man/man1/roster.1`.
    Man,
    /// A terminal dashboard: agents with CPU and memory sparklines, the
    /// selected agent's log, firing alerts. Keys: j/k or arrows select,
    /// / filters, s sorts, r restarts, x stops (each asks y/n), l toggles
    /// the log, q quits.
    Top,
    /// Open (or attach to) a tmux session: roster top, roster logs -f and a
    /// shell, in the directory of the applied config.
    Tmux {
        /// The session's name.
        #[arg(long, default_value = commands::tmux::DEFAULT_SESSION)]
        session: String,
    },
    /// Manage an agent's secrets: environment variables kept out of the
    /// config, in <home>/secrets (values read from stdin, never printed).
    Secret {
        #[command(subcommand)]
        command: commands::secret::SecretCommand,
    },
    /// The web dashboard's tokens (the page itself is coming): `roster web
    /// token add NAME --admin | --tenant TENANT [--read-only]`, `list`, `rm`.
    Web {
        #[command(subcommand)]
        command: commands::web::WebCommand,
    },
    /// Many servers from one fleet file: each host's own roster does the
    /// supervising, the system's OpenSSH is the transport.
    Fleet {
        #[command(subcommand)]
        command: commands::fleet::FleetCommand,
    },
}

#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// The drill: restore into a scratch home, check the config loads and
    /// every live release is whole, start nothing; report the recovery
    /// point and how long the restore took. Exit 0 only when all is well.
    Verify {
        /// The archive.
        file: PathBuf,
        /// Print JSON: {"ok", "recovery_point_seconds", "restore_seconds", "problems", ...}.
        #[arg(long)]
        json: bool,
        /// The key the secrets were sealed with [default: the home's secrets/key].
        #[arg(long, value_name = "K")]
        key_file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum Export {
    /// One unit per agent, roster-NAME.service: to stdout, or into --out DIR.
    Systemd {
        /// The config file.
        #[arg(short = 'f', long = "file", default_value = "roster.toml")]
        file: PathBuf,
        /// Write each unit into DIR instead of printing them.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Send agents' output to the journal instead of <home>/logs/NAME.log.
        #[arg(long)]
        journal: bool,
    },
    /// A logrotate snippet for the logs of exported units (<home>/logs/NAME.log).
    Logrotate {
        /// The config file (its [log] table).
        #[arg(short = 'f', long = "file", default_value = "roster.toml")]
        file: PathBuf,
    },
}

fn parse_duration_arg(raw: &str) -> Result<std::time::Duration, String> {
    roster_core::units::parse_duration(raw)
}

fn main() -> ExitCode {
    // The daemon's exec shim (sockets handed to an agent need LISTEN_PID
    // set in the agent's own process): set it, become the agent.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(roster_daemon::SHIM_ARG))
    {
        let error = roster_daemon::exec_shim(std::env::args_os().skip(2));
        eprintln!("roster: cannot start the agent: {error}");
        return ExitCode::from(127);
    }
    let cli = Cli::parse();
    let home = match commands::resolve_home(cli.home.clone()) {
        Ok(home) => home,
        Err(error) => return report(error),
    };
    let result = match cli.command {
        Command::Check { file } => commands::check::run(&file),
        Command::Up {
            file,
            timeout,
            replace,
        } => commands::up::run(&home, &file, timeout, replace),
        Command::Daemon { file, detach } => commands::daemon::run(&home, file.as_deref(), detach),
        Command::Apply {
            file,
            replace,
            no_wait,
            timeout,
        } => commands::up::apply(&home, &file, replace, no_wait, timeout),
        Command::Add {
            name,
            cwd,
            env,
            user,
            health_http,
            file,
            timeout,
            command,
        } => commands::add::run(
            &home,
            &commands::add::Options {
                name,
                cwd,
                env,
                user,
                health_http,
                command,
                file,
                timeout,
            },
        ),
        Command::Remove {
            name,
            file,
            timeout,
        } => commands::remove::run(&home, &name, &file, timeout),
        Command::Scale {
            name,
            count,
            file,
            timeout,
        } => commands::scale::run(&home, &name, count, &file, timeout),
        Command::Down => commands::daemon::down(&home),
        Command::Status { names, json } => commands::status::run(&home, &names, json),
        Command::Describe { name, json } => commands::describe::run(&home, &name, json),
        Command::Start { names } => {
            commands::agents::run(&home, commands::agents::Verb::Start, &names)
        }
        Command::Stop { names } => {
            commands::agents::run(&home, commands::agents::Verb::Stop, &names)
        }
        Command::Restart { names, all_at_once } => {
            commands::agents::restart(&home, &names, all_at_once)
        }
        Command::Logs {
            names,
            follow,
            lines,
            timestamps,
            stderr,
        } => {
            let stream = if stderr {
                commands::logs::Stream::Stderr
            } else {
                commands::logs::Stream::Output
            };
            commands::logs::run(&home, &names, lines, follow, timestamps, stream)
        }
        Command::Alerts { json } => commands::alerts::run(&home, json),
        Command::Events {
            names,
            since,
            lines,
            json,
            follow,
        } => commands::events::run(&home, &names, since, lines, json, follow),
        Command::Deploy {
            name,
            source,
            version,
            json,
            timeout,
        } => commands::deploy::deploy(&home, &name, &source, version, json, timeout),
        Command::Rollback {
            name,
            to,
            json,
            timeout,
        } => commands::deploy::rollback(&home, &name, to, json, timeout),
        Command::Releases { name, json } => commands::deploy::releases(&home, &name, json),
        Command::Install(options) => commands::install::install(&options),
        Command::Uninstall(options) => commands::install::uninstall(&options),
        Command::Export {
            what: Export::Systemd { file, out, journal },
        } => commands::export::systemd(&home, &file, out.as_deref(), journal),
        Command::Export {
            what: Export::Logrotate { file },
        } => commands::export::logrotate_snippet(&home, &file),
        Command::Secret { command } => commands::secret::run(&home, command),
        Command::Web { command } => commands::web::run(&home, command),
        Command::Fleet { command } => commands::fleet::run(command),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "roster", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup {
            command:
                Some(BackupCommand::Verify {
                    file,
                    json,
                    key_file,
                }),
            ..
        } => commands::backup::verify::run(
            &home,
            &commands::backup::verify::Options {
                file,
                key_file,
                json,
            },
        ),
        Command::Backup {
            command: None,
            file,
            no_secrets,
            key_file,
        } => match file {
            Some(file) => commands::backup::create::run(
                &home,
                &commands::backup::create::Options {
                    file,
                    no_secrets,
                    key_file,
                },
            ),
            None => Err(anyhow::anyhow!("roster backup needs a FILE to write")),
        },
        Command::Restore {
            file,
            config,
            key_file,
        } => commands::backup::restore::run(
            &home,
            &commands::backup::restore::Options {
                file,
                config,
                key_file,
            },
        ),
        Command::Doctor { file, root, json } => {
            commands::doctor::run(&home, file.as_deref(), root, json)
        }
        Command::Diagnose {
            file,
            json,
            since,
            bundle,
        } => commands::diagnose::run(
            &home,
            commands::diagnose::Options {
                file: file.as_deref(),
                json,
                since,
                bundle,
            },
        ),
        Command::Recover {
            file,
            dry_run,
            yes,
            json,
        } => commands::recover::run(
            &home,
            commands::recover::Options {
                file: file.as_deref(),
                dry_run,
                yes,
                json,
            },
        ),
        Command::Top => commands::top::run(&home),
        Command::Tmux { session } => commands::tmux::run(&home, &session),
        Command::Init(options) => commands::init::run(&options),
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            match clap_mangen::Man::new(command).render(&mut page) {
                Ok(()) => {
                    use std::io::Write;
                    let _ = std::io::stdout().write_all(&page);
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => Err(anyhow::anyhow!("rendering the manual page: {error}")),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => report(error),
    }
}

fn report(error: anyhow::Error) -> ExitCode {
    use std::io::Write;
    // `eprintln!` panics when stderr cannot be written (a full disk under
    // the daemon's log): the exit code must stay 1, not become a panic.
    let mut stderr = std::io::stderr().lock();
    if let Some(config_error) = error.downcast_ref::<roster_core::ConfigError>() {
        let _ = writeln!(stderr, "{config_error}");
        let count = config_error.diagnostics.len();
        let _ = writeln!(
            stderr,
            "{count} problem{} found; nothing was applied",
            if count == 1 { "" } else { "s" }
        );
        return ExitCode::from(1);
    }
    let _ = writeln!(stderr, "error: {error}");
    for cause in error.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn deploy_takes_a_release_version() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from(["roster", "deploy", "web", "dir", "--version", "v2"])
            .expect("parses");
        match cli.command {
            super::Command::Deploy {
                version, timeout, ..
            } => {
                assert_eq!(version.as_deref(), Some("v2"));
                assert_eq!(timeout, std::time::Duration::from_secs(1800));
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
