//! `roster fleet ...`: many hosts from one fleet file (issue #16). The
//! decisions (the file, placement, rendering, the plan) are
//! `roster_core::fleet`'s; this module reads the file, talks to the hosts
//! over the system's OpenSSH and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

/// Where the hosts' roster binary lives.
pub(crate) const REMOTE_ROSTER: &str = "/usr/local/bin/roster";
/// The hosts' roster home.
pub(crate) const REMOTE_HOME: &str = "/var/lib/roster";

mod export;
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
        FleetCommand::Status { file, json, hosts } => status::run(&file, json, &hosts),
        FleetCommand::Export {
            what: FleetExport::Prometheus { file, out },
        } => export::prometheus(&file, &out),
        FleetCommand::Export {
            what: FleetExport::Grafana { file, out },
        } => export::grafana(&file, &out),
    }
}
