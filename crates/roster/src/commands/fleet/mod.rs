//! `roster fleet ...`: many hosts from one fleet file (issue #16). The
//! decisions (the file, placement, rendering, the plan) are
//! `roster_core::fleet`'s; this module reads the file, talks to the hosts
//! over the system's OpenSSH and prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;

/// Where the hosts' roster binary lives.
pub(crate) const REMOTE_ROSTER: &str = "/usr/local/bin/roster";
/// The hosts' roster home.
pub(crate) const REMOTE_HOME: &str = "/var/lib/roster";

mod export;
mod logs;
mod secret;
mod ssh;
mod status;

/// `roster fleet ...`.
#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Every instance on every host in one table, fetched in parallel with
    /// a timeout per host ([ssh] connect_timeout, plus 5 s for the remote
    /// status). Exit 0 only when every host answered and every placed
    /// instance runs; exit 1 otherwise.
    Status {
        /// The fleet file.
        #[arg(short = 'f', long = "file", default_value = "fleet.toml")]
        file: PathBuf,
        /// Print JSON: {"hosts": [{"name", "address", "reachable", "error", "seconds"}],
        /// "instances": [{"name", "host", "tenant", "agent", "state", "health", "release", "pid", ...}]}.
        #[arg(long)]
        json: bool,
        /// Only these hosts (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// Redraw the table every --interval until Ctrl-C (the SSH
        /// connections stay open between rounds); without a terminal, print
        /// one table per interval.
        #[arg(long)]
        watch: bool,
        /// How often --watch asks the hosts (e.g. 2s, 500ms).
        #[arg(long, default_value = "2s", value_parser = parse_interval, requires = "watch")]
        interval: Duration,
    },
    /// Show an instance's logs from the host that runs it (that host's
    /// `roster logs INSTANCE` over ssh). As `roster logs`, but `-f` names
    /// the fleet file here, so following is `-F`/`--follow`.
    Logs {
        /// The instance, TENANT.AGENT.
        instance: String,
        /// The fleet file.
        #[arg(short = 'f', long = "file", default_value = "fleet.toml")]
        file: PathBuf,
        /// Keep printing new lines until Ctrl-C; exit 1 if the connection
        /// drops.
        #[arg(short = 'F', long)]
        follow: bool,
        /// How many of the last lines to print.
        #[arg(short = 'n', long = "lines", default_value_t = 10)]
        lines: usize,
        /// Keep roster's UTC timestamp on each line.
        #[arg(short = 't', long)]
        timestamps: bool,
    },
    /// A tenant's secrets on every instance of it, on the hosts that run
    /// them (values read from stdin, never printed, never on a command line).
    Secret {
        #[command(subcommand)]
        command: secret::FleetSecret,
    },
    /// Files for Prometheus or Grafana that watch the whole fleet.
    Export {
        #[command(subcommand)]
        what: FleetExport,
    },
}

/// `roster fleet export ...`.
#[derive(Subcommand, Debug)]
pub enum FleetExport {
    /// DIR/targets.json (file_sd: every host's metrics address with its
    /// labels) and DIR/rules.yml (alerting rules for the fleet).
    Prometheus {
        /// The fleet file.
        #[arg(short = 'f', long = "file", default_value = "fleet.toml")]
        file: PathBuf,
        /// Where to write the files (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// A dashboard JSON and a file-provisioning YAML for Grafana.
    Grafana {
        /// The fleet file.
        #[arg(short = 'f', long = "file", default_value = "fleet.toml")]
        file: PathBuf,
        /// Where to write the files (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Runs `roster fleet ...`.
pub fn run(command: FleetCommand) -> Result<ExitCode> {
    match command {
        FleetCommand::Status {
            file,
            json,
            hosts,
            watch,
            interval,
        } => {
            if watch {
                status::watch(&file, json, &hosts, interval)
            } else {
                status::run(&file, json, &hosts)
            }
        }
        FleetCommand::Logs {
            instance,
            file,
            follow,
            lines,
            timestamps,
        } => logs::run(&logs::Request {
            file: &file,
            instance: &instance,
            follow,
            lines,
            timestamps,
        }),
        FleetCommand::Secret { command } => secret::run(command),
        FleetCommand::Export {
            what: FleetExport::Prometheus { file, out },
        } => export::prometheus(&file, &out),
        FleetCommand::Export {
            what: FleetExport::Grafana { file, out },
        } => export::grafana(&file, &out),
    }
}

/// `--interval`: a duration such as `2s` or `500ms`, at least 100 ms.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let duration = roster_core::units::parse_duration(text)?;
    if duration < Duration::from_millis(100) {
        return Err("at least 100ms".to_owned());
    }
    Ok(duration)
}
