//! `roster fleet export prometheus|grafana`: files that watch the fleet.
//!
//! - this module: reading the fleet file, each host's scrape target, and
//!   writing the files;
//! - `rules`: the alerting rules (rules.yml);
//! - `grafana`: the dashboard and Grafana's file provisioning.
//!
//! Every series roster serves carries only an `agent` label (the instance,
//! `TENANT.AGENT`); the targets add `host`, the host's labels and `fleet`,
//! and the queries derive `tenant` from `agent` with `label_replace`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use roster_core::fleet::{Fleet, TemplateValue};

mod grafana;
mod rules;

/// One host's file_sd target group: its metrics address and its labels.
#[derive(Debug, PartialEq)]
struct Target {
    address: String,
    labels: BTreeMap<String, String>,
}

/// Runs `roster fleet export prometheus`.
pub fn prometheus(file: &Path, out: &Path) -> Result<ExitCode> {
    let fleet = load(file)?;
    let targets = targets(&fleet)?;
    let limits = memory_limits(&fleet)?;
    let out = out_dir(out)?;
    let groups: Vec<serde_json::Value> = targets
        .iter()
        .map(|target| serde_json::json!({ "targets": [target.address], "labels": target.labels }))
        .collect();
    let mut json = serde_json::to_string_pretty(&groups).context("encoding targets.json")?;
    json.push('\n');
    let targets_path = out.join("targets.json");
    write(&targets_path, &json)?;
    let rules_path = out.join("rules.yml");
    write(&rules_path, &rules::rules(&fleet.name, &limits))?;
    println!(
        "wrote {} ({} hosts) and {}",
        targets_path.display(),
        targets.len(),
        rules_path.display()
    );
    println!(
        "  hint: in prometheus.yml:\n    rule_files: [\"{}\"]\n    scrape_configs:\n      - job_name: roster\n        file_sd_configs:\n          - files: [\"{}\"]",
        rules_path.display(),
        targets_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `roster fleet export grafana`.
pub fn grafana(file: &Path, out: &Path) -> Result<ExitCode> {
    let fleet = load(file)?;
    // The targets are what the dashboard shows; a fleet without them
    // has nothing to show, said here as for `export prometheus`.
    targets(&fleet)?;
    let out = out_dir(out)?;
    let dashboards = out.join("dashboards");
    let provisioning = out.join("provisioning");
    for dir in [
        &dashboards,
        &provisioning.join("dashboards"),
        &provisioning.join("datasources"),
    ] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let dashboard_path = dashboards.join(format!("{}.json", grafana::uid(&fleet.name)));
    let mut json = serde_json::to_string_pretty(&grafana::dashboard(&fleet.name))
        .context("encoding the dashboard")?;
    json.push('\n');
    write(&dashboard_path, &json)?;
    let provider_path = provisioning.join("dashboards/roster-fleet.yaml");
    write(&provider_path, &grafana::provider(&fleet.name, &dashboards))?;
    let datasource_path = provisioning.join("datasources/roster-fleet.yaml");
    write(&datasource_path, &grafana::datasource_yaml())?;
    println!("wrote {}", dashboard_path.display());
    println!("wrote {}", provider_path.display());
    println!("wrote {}", datasource_path.display());
    println!(
        "  hint: point Grafana's [paths] provisioning at {} (GF_PATHS_PROVISIONING), and set the datasource's url to your Prometheus ({} says {})",
        provisioning.display(),
        datasource_path.display(),
        grafana::PROMETHEUS_URL
    );
    Ok(ExitCode::SUCCESS)
}

/// The fleet file at `file`, checked.
fn load(file: &Path) -> Result<Fleet> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "reading the fleet file {}\n  hint: pass one with -f FILE",
            file.display()
        )
    })?;
    Ok(roster_core::fleet::parse(&text, file)?)
}

/// `out`, created if missing, as an absolute path (the provisioning file
/// names the dashboards' directory, which Grafana reads from anywhere).
fn out_dir(out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::canonicalize(out).with_context(|| format!("resolving {}", out.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Every host's target, in host name order: `[metrics] listen` with
/// `{address}` and `{host}` filled (a wildcard address is scraped at the
/// host's address), labeled with the host's labels, `host` and `fleet`.
fn targets(fleet: &Fleet) -> Result<Vec<Target>> {
    let Some(listen) = &fleet.metrics_listen else {
        bail!(
            "the fleet file has no [metrics] listen, so its hosts serve no /metrics to scrape\n  hint: add [metrics]\n  listen = \"{{address}}:9464\""
        );
    };
    let mut targets = Vec::new();
    for (name, host) in &fleet.hosts {
        let filled = listen
            .replace("{address}", &host.address)
            .replace("{host}", name);
        let Some((bind, port)) = filled.rsplit_once(':') else {
            bail!("[metrics] listen {listen:?} has no port (ADDRESS:PORT)");
        };
        let address = if matches!(bind, "" | "0.0.0.0" | "[::]" | "::") {
            if host.address.contains(':') && !host.address.starts_with('[') {
                format!("[{}]:{port}", host.address)
            } else {
                format!("{}:{port}", host.address)
            }
        } else {
            filled.clone()
        };
        let mut labels = BTreeMap::new();
        for (key, value) in &host.labels {
            if !label_name(key) || key == "host" || key == "fleet" {
                bail!(
                    "host {name}: label {key:?} cannot be a Prometheus label\n  hint: use letters, digits and _ (not first a digit, not __ first), and neither `host` nor `fleet`"
                );
            }
            labels.insert(key.clone(), value.clone());
        }
        labels.insert("host".to_owned(), name.clone());
        labels.insert("fleet".to_owned(), fleet.name.clone());
        targets.push(Target { address, labels });
    }
    Ok(targets)
}

/// Whether `name` is a label name Prometheus accepts and does not reserve.
fn label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Each template's `memory_max` in bytes, by template name (roster serves
/// no limit metric, so the limit is the fleet file's).
fn memory_limits(fleet: &Fleet) -> Result<BTreeMap<String, u64>> {
    let mut limits = BTreeMap::new();
    for (name, template) in &fleet.templates {
        let Some((_, value)) = template.table.iter().find(|(key, _)| key == "memory_max") else {
            continue;
        };
        let bytes = match value {
            TemplateValue::String(text) => roster_core::units::parse_size(text)
                .map_err(|error| anyhow::anyhow!("[agents.{name}] memory_max: {error}"))?,
            TemplateValue::Integer(number) => u64::try_from(*number)
                .with_context(|| format!("[agents.{name}] memory_max is negative"))?,
            _ => bail!("[agents.{name}] memory_max must be a size such as \"512MiB\""),
        };
        limits.insert(name.clone(), bytes);
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(text: &str) -> Fleet {
        roster_core::fleet::parse(text, Path::new("fleet.toml")).expect("a valid fleet")
    }

    const BASE: &str =
        "[fleet]\nname = \"agency\"\nports = \"8100-8199\"\n\n[ssh]\nuser = \"root\"\n\n";

    #[test]
    fn targets_fill_the_address_and_carry_the_labels() {
        let fleet = fleet(&format!(
            "{BASE}[metrics]\nlisten = \"{{address}}:9464\"\n\n[hosts.h01]\naddress = \"10.0.0.11\"\ncapacity = 1\nlabels = {{ region = \"eu\" }}\n\n[hosts.h02]\naddress = \"10.0.0.12\"\ncapacity = 1\n"
        ));
        let targets = targets(&fleet).expect("targets");
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].address, "10.0.0.11:9464");
        assert_eq!(
            targets[0].labels,
            BTreeMap::from([
                ("fleet".to_owned(), "agency".to_owned()),
                ("host".to_owned(), "h01".to_owned()),
                ("region".to_owned(), "eu".to_owned()),
            ])
        );
        assert_eq!(targets[1].address, "10.0.0.12:9464");
    }

    #[test]
    fn a_wildcard_listen_is_scraped_at_the_host_address() {
        let fleet = fleet(&format!(
            "{BASE}[metrics]\nlisten = \"0.0.0.0:9464\"\n\n[hosts.h01]\naddress = \"fd00::1\"\ncapacity = 1\n"
        ));
        assert_eq!(
            targets(&fleet).expect("targets")[0].address,
            "[fd00::1]:9464"
        );
    }

    #[test]
    fn no_metrics_listen_or_a_bad_label_is_refused() {
        let none = fleet(&format!(
            "{BASE}[hosts.h01]\naddress = \"10.0.0.11\"\ncapacity = 1\n"
        ));
        let error = targets(&none).expect_err("no listen").to_string();
        assert!(error.contains("no [metrics] listen"), "{error}");
        let bad = fleet(&format!(
            "{BASE}[metrics]\nlisten = \"{{address}}:9464\"\n\n[hosts.h01]\naddress = \"10.0.0.11\"\ncapacity = 1\nlabels = {{ host = \"x\" }}\n"
        ));
        let error = targets(&bad).expect_err("a reserved label").to_string();
        assert!(error.contains("label \"host\""), "{error}");
    }

    #[test]
    fn label_names_follow_prometheus() {
        assert!(label_name("region"));
        assert!(label_name("_zone2"));
        assert!(!label_name("2zone"));
        assert!(!label_name("__meta"));
        assert!(!label_name("my-label"));
        assert!(!label_name(""));
    }
}
