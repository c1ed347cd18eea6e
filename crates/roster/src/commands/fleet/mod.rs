//! `roster fleet ...`: many hosts from one fleet file (issue #16). The
//! decisions (the file, placement, rendering, the plan) are
//! `roster_core::fleet`'s; this module reads the file, talks to the hosts
//! over the system's OpenSSH and prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;

/// The hosts' roster home.
pub(crate) const REMOTE_HOME: &str = "/var/lib/roster";
/// The hosts' roster.toml, as `roster install` sets it up and its unit
/// reads it; `roster fleet apply` writes it and the daemon runs it.
pub(crate) const REMOTE_CONFIG: &str = "/etc/roster/roster.toml";

mod apply;
mod deploy;
mod diagnose;
mod export;
mod lock;
mod logs;
mod plan;
mod progress;
mod releases;
mod remote;
mod rollback;
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
    /// Every host's `roster diagnose --bundle`, fetched in parallel into
    /// DIR: HOST.tar.gz (the bundle: secrets redacted), HOST.json (its
    /// findings) and hosts.json; unreachable hosts listed with the reason.
    /// Exit 0 only when every host answered and none found anything wrong.
    Diagnose {
        /// The fleet file.
        #[arg(short = 'f', long = "file", default_value = "fleet.toml")]
        file: PathBuf,
        /// Where the bundles go (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Print JSON: {"out", "hosts": [{"name", "address", "reachable",
        /// "error", "bundle", "diagnose_exit", "critical", "warning",
        /// "info", "modes"}]}.
        #[arg(long)]
        json: bool,
        /// Only these hosts (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
    },
    /// A tenant's secrets on every instance of it, on the hosts that run
    /// them (values read from stdin, never printed, never on a command line).
    Secret {
        #[command(subcommand)]
        command: secret::FleetSecret,
    },
    /// Where every instance goes and what must change on the hosts to
    /// get there; changes nothing. Exit 0: nothing to change; 2: changes
    /// pending; 1: a host could not be read (its changes are not shown).
    Plan {
        /// The fleet file.
        #[arg(short = 'f', long = "file", default_value = "fleet.toml")]
        file: PathBuf,
        /// Print JSON: {"instances": [{"name", "tenant", "agent", "host", "port"}],
        /// "changes": [{"kind", "instance", "host", "from"?}],
        /// "hosts": [{"name", "address", "reachable", "error"}]}.
        #[arg(long)]
        json: bool,
        /// Only these hosts (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
    },
    /// Converges every host to the fleet file: uploads roster where its
    /// checksum differs, starts the daemon where none answers, writes
    /// /etc/roster/roster.toml where it differs and applies it. Moved
    /// instances start on their new host before they stop on the old.
    /// Exit 0 when every host converged; 1 when any failed or could not
    /// be reached (the others still converge).
    Apply {
        /// The fleet file.
        #[arg(short = 'f', long = "file", default_value = "fleet.toml")]
        file: PathBuf,
        /// Print JSON: {"changes": [...], "hosts": [{"name", "address",
        /// "reachable", "uploaded", "started", "wrote", "applied", "error", "seconds"}]}.
        #[arg(long)]
        json: bool,
        /// Only these hosts (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
    },
    /// One release on every instance of an agent template: the canary
    /// hosts first, then batches; a batch whose failed hosts exceed
    /// --max-fail stops the rollout and rolls back every instance that
    /// took it. Exit 0 deployed, 1 failed before any host changed (or a
    /// rollback failed), 3 rolled back.
    #[command(disable_version_flag = true)]
    Deploy {
        /// The agent template (every TENANT.AGENT of it is deployed).
        agent: String,
        /// The release: a directory, packed once and uploaded once per host.
        source: PathBuf,
        /// The fleet file.
        #[arg(short = 'f', long = "file", default_value = "fleet.toml")]
        file: PathBuf,
        /// The release's name on every host (default: from its content).
        #[arg(long)]
        version: Option<String>,
        /// How many hosts go first, alone.
        #[arg(long, default_value_t = 1)]
        canary: usize,
        /// Hosts per batch after the canary: a count or a percentage of
        /// the rest [default: all the rest at once, within max_parallel].
        #[arg(long, value_name = "N|PCT")]
        batch: Option<String>,
        /// The share of a batch's hosts that may fail before the rollout
        /// stops and rolls back.
        #[arg(long, value_name = "PCT", default_value = "0%")]
        max_fail: String,
        /// Only these hosts (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// Only these tenants (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        tenants: Vec<String>,
        /// Print JSON: {"version", "result", "hosts": [{"name", "result",
        /// "error"?, "instances": [{"name", "result", "release"}]}]}.
        #[arg(long)]
        json: bool,
        /// Take the fleet lock even though another deploy holds it (when
        /// that one is gone).
        #[arg(long)]
        break_lock: bool,
    },
    /// Every instance of an agent template to one release: --to, or the
    /// one live before the current one, the same on every instance
    /// (refused when they disagree). Exit 0 when all run it, 1 if not.
    Rollback {
        /// The agent template.
        agent: String,
        /// The fleet file.
        #[arg(short = 'f', long = "file", default_value = "fleet.toml")]
        file: PathBuf,
        /// The release [default: the one live before the current one].
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// Only these hosts (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// Only these tenants (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        tenants: Vec<String>,
        /// Print JSON: {"version", "result", "hosts": [...]} as deploy does.
        #[arg(long)]
        json: bool,
        /// Take the fleet lock even though another deploy holds it.
        #[arg(long)]
        break_lock: bool,
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
        FleetCommand::Plan { file, json, hosts } => plan::run(&file, json, &hosts),
        FleetCommand::Apply { file, json, hosts } => apply::run(&file, json, &hosts),
        FleetCommand::Deploy {
            agent,
            source,
            file,
            version,
            canary,
            batch,
            max_fail,
            hosts,
            tenants,
            json,
            break_lock,
        } => deploy::run(deploy::Options {
            file,
            agent,
            source,
            version,
            canary,
            batch,
            max_fail,
            hosts,
            tenants,
            json,
            break_lock,
        }),
        FleetCommand::Rollback {
            agent,
            file,
            to,
            hosts,
            tenants,
            json,
            break_lock,
        } => rollback::run(rollback::Options {
            file,
            agent,
            to,
            hosts,
            tenants,
            json,
            break_lock,
        }),
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
        FleetCommand::Diagnose {
            file,
            out,
            json,
            hosts,
        } => diagnose::run(&file, &out, json, &hosts),
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
