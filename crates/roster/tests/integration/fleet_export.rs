//! `roster fleet export prometheus|grafana` end to end: the files written
//! from a fleet file, checked by `promtool check rules`, and used by a real
//! Prometheus (Debian's `prometheus` package; `.ci/run` installs it) that
//! scrapes a host on loopback from the exported targets, loads the
//! exported rules, and answers every query of the exported dashboard.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::util::*;

/// The path of a program, if installed.
fn which(program: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// A fleet file with `hosts` (name, address, labels) and a template
/// `support` with a memory limit, for tenants c01 and c02.
fn fleet_file(name: &str, listen: &str, hosts: &[(&str, &str, &str)]) -> String {
    let mut text = format!(
        "[fleet]\nname = \"{name}\"\nports = \"8100-8199\"\n\n[ssh]\nuser = \"root\"\n\n\
         [metrics]\nlisten = \"{listen}\"\n\n"
    );
    for (host, address, labels) in hosts {
        text.push_str(&format!(
            "[hosts.{host}]\naddress = \"{address}\"\ncapacity = 4\nlabels = {{ {labels} }}\n\n"
        ));
    }
    text.push_str(
        "[agents.support]\ncommand = [\"python3\", \"agent.py\"]\nmemory_max = \"512MiB\"\n\n\
         [tenants.c01]\nagents = [\"support\"]\n\n[tenants.c02]\nagents = [\"support\"]\n",
    );
    text
}

/// `roster fleet export WHAT -f FLEET --out DIR`, asserted to succeed.
fn export(roster: &Roster, what: &str, fleet: &Path, out: &Path) -> String {
    roster.ok(&[
        "fleet",
        "export",
        what,
        "-f",
        &fleet.display().to_string(),
        "--out",
        &out.display().to_string(),
    ])
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path:?} is not JSON: {error}"))
}

/// Runs `program` with `args`, asserting it succeeds; returns stdout.
fn run_ok(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program:?}: {error}"));
    assert!(
        output.status.success(),
        "{program:?} {args:?} ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts that each file is YAML (by Python's yaml module, when there).
fn assert_yaml(files: &[PathBuf]) {
    let Some(python) = which("python3") else {
        return;
    };
    let has_yaml = Command::new(&python)
        .args(["-c", "import yaml"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !has_yaml {
        eprintln!("python3 has no yaml module: the YAML files are checked by shape only");
        return;
    }
    let mut args = vec![
        "-c".to_owned(),
        "import sys, yaml\nfor path in sys.argv[1:]:\n    yaml.safe_load(open(path))".to_owned(),
    ];
    args.extend(files.iter().map(|file| file.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&python, &args);
}

#[test]
fn fleet_export_writes_targets_rules_and_a_provisioned_dashboard() {
    let roster = Roster::new();
    let fleet = roster.write(
        "fleet.toml",
        &fleet_file(
            "agency",
            "{address}:9464",
            &[
                ("h01", "10.0.0.11", "region = \"eu\""),
                ("h02", "10.0.0.12", "region = \"us\", rack = \"r2\""),
            ],
        ),
    );
    let out = roster.path("watch");
    let said = export(&roster, "prometheus", &fleet, &out);
    assert!(said.contains("targets.json (2 hosts)"), "{said}");

    assert_eq!(
        read_json(&out.join("targets.json")),
        json!([
            { "targets": ["10.0.0.11:9464"], "labels": { "fleet": "agency", "host": "h01", "region": "eu" } },
            { "targets": ["10.0.0.12:9464"], "labels": { "fleet": "agency", "host": "h02", "rack": "r2", "region": "us" } },
        ])
    );
    let rules = std::fs::read_to_string(out.join("rules.yml")).expect("rules.yml");
    for alert in [
        "RosterInstanceDown",
        "RosterInstanceUnhealthy",
        "RosterInstanceCrashLooping",
        "RosterInstanceMemoryNearLimit",
        "RosterHostUnreachable",
    ] {
        assert!(
            rules.contains(&format!("alert: {alert}\n")),
            "{alert}:\n{rules}"
        );
    }
    assert!(
        rules.contains("> 0.9 * 536870912"),
        "the template's memory_max:\n{rules}"
    );

    export(&roster, "grafana", &fleet, &out);
    let dashboard = read_json(&out.join("dashboards/roster-fleet-agency.json"));
    assert_eq!(dashboard["title"], "roster fleet agency");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|variable| variable["name"].as_str())
        .collect();
    assert_eq!(variables, ["datasource", "host", "tenant"]);
    assert!(exprs(&dashboard).len() > 20);
    let provider = out.join("provisioning/dashboards/roster-fleet.yaml");
    let datasource = out.join("provisioning/datasources/roster-fleet.yaml");
    let provider_text = std::fs::read_to_string(&provider).expect("provider");
    let dashboards_dir = std::fs::canonicalize(out.join("dashboards")).expect("dashboards dir");
    assert!(
        provider_text.contains(&format!("path: '{}'", dashboards_dir.display())),
        "{provider_text}"
    );
    let datasource_text = std::fs::read_to_string(&datasource).expect("datasource");
    assert!(
        datasource_text.contains("type: prometheus")
            && datasource_text.contains("uid: roster-prometheus"),
        "{datasource_text}"
    );
    assert_yaml(&[out.join("rules.yml"), provider, datasource]);

    let Some(promtool) = which("promtool") else {
        skip(
            "fleet_export_writes_targets_rules_and_a_provisioned_dashboard",
            "promtool is not installed (Debian package prometheus)",
        );
        return;
    };
    let checked = run_ok(
        &promtool,
        &[
            "check",
            "rules",
            &out.join("rules.yml").display().to_string(),
        ],
    );
    assert!(checked.contains("SUCCESS: 5 rules found"), "{checked}");
}

#[test]
fn fleet_export_refuses_a_fleet_without_metrics() {
    let roster = Roster::new();
    let fleet = roster.write(
        "fleet.toml",
        &fleet_file("agency", "{address}:9464", &[("h01", "10.0.0.11", "")])
            .replace("[metrics]\nlisten = \"{address}:9464\"\n", ""),
    );
    let out = roster.path("watch");
    let output = roster.run(&[
        "fleet",
        "export",
        "prometheus",
        "-f",
        &fleet.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no [metrics] listen"), "{stderr}");
    assert!(!out.join("targets.json").exists());
}

/// Every `expr` of every panel of a dashboard.
fn exprs(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect()
}

/// `text` percent-encoded for a URL's query.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// `GET path` from Prometheus' HTTP API on 127.0.0.1:port: its `data`
/// when the answer is a success.
fn api_get(port: u16, path: &str) -> Option<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(SECS(10))).ok()?;
    // HTTP/1.0: the body comes whole, never chunked.
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (_, body) = answer.split_once("\r\n\r\n")?;
    let body: Value = serde_json::from_str(body).ok()?;
    (body["status"] == "success").then(|| body["data"].clone())
}

/// The series an instant query returns, when it returns any.
fn query(port: u16, expr: &str) -> Option<Vec<Value>> {
    let data = api_get(port, &format!("/api/v1/query?query={}", url_encode(expr)))?;
    let result = data["result"].as_array()?.clone();
    (!result.is_empty()).then_some(result)
}

/// A Prometheus server, killed (and reaped) whatever happens to the test.
struct Prometheus {
    child: Child,
    _data: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Python agent listening on `port` (its health check's) and printing.
fn listening_agent(port: u16) -> String {
    format!(
        "import socket, time\nserver = socket.socket()\n\
         server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         server.bind((\"127.0.0.1\", {port}))\nserver.listen()\n\
         while True:\n    print(\"tick\", flush=True)\n    time.sleep(0.2)\n"
    )
}

#[test]
fn a_real_prometheus_watches_the_fleet_from_the_exported_files() {
    let Some(prometheus) = which("prometheus") else {
        skip(
            "a_real_prometheus_watches_the_fleet_from_the_exported_files",
            "prometheus is not installed (Debian package prometheus)",
        );
        return;
    };
    // The host: this machine on loopback, its roster serving /metrics on
    // the fleet's [metrics] listen, with two tenants' instances running and
    // one that ran and stopped.
    let roster = Roster::new();
    let metrics_port = free_port();
    let mut config = format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n");
    for tenant in ["c01", "c02"] {
        let port = free_port();
        roster.write(&format!("{tenant}.py"), &listening_agent(port));
        config.push_str(&format!(
            "[agents.\"{tenant}.support\"]\ncommand = [\"python3\", \"{tenant}.py\"]\n\
             [agents.\"{tenant}.support\".health]\ntcp = \"127.0.0.1:{port}\"\ninterval = \"200ms\"\nstart_period = \"0s\"\n\n"
        ));
    }
    config.push_str("[agents.\"c02.batch\"]\ncommand = [\"true\"]\nrestart = \"never\"\n");
    roster.config(&config);
    roster.up();

    let fleet = roster.write(
        "fleet.toml",
        &fleet_file(
            "loop",
            &format!("{{address}}:{metrics_port}"),
            &[("h01", "127.0.0.1", "region = \"eu\"")],
        ),
    );
    let out = roster.path("watch");
    export(&roster, "prometheus", &fleet, &out);
    export(&roster, "grafana", &fleet, &out);

    let data = tempfile::Builder::new()
        .prefix("roster-prometheus-")
        .tempdir()
        .expect("temp dir");
    let config = data.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n  - job_name: roster\n    file_sd_configs:\n      - files: [\"{}\"]\n        refresh_interval: 1s\n",
            out.join("rules.yml").display(),
            out.join("targets.json").display()
        ),
    )
    .expect("write prometheus.yml");
    let web_port = free_port();
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            data.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _prometheus = Prometheus { child, _data: data };

    // The host is scraped from the exported target, with its labels...
    let up = wait_for(
        "Prometheus to scrape h01 from targets.json",
        SECS(30),
        || query(web_port, "up{fleet=\"loop\"} == 1"),
    );
    assert_eq!(up.len(), 1, "{up:#?}");
    assert_eq!(up[0]["metric"]["host"], "h01");
    assert_eq!(up[0]["metric"]["region"], "eu");
    assert_eq!(
        up[0]["metric"]["instance"],
        format!("127.0.0.1:{metrics_port}")
    );
    // ...the exported rules are loaded and evaluate without error...
    let rules = wait_for("the exported rules to be evaluated", SECS(30), || {
        let data = api_get(web_port, "/api/v1/rules")?;
        let rules: Vec<Value> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (rules.len() == 5 && rules.iter().all(|rule| rule["health"] == "ok")).then_some(rules)
    });
    assert!(
        rules.iter().all(|rule| rule["type"] == "alerting"),
        "{rules:#?}"
    );
    // ...and the stopped instance's alert is on its way.
    let alert = wait_for("RosterInstanceDown for c02.batch", SECS(30), || {
        query(
            web_port,
            "ALERTS{alertname=\"RosterInstanceDown\",agent=\"c02.batch\"}",
        )
    });
    assert_eq!(alert[0]["metric"]["host"], "h01", "{alert:#?}");

    // Every query of every panel returns data, for all hosts and tenants
    // and for one of each.
    let dashboard = read_json(&out.join("dashboards/roster-fleet-loop.json"));
    let exprs = exprs(&dashboard);
    for (host, tenant) in [(".*", ".*"), ("h01", "c02")] {
        for expr in &exprs {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$host", host)
                .replace("$tenant", tenant);
            wait_for(&format!("data for {expr}"), SECS(30), || {
                query(web_port, &expr)
            });
        }
    }
    // The variables' values: the host, and the tenants from the instances.
    let hosts = api_get(
        web_port,
        &format!(
            "/api/v1/label/host/values?match[]={}",
            url_encode("up{fleet=\"loop\"}")
        ),
    )
    .expect("host values");
    assert_eq!(hosts, json!(["h01"]));
    let agents = api_get(
        web_port,
        &format!(
            "/api/v1/label/agent/values?match[]={}",
            url_encode("roster_agent_up{fleet=\"loop\"}")
        ),
    )
    .expect("agent values");
    assert_eq!(agents, json!(["c01.support", "c02.batch", "c02.support"]));
}
