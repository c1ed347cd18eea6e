//! `roster fleet secret set|list|rm TENANT ...`: a tenant's secret on each
//! of its instances, through each host's own `roster secret` (per agent),
//! only on the hosts the placement puts the tenant's instances on. The
//! value is read once from stdin and goes to each host on ssh's stdin:
//! never on a command line, never printed. Hosts are worked on at once;
//! one failing does not stop the others.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use roster_core::api::SecretsReply;
use roster_core::fleet::{self, Fleet, Placed};
use roster_store::secrets;

use super::ssh::{Ssh, Target};
use super::REMOTE_HOME;
use crate::render;

/// What a host may take on top of connecting, per instance.
const COMMAND_BUDGET: Duration = Duration::from_secs(10);
/// The exit code when any host or instance failed.
const SOME_FAILED: u8 = 1;

/// `roster fleet secret ...`.
#[derive(Subcommand, Debug)]
pub enum FleetSecret {
    /// Store a secret on every instance of a tenant; the value is read from
    /// stdin (one line). Each instance gets it at its next start.
    Set {
        /// The tenant.
        tenant: String,
        /// The variable's name: [A-Za-z_][A-Za-z0-9_]*.
        key: String,
        /// The fleet file.
        #[arg(short = 'f', long = "file", default_value = "fleet.toml")]
        file: PathBuf,
    },
    /// List the names of a tenant's secrets per host and instance (never
    /// their values).
    List {
        /// The tenant.
        tenant: String,
        /// The fleet file.
        #[arg(short = 'f', long = "file", default_value = "fleet.toml")]
        file: PathBuf,
    },
    /// Remove a secret from every instance of a tenant that has it; each
    /// loses it at its next start.
    Rm {
        /// The tenant.
        tenant: String,
        /// The variable's name.
        key: String,
        /// The fleet file.
        #[arg(short = 'f', long = "file", default_value = "fleet.toml")]
        file: PathBuf,
    },
}

/// Runs `roster fleet secret ...`.
pub fn run(command: FleetSecret) -> Result<ExitCode> {
    match command {
        FleetSecret::Set { tenant, key, file } => {
            check_key(&key)?;
            let tenancy = Tenancy::read(&file, &tenant)?;
            let value = crate::commands::secret::read_value(&key)?;
            set(&tenancy, &key, &value)
        }
        FleetSecret::List { tenant, file } => list(&Tenancy::read(&file, &tenant)?),
        FleetSecret::Rm { tenant, key, file } => {
            check_key(&key)?;
            remove(&Tenancy::read(&file, &tenant)?, &key)
        }
    }
}

fn check_key(key: &str) -> Result<()> {
    secrets::check_key(key).map_err(anyhow::Error::msg)
}

/// A tenant's instances grouped by host, with the transport to reach them.
struct Tenancy {
    fleet: Fleet,
    transport: Ssh,
    /// Each host that runs the tenant, with its instances there.
    hosts: Vec<(Target, Vec<Placed>)>,
}

impl Tenancy {
    fn read(file: &Path, tenant: &str) -> Result<Self> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let fleet = fleet::parse(&text, file)?;
        if !fleet.tenants.contains_key(tenant) {
            let names: Vec<&str> = fleet.tenants.keys().map(String::as_str).collect();
            bail!(
                "no tenant named {tenant:?} in {}\n  hint: tenants: {}",
                file.display(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            );
        }
        let placement = fleet::place(&fleet)?;
        let placed: Vec<Placed> = placement
            .instances
            .into_iter()
            .filter(|instance| instance.tenant == tenant)
            .collect();
        let mut names: Vec<String> = placed.iter().map(|p| p.host.clone()).collect();
        names.sort();
        names.dedup();
        let transport = Ssh::new(&fleet)?;
        let hosts = transport
            .targets(&fleet, &names)?
            .into_iter()
            .map(|target| {
                let here = placed
                    .iter()
                    .filter(|instance| instance.host == target.name)
                    .cloned()
                    .collect();
                (target, here)
            })
            .collect();
        Ok(Self {
            fleet,
            transport,
            hosts,
        })
    }

    /// Runs `verb` (after `roster --home H secret`) for every instance, a
    /// thread per host, instances of a host one after another; `args`
    /// gives the words after the verb for an instance, `input` the stdin.
    fn each(
        &self,
        verb: &str,
        args: impl Fn(&Placed) -> Vec<String> + Sync,
        input: &[u8],
    ) -> Vec<(String, String, Result<Vec<u8>, String>)> {
        let timeout = self.fleet.ssh.connect_timeout + COMMAND_BUDGET;
        let args = &args;
        std::thread::scope(|scope| {
            let workers: Vec<_> = self
                .hosts
                .iter()
                .map(|(target, instances)| {
                    scope.spawn(move || {
                        instances
                            .iter()
                            .map(|instance| {
                                let mut remote: Vec<String> = [
                                    self.transport.roster(),
                                    "--home",
                                    REMOTE_HOME,
                                    "secret",
                                    verb,
                                ]
                                .map(str::to_owned)
                                .to_vec();
                                remote.extend(args(instance));
                                let result = self
                                    .transport
                                    .run_with_input(target, &remote, input, timeout);
                                (target.name.clone(), instance.name.clone(), result)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .zip(&self.hosts)
                .flat_map(|(worker, (target, instances))| {
                    worker.join().unwrap_or_else(|_| {
                        instances
                            .iter()
                            .map(|instance| {
                                (
                                    target.name.clone(),
                                    instance.name.clone(),
                                    Err("the worker for this host failed".to_owned()),
                                )
                            })
                            .collect()
                    })
                })
                .collect()
        })
    }
}

fn set(tenancy: &Tenancy, key: &str, value: &str) -> Result<ExitCode> {
    let results = tenancy.each(
        "set",
        |instance| vec![instance.name.clone(), key.to_owned()],
        value.as_bytes(),
    );
    let mut failed = false;
    for (host, instance, result) in &results {
        match result {
            Ok(_) => println!(
                "{host}: {instance}: secret {key} set; it takes effect at the agent's next start \
                 (`roster restart {instance}` on {host})"
            ),
            Err(reason) => {
                failed = true;
                println!("{host}: {instance}: failed: {reason}");
            }
        }
    }
    Ok(outcome(failed, results.is_empty()))
}

fn list(tenancy: &Tenancy) -> Result<ExitCode> {
    let results = tenancy.each(
        "list",
        |instance| vec![instance.name.clone(), "--json".to_owned()],
        &[],
    );
    let mut failed = false;
    let rows: Vec<[String; 3]> = results
        .into_iter()
        .map(|(host, instance, result)| {
            let keys = result.and_then(|stdout| {
                serde_json::from_slice::<SecretsReply>(&stdout)
                    .map_err(|error| format!("the host's answer is not JSON: {error}"))
            });
            let cell = match keys {
                Ok(reply) if reply.keys.is_empty() => "-".to_owned(),
                Ok(reply) => reply.keys.join(", "),
                Err(reason) => {
                    failed = true;
                    format!("failed: {reason}")
                }
            };
            [host, instance, cell]
        })
        .collect();
    if rows.is_empty() {
        println!("the tenant has no instances");
    } else {
        print!("{}", render::table(&["HOST", "INSTANCE", "KEYS"], &rows));
    }
    Ok(outcome(failed, false))
}

fn remove(tenancy: &Tenancy, key: &str) -> Result<ExitCode> {
    let results = tenancy.each(
        "rm",
        |instance| vec![instance.name.clone(), key.to_owned()],
        &[],
    );
    let mut failed = false;
    let mut removed = 0;
    for (host, instance, result) in &results {
        match result {
            Ok(_) => {
                removed += 1;
                println!(
                    "{host}: {instance}: secret {key} removed; the agent loses it at its next start"
                );
            }
            Err(reason) if reason.contains(&format!("has no secret named {key}")) => {
                println!("{host}: {instance}: no secret {key}");
            }
            Err(reason) => {
                failed = true;
                println!("{host}: {instance}: failed: {reason}");
            }
        }
    }
    Ok(outcome(failed, removed == 0))
}

/// Exit 1 when any failed or nothing was done.
fn outcome(failed: bool, none: bool) -> ExitCode {
    if failed || none {
        ExitCode::from(SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
