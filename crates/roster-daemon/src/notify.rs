//! Alert delivery: the `[[notify]]` targets (webhook, Alertmanager, exec,
//! file), run as tokio tasks off the loop.
//!
//! This module only delivers: when an alert fires or resolves is decided in
//! roster-core, and the daemon hands the [`AlertRecord`] to
//! [`Notifier::send`], which queues it and returns at once. Each target has
//! its own queue (bounded; the oldest alert is dropped, and reported, when
//! it is full) and its own task, which delivers in order, each attempt
//! bounded by the target's `timeout`, retrying with exponential backoff. So
//! a slow or dead receiver delays neither the loop nor another target.
//!
//! Exec targets are processes, and the loop is the only caller of
//! `waitpid`: the notifier does not spawn them. It hands an
//! [`ExecRequest::Run`] to the runner given at start (the daemon's forwards
//! it to the loop through the inbox); the loop spawns the command in its own
//! process group, remembers its pid with the reply, and answers the reply
//! when it reaps the process (`Ok` on exit 0). When the attempt's timeout
//! passes first, the notifier sends [`ExecRequest::Kill`] with the same id
//! and the loop kills the process group; the reap that follows answers a
//! reply nobody waits for any more.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};

use roster_core::api::{AlertRecord, AlertState};
use roster_core::health::HttpTarget;
use roster_core::notify::{NotifySpec, NotifyTarget};

use crate::clock::{rfc3339_millis, unix_millis};

/// Alerts waiting per target; past it the oldest is dropped (and reported).
pub const QUEUE_CAPACITY: usize = 1000;

/// How often firing alerts are pushed again to an Alertmanager, which
/// resolves an alert it has not heard of for its `resolve_timeout` (5m by
/// default).
pub const ALERTMANAGER_RESEND: Duration = Duration::from_secs(60);

/// The most of a receiver's answer read (the status line, and a little of
/// the body to explain a refusal).
const MAX_ANSWER: usize = 4096;

/// How hard a delivery is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each.
    pub first_backoff: Duration,
    /// No new attempt starts later than this after the first.
    pub give_up_after: Duration,
    /// How often firing alerts are pushed again to an Alertmanager
    /// ([`ALERTMANAGER_RESEND`]).
    pub alertmanager_resend: Duration,
}

impl Default for Retry {
    /// 5 attempts, waiting 1s, 2s, 4s, 8s between them, within 60s.
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            give_up_after: Duration::from_secs(60),
            alertmanager_resend: ALERTMANAGER_RESEND,
        }
    }
}

/// The final outcome of one alert event at one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The target, as `webhook http://...`, `exec cmd ...`, ...
    pub target: String,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The alert's name.
    pub name: String,
    /// The alert's agent (`None` for host alerts).
    pub agent: Option<String>,
    /// Firing or resolved.
    pub state: AlertState,
    /// Attempts made (0 when the alert was dropped from a full queue).
    pub attempts: u32,
    /// `Err` says why it was not delivered.
    pub outcome: Result<(), String>,
}

/// What the notifier asks of whoever runs processes (the daemon loop).
#[derive(Debug)]
pub enum ExecRequest {
    /// Spawn `argv` in `cwd` with `env` added, in its own process group;
    /// answer `reply` when it is reaped: `Ok` on exit 0, else why not.
    Run {
        /// Names this run for [`ExecRequest::Kill`].
        id: u64,
        /// The command.
        argv: Vec<String>,
        /// Where it runs.
        cwd: PathBuf,
        /// `ROSTER_ALERT_*`, on top of the daemon's environment.
        env: Vec<(String, String)>,
        /// The outcome.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The run `id` took too long: SIGKILL its process group.
    Kill {
        /// The run.
        id: u64,
    },
}

type Runner = Arc<dyn Fn(ExecRequest) + Send + Sync>;
type Reporter = Arc<dyn Fn(DeliveryReport) + Send + Sync>;

struct Shared {
    retry: Retry,
    exec: Runner,
    report: Reporter,
    next_exec: AtomicU64,
}

/// One target's queue, shared by the sender and the target's task.
struct Queue {
    alerts: Mutex<VecDeque<AlertRecord>>,
    wake: Notify,
    closed: AtomicBool,
}

impl Queue {
    fn pop(&self) -> Option<AlertRecord> {
        self.alerts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

struct Worker {
    spec: NotifySpec,
    queue: Arc<Queue>,
}

/// Delivers alerts to the configured targets, on the daemon's runtime.
pub struct Notifier {
    runtime: Handle,
    shared: Arc<Shared>,
    workers: Vec<Worker>,
}

impl Notifier {
    /// Starts one task per target, with the default [`Retry`]. `exec` runs
    /// exec targets' processes (see the module comment); `report` hears the
    /// final outcome of every alert event at every target. Both are called
    /// from runtime threads (and `report` from [`Notifier::send`]'s caller
    /// for a dropped alert), and must not block.
    pub fn start(
        runtime: &Handle,
        specs: Vec<NotifySpec>,
        exec: impl Fn(ExecRequest) + Send + Sync + 'static,
        report: impl Fn(DeliveryReport) + Send + Sync + 'static,
    ) -> Notifier {
        Self::start_with_retry(runtime, specs, Retry::default(), exec, report)
    }

    /// [`Notifier::start`] with another retry policy.
    pub fn start_with_retry(
        runtime: &Handle,
        specs: Vec<NotifySpec>,
        retry: Retry,
        exec: impl Fn(ExecRequest) + Send + Sync + 'static,
        report: impl Fn(DeliveryReport) + Send + Sync + 'static,
    ) -> Notifier {
        let mut notifier = Notifier {
            runtime: runtime.clone(),
            shared: Arc::new(Shared {
                retry,
                exec: Arc::new(exec),
                report: Arc::new(report),
                next_exec: AtomicU64::new(1),
            }),
            workers: Vec::new(),
        };
        notifier.reconfigure(specs);
        notifier
    }

    /// Queues `alert` for every target and returns at once.
    pub fn send(&self, alert: AlertRecord) {
        for worker in &self.workers {
            let dropped = {
                let mut alerts = worker
                    .queue
                    .alerts
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let dropped = if alerts.len() >= QUEUE_CAPACITY {
                    alerts.pop_front()
                } else {
                    None
                };
                alerts.push_back(alert.clone());
                dropped
            };
            worker.queue.wake.notify_one();
            if let Some(dropped) = dropped {
                (self.shared.report)(report_for(
                    &worker.spec.target,
                    &dropped,
                    0,
                    Err(format!(
                        "dropped: {QUEUE_CAPACITY} alerts were waiting for this target"
                    )),
                ));
            }
        }
    }

    /// A config apply: targets that stay (same spec) keep their queue and
    /// task; new ones start; removed ones end after the attempt in
    /// progress, and what waited for them is dropped.
    pub fn reconfigure(&mut self, specs: Vec<NotifySpec>) {
        let mut old = std::mem::take(&mut self.workers);
        for spec in specs {
            if let Some(index) = old.iter().position(|worker| worker.spec == spec) {
                self.workers.push(old.swap_remove(index));
                continue;
            }
            let queue = Arc::new(Queue {
                alerts: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
                closed: AtomicBool::new(false),
            });
            // The task ends when the queue is closed; no handle is kept.
            drop(
                self.runtime
                    .spawn(run_target(spec.clone(), queue.clone(), self.shared.clone())),
            );
            self.workers.push(Worker { spec, queue });
        }
        for worker in old {
            worker.queue.close();
        }
    }

    /// The targets, in config order.
    pub fn targets(&self) -> Vec<String> {
        self.workers
            .iter()
            .map(|worker| worker.spec.target.to_string())
            .collect()
    }
}

impl Drop for Notifier {
    /// Each target's task ends after the attempt in progress.
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.queue.close();
        }
    }
}

fn report_for(
    target: &NotifyTarget,
    alert: &AlertRecord,
    attempts: u32,
    outcome: Result<(), String>,
) -> DeliveryReport {
    DeliveryReport {
        target: target.to_string(),
        fingerprint: alert.fingerprint.clone(),
        name: alert.name.clone(),
        agent: alert.agent.clone(),
        state: alert.state,
        attempts,
        outcome,
    }
}

/// One target's task: delivers its queue in order; for an Alertmanager,
/// also pushes the firing alerts again every [`ALERTMANAGER_RESEND`].
async fn run_target(spec: NotifySpec, queue: Arc<Queue>, shared: Arc<Shared>) {
    let pushes_again = matches!(spec.target, NotifyTarget::Alertmanager(_));
    let mut firing: BTreeMap<String, AlertRecord> = BTreeMap::new();
    let every = shared
        .retry
        .alertmanager_resend
        .max(Duration::from_millis(10));
    let mut resend = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while let Some(alert) = queue.pop() {
            if queue.is_closed() {
                return;
            }
            let (attempts, outcome) = deliver(&spec, &shared, &alert).await;
            if pushes_again {
                match alert.state {
                    AlertState::Firing => {
                        firing.insert(alert.fingerprint.clone(), alert.clone());
                    }
                    AlertState::Resolved => {
                        firing.remove(&alert.fingerprint);
                    }
                }
            }
            (shared.report)(report_for(&spec.target, &alert, attempts, outcome));
        }
        if queue.is_closed() {
            return;
        }
        tokio::select! {
            _ = queue.wake.notified() => {}
            _ = resend.tick(), if pushes_again && !firing.is_empty() => {
                // One attempt: the next push is a minute away anyway, and the
                // fire itself was reported when it was first delivered.
                let alerts: Vec<AlertRecord> = firing.values().cloned().collect();
                if let NotifyTarget::Alertmanager(target) = &spec.target {
                    let body = alertmanager_payload(&alerts).to_string();
                    let path = alertmanager_path(target);
                    let push = post(target, &path, body.as_bytes());
                    match tokio::time::timeout(spec.timeout, push).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => tracing::warn!("pushing firing alerts again: {error}"),
                        Err(_) => tracing::warn!(
                            "pushing firing alerts again to {}: no answer within {:?}",
                            target.url,
                            spec.timeout
                        ),
                    }
                }
            }
        }
    }
}

/// Tries until delivered, out of attempts, or out of time:
/// (attempts made, outcome of the last).
async fn deliver(
    spec: &NotifySpec,
    shared: &Shared,
    alert: &AlertRecord,
) -> (u32, Result<(), String>) {
    let retry = shared.retry;
    let first = tokio::time::Instant::now();
    let mut backoff = retry.first_backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = attempt(spec, shared, alert).await;
        let out_of_time = first.elapsed() + backoff > retry.give_up_after;
        if outcome.is_ok() || attempts >= retry.attempts.max(1) || out_of_time {
            let outcome = outcome.map_err(|error| {
                if attempts > 1 {
                    format!("{error} (after {attempts} attempts)")
                } else {
                    error
                }
            });
            return (attempts, outcome);
        }
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2);
    }
}

/// One attempt, cut at the target's timeout.
async fn attempt(spec: &NotifySpec, shared: &Shared, alert: &AlertRecord) -> Result<(), String> {
    let timeout = spec.timeout;
    let late = || format!("{}: no answer within {timeout:?}", spec.target);
    match &spec.target {
        NotifyTarget::Webhook(target) => {
            let body = webhook_payload(alert).to_string();
            tokio::time::timeout(timeout, post(target, &target.path, body.as_bytes()))
                .await
                .unwrap_or_else(|_| Err(late()))
        }
        NotifyTarget::Alertmanager(target) => {
            let body = alertmanager_payload(std::slice::from_ref(alert)).to_string();
            let path = alertmanager_path(target);
            tokio::time::timeout(timeout, post(target, &path, body.as_bytes()))
                .await
                .unwrap_or_else(|_| Err(late()))
        }
        NotifyTarget::File(path) => {
            let path = path.clone();
            let line = file_line(alert);
            let write = tokio::task::spawn_blocking(move || append_line(&path, &line));
            match tokio::time::timeout(timeout, write).await {
                Ok(Ok(result)) => result,
                Ok(Err(error)) => Err(format!("{}: {error}", spec.target)),
                // The blocking write goes on; the file is appended to at most
                // once more, which is better than never.
                Err(_) => Err(late()),
            }
        }
        NotifyTarget::Exec { argv, cwd } => {
            let id = shared.next_exec.fetch_add(1, Ordering::Relaxed);
            let (reply, answer) = oneshot::channel();
            (shared.exec)(ExecRequest::Run {
                id,
                argv: argv.clone(),
                cwd: cwd.clone(),
                env: exec_environment(alert),
                reply,
            });
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(result)) => result.map_err(|error| format!("{}: {error}", spec.target)),
                Ok(Err(_)) => Err(format!(
                    "{}: the daemon did not run the command (shutting down?)",
                    spec.target
                )),
                Err(_) => {
                    (shared.exec)(ExecRequest::Kill { id });
                    Err(format!(
                        "{}: still running after {timeout:?}; killed",
                        spec.target
                    ))
                }
            }
        }
    }
}

fn alertmanager_path(target: &HttpTarget) -> String {
    format!("{}/api/v2/alerts", target.path.trim_end_matches('/'))
}

/// POSTs a JSON body; any 2xx answer is a delivery.
async fn post(target: &HttpTarget, path: &str, body: &[u8]) -> Result<(), String> {
    let url = format!("http://{}{path}", target.host_header);
    let mut stream = TcpStream::connect(target.address.as_str())
        .await
        .map_err(|error| format!("POST {url}: connect {}: {error}", target.address))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: roster-notify\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        target.host_header,
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream
        .write_all(&request)
        .await
        .map_err(|error| format!("POST {url}: {error}"))?;
    let mut answer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !answer.windows(2).any(|window| window == b"\r\n") && answer.len() < MAX_ANSWER {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|error| format!("POST {url}: {error}"))?;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..read]);
    }
    let status = crate::probe::status_code(&answer)
        .ok_or_else(|| format!("POST {url}: not an HTTP answer"))?;
    if (200..300).contains(&status) {
        return Ok(());
    }
    // Read a little of the body: receivers say why they refuse (an
    // Alertmanager names the bad field).
    while answer.len() < MAX_ANSWER {
        match stream.read(&mut chunk).await {
            Ok(read) if read > 0 => answer.extend_from_slice(&chunk[..read]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let reason = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim())
        .filter(|body| !body.is_empty())
        .map(|body| {
            let short: String = body.chars().take(200).collect();
            format!(": {short}")
        })
        .unwrap_or_default();
    Err(format!("POST {url}: status {status}{reason}"))
}

/// The JSON line a file target appends: the [`AlertRecord`] itself.
fn file_line(alert: &AlertRecord) -> String {
    let mut line = serde_json::to_string(alert).unwrap_or_else(|error| {
        json!({ "fingerprint": alert.fingerprint, "error": error.to_string() }).to_string()
    });
    line.push('\n');
    line
}

/// Appends one line with one `write` (`O_APPEND`: lines from concurrent
/// writers do not interleave), creating the file 0600, never through a
/// symlink.
fn append_line(path: &Path, line: &str) -> Result<(), String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| {
            let hint = if error.raw_os_error() == Some(libc::ELOOP) {
                " (it is a symbolic link, which roster never writes through)"
            } else {
                ""
            };
            format!("file {}: {error}{hint}", path.display())
        })?;
    file.write_all(line.as_bytes())
        .map_err(|error| format!("file {}: {error}", path.display()))
}

fn state_name(state: AlertState) -> &'static str {
    match state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    }
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn label_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// The alert's labels: its extra labels (names made valid, empty values
/// left out: Prometheus treats them as absent), then `alertname`, `agent`
/// and `severity`, which an extra label cannot override.
fn labels(alert: &AlertRecord) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = alert
        .labels
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (label_name(name), value.clone()))
        .collect();
    labels.insert("alertname".into(), alert.name.clone());
    match &alert.agent {
        Some(agent) => labels.insert("agent".into(), agent.clone()),
        None => labels.remove("agent"),
    };
    labels.insert("severity".into(), alert.severity.clone());
    labels
}

fn annotations(alert: &AlertRecord) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([("summary".to_owned(), alert.summary.clone())]);
    if !alert.details.is_empty() {
        annotations.insert("description".into(), alert.details.clone());
    }
    annotations
}

/// When a resolved alert ended: its `ends_at`, or now if it has none.
fn ended_at(alert: &AlertRecord) -> String {
    alert
        .ends_at
        .clone()
        .unwrap_or_else(|| rfc3339_millis(unix_millis()))
}

/// The body of a webhook POST: Prometheus Alertmanager's webhook payload
/// (version 4), one alert per notification, so receivers written for
/// Alertmanager work unchanged.
pub fn webhook_payload(alert: &AlertRecord) -> Value {
    let status = state_name(alert.state);
    let labels = labels(alert);
    let annotations = annotations(alert);
    let group_labels: BTreeMap<&str, &str> = labels
        .iter()
        .filter(|(name, _)| matches!(name.as_str(), "alertname" | "agent"))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let group_key = format!(
        "{{}}:{{{}}}",
        group_labels
            .iter()
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ends_at = match alert.state {
        AlertState::Firing => "0001-01-01T00:00:00Z".to_owned(),
        AlertState::Resolved => ended_at(alert),
    };
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "roster",
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": alert.starts_at,
            "endsAt": ends_at,
            "generatorURL": "",
            "fingerprint": alert.fingerprint,
        }],
    })
}

/// The body of a push to Alertmanager's `POST /api/v2/alerts`. A firing
/// alert has no `endsAt` (Alertmanager keeps it for its `resolve_timeout`,
/// hence the pushes every minute); a resolved one ends at its end time.
pub fn alertmanager_payload(alerts: &[AlertRecord]) -> Value {
    Value::Array(
        alerts
            .iter()
            .map(|alert| {
                let mut entry = json!({
                    "labels": labels(alert),
                    "annotations": annotations(alert),
                    "startsAt": alert.starts_at,
                });
                if alert.state == AlertState::Resolved {
                    entry["endsAt"] = Value::String(ended_at(alert));
                }
                entry
            })
            .collect(),
    )
}

/// The environment of an exec target's command. NUL bytes, which an
/// environment cannot hold, are removed.
pub fn exec_environment(alert: &AlertRecord) -> Vec<(String, String)> {
    let clean = |value: &str| value.replace('\0', "");
    vec![
        ("ROSTER_ALERT_NAME".into(), clean(&alert.name)),
        ("ROSTER_ALERT_STATE".into(), state_name(alert.state).into()),
        (
            "ROSTER_ALERT_AGENT".into(),
            clean(alert.agent.as_deref().unwrap_or("")),
        ),
        ("ROSTER_ALERT_SEVERITY".into(), clean(&alert.severity)),
        ("ROSTER_ALERT_SUMMARY".into(), clean(&alert.summary)),
        ("ROSTER_ALERT_DETAILS".into(), clean(&alert.details)),
        ("ROSTER_ALERT_FINGERPRINT".into(), clean(&alert.fingerprint)),
        ("ROSTER_ALERT_STARTS_AT".into(), clean(&alert.starts_at)),
        (
            "ROSTER_ALERT_ENDS_AT".into(),
            clean(alert.ends_at.as_deref().unwrap_or("")),
        ),
        (
            "ROSTER_ALERT_JSON".into(),
            clean(file_line(alert).trim_end()),
        ),
    ]
}

#[cfg(test)]
mod tests;
