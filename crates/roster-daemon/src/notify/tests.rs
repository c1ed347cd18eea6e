//! Payload shapes, and delivery against real loopback receivers (and a real
//! Prometheus Alertmanager when it is installed).

use std::collections::HashMap;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

fn alert(state: AlertState) -> AlertRecord {
    AlertRecord {
        fingerprint: "web/memory_percent>85".into(),
        name: "MemoryHigh".into(),
        agent: Some("web".into()),
        severity: "warning".into(),
        state,
        summary: "web uses 91% of memory".into(),
        details: "pid 42: 900 MiB".into(),
        starts_at: "2026-11-29T10:00:00.000Z".into(),
        ends_at: match state {
            AlertState::Firing => None,
            AlertState::Resolved => Some("2026-11-29T10:05:00.000Z".into()),
        },
        labels: BTreeMap::from([
            ("metric".to_owned(), "memory_percent".to_owned()),
            ("rule-id".to_owned(), "1".to_owned()),
            ("alertname".to_owned(), "Forged".to_owned()),
            ("empty".to_owned(), String::new()),
        ]),
    }
}

#[test]
fn webhook_payload_has_alertmanager_webhook_shape() {
    let firing = webhook_payload(&alert(AlertState::Firing));
    assert_eq!(firing["version"], "4");
    assert_eq!(firing["status"], "firing");
    assert_eq!(firing["receiver"], "roster");
    assert_eq!(firing["externalURL"], "");
    assert_eq!(
        firing["groupKey"],
        "{}:{agent=\"web\", alertname=\"MemoryHigh\"}"
    );
    assert_eq!(
        firing["groupLabels"],
        json!({"agent": "web", "alertname": "MemoryHigh"})
    );
    let labels = json!({
        "alertname": "MemoryHigh",
        "agent": "web",
        "severity": "warning",
        "metric": "memory_percent",
        "rule_id": "1",
    });
    assert_eq!(firing["commonLabels"], labels);
    let annotations =
        json!({"summary": "web uses 91% of memory", "description": "pid 42: 900 MiB"});
    assert_eq!(firing["commonAnnotations"], annotations);
    let alerts = firing["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0],
        json!({
            "status": "firing",
            "labels": labels,
            "annotations": annotations,
            "startsAt": "2026-11-29T10:00:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "web/memory_percent>85",
        })
    );

    let resolved = webhook_payload(&alert(AlertState::Resolved));
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["endsAt"], "2026-11-29T10:05:00.000Z");

    let mut host = alert(AlertState::Firing);
    host.agent = None;
    host.details.clear();
    let host = webhook_payload(&host);
    assert!(host["commonLabels"].get("agent").is_none(), "{host}");
    assert!(host["commonAnnotations"].get("description").is_none());
    assert_eq!(host["groupKey"], "{}:{alertname=\"MemoryHigh\"}");
}

#[test]
fn alertmanager_payload_is_an_api_v2_array() {
    let pushed = alertmanager_payload(&[alert(AlertState::Firing), alert(AlertState::Resolved)]);
    let entries = pushed.as_array().expect("an array");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["labels"]["alertname"], "MemoryHigh");
    assert_eq!(entries[0]["labels"]["agent"], "web");
    assert_eq!(
        entries[0]["annotations"]["summary"],
        "web uses 91% of memory"
    );
    assert_eq!(entries[0]["startsAt"], "2026-11-29T10:00:00.000Z");
    assert!(
        entries[0].get("endsAt").is_none(),
        "a firing alert has no end"
    );
    assert!(entries[0].get("status").is_none(), "not part of the API");
    assert_eq!(entries[1]["endsAt"], "2026-11-29T10:05:00.000Z");
}

#[test]
fn exec_environment_carries_every_field() {
    let env: HashMap<String, String> = exec_environment(&alert(AlertState::Resolved))
        .into_iter()
        .collect();
    assert_eq!(env["ROSTER_ALERT_NAME"], "MemoryHigh");
    assert_eq!(env["ROSTER_ALERT_STATE"], "resolved");
    assert_eq!(env["ROSTER_ALERT_AGENT"], "web");
    assert_eq!(env["ROSTER_ALERT_SEVERITY"], "warning");
    assert_eq!(env["ROSTER_ALERT_SUMMARY"], "web uses 91% of memory");
    assert_eq!(env["ROSTER_ALERT_DETAILS"], "pid 42: 900 MiB");
    assert_eq!(env["ROSTER_ALERT_FINGERPRINT"], "web/memory_percent>85");
    assert_eq!(env["ROSTER_ALERT_STARTS_AT"], "2026-11-29T10:00:00.000Z");
    assert_eq!(env["ROSTER_ALERT_ENDS_AT"], "2026-11-29T10:05:00.000Z");
    let record: AlertRecord = serde_json::from_str(&env["ROSTER_ALERT_JSON"]).expect("json");
    assert_eq!(record, alert(AlertState::Resolved));
}

// ---- loopback receivers -------------------------------------------------

/// What a test receiver does with each request, in turn; `Ok` after the
/// script runs out.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

struct Received {
    path: String,
    body: Value,
    at: Instant,
}

/// A TCP server on loopback that records each POST and answers per
/// `script`. Returns its address and the recorded requests.
async fn receiver(script: Vec<Answer>) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let (record, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let answer = script.next().unwrap_or(Answer::Status(200));
            let record = record.clone();
            tokio::spawn(async move {
                let Some((path, body)) = read_request(&mut socket).await else {
                    return;
                };
                let _ = record.send(Received {
                    path,
                    body,
                    at: Instant::now(),
                });
                match answer {
                    Answer::Status(code) => {
                        let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nno");
                        let _ = socket.write_all(reply.as_bytes()).await;
                    }
                    Answer::Hang => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            });
        }
    });
    (address, received)
}

async fn read_request(socket: &mut TcpStream) -> Option<(String, Value)> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&data).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .and_then(|value| value.trim().parse().ok())?;
        if body.len() >= length {
            let path = head.split(' ').nth(1)?.to_owned();
            return Some((path, serde_json::from_str(&body[..length]).ok()?));
        }
    }
}

fn spec(target: NotifyTarget, timeout: Duration) -> NotifySpec {
    NotifySpec { target, timeout }
}

fn webhook(address: &str) -> NotifyTarget {
    NotifyTarget::Webhook(HttpTarget::parse(&format!("http://{address}/hook")).expect("url"))
}

/// An exec runner for tests, standing in for the daemon loop: std spawns
/// and waits (a test process has no loop reaping with `waitpid(-1)`).
fn test_runner() -> (
    impl Fn(ExecRequest) + Send + Sync + 'static,
    Arc<Mutex<Vec<u64>>>,
) {
    let kills = Arc::new(Mutex::new(Vec::new()));
    let pids: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let seen_kills = kills.clone();
    let runner = move |request: ExecRequest| match request {
        ExecRequest::Run {
            id,
            argv,
            cwd,
            env,
            reply,
        } => {
            let child = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .current_dir(cwd)
                .envs(env)
                .spawn();
            match child {
                Ok(mut child) => {
                    pids.lock().expect("lock").insert(id, child.id());
                    std::thread::spawn(move || {
                        let status = child.wait().expect("wait");
                        let _ = reply.send(if status.success() {
                            Ok(())
                        } else {
                            Err(format!("ended with {status}"))
                        });
                    });
                }
                Err(error) => {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
        }
        ExecRequest::Kill { id } => {
            seen_kills.lock().expect("lock").push(id);
            if let Some(pid) = pids.lock().expect("lock").get(&id) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    };
    (runner, kills)
}

fn reporter() -> (
    impl Fn(DeliveryReport) + Send + Sync + 'static,
    mpsc::UnboundedReceiver<DeliveryReport>,
) {
    let (sender, reports) = mpsc::unbounded_channel();
    (
        move |report| {
            let _ = sender.send(report);
        },
        reports,
    )
}

async fn next<T>(receiver: &mut mpsc::UnboundedReceiver<T>, within: Duration, what: &str) -> T {
    match tokio::time::timeout(within, receiver.recv()).await {
        Ok(Some(value)) => value,
        Ok(None) => panic!("{what}: the channel closed"),
        Err(_) => panic!("{what}: nothing within {within:?}"),
    }
}

const QUICK: Retry = Retry {
    attempts: 5,
    first_backoff: Duration::from_millis(200),
    give_up_after: Duration::from_secs(10),
    alertmanager_resend: ALERTMANAGER_RESEND,
};

#[tokio::test]
async fn delivers_to_webhook_file_and_exec() {
    let (address, mut posts) = receiver(Vec::new()).await;
    let directory = tempfile::tempdir().expect("tempdir");
    let file = directory.path().join("alerts.jsonl");
    let env_out = directory.path().join("env.txt");
    let exec = NotifyTarget::Exec {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "echo \"$ROSTER_ALERT_STATE $ROSTER_ALERT_AGENT $ROSTER_ALERT_NAME\" >> env.txt".into(),
        ],
        cwd: directory.path().to_path_buf(),
    };
    let second = Duration::from_secs(1);
    let (runner, _) = test_runner();
    let (report, mut reports) = reporter();
    let notifier = Notifier::start_with_retry(
        &Handle::current(),
        vec![
            spec(webhook(&address), second),
            spec(NotifyTarget::File(file.clone()), second),
            spec(exec, Duration::from_secs(5)),
        ],
        QUICK,
        runner,
        report,
    );
    notifier.send(alert(AlertState::Firing));
    notifier.send(alert(AlertState::Resolved));
    let first = next(&mut posts, Duration::from_secs(5), "the firing POST").await;
    assert_eq!(first.path, "/hook");
    assert_eq!(first.body["status"], "firing");
    assert_eq!(first.body["alerts"][0]["labels"]["agent"], "web");
    let second_post = next(&mut posts, Duration::from_secs(5), "the resolved POST").await;
    assert_eq!(second_post.body["status"], "resolved", "in order");
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        let report = next(&mut reports, Duration::from_secs(10), "six reports").await;
        assert_eq!(report.outcome, Ok(()), "{report:?}");
        assert_eq!(report.attempts, 1);
        outcomes.push((report.target, report.state));
    }
    assert_eq!(outcomes.len(), 6);
    let lines = std::fs::read_to_string(&file).expect("the file target's file");
    let records: Vec<AlertRecord> = lines
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON record per line"))
        .collect();
    assert_eq!(
        records,
        [alert(AlertState::Firing), alert(AlertState::Resolved)]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&env_out).expect("the command's output"),
        "firing web MemoryHigh\nresolved web MemoryHigh\n"
    );
}

#[tokio::test]
async fn retries_with_backoff_until_the_receiver_recovers() {
    let (address, mut posts) = receiver(vec![
        Answer::Status(500),
        Answer::Status(503),
        Answer::Status(200),
    ])
    .await;
    let (runner, _) = test_runner();
    let (report, mut reports) = reporter();
    let notifier = Notifier::start_with_retry(
        &Handle::current(),
        vec![spec(webhook(&address), Duration::from_secs(1))],
        QUICK,
        runner,
        report,
    );
    notifier.send(alert(AlertState::Firing));
    let report = next(&mut reports, Duration::from_secs(10), "the report").await;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!(report.attempts, 3);
    assert_eq!(report.fingerprint, "web/memory_percent>85");
    let times: Vec<Instant> = [
        next(&mut posts, Duration::from_secs(1), "post 1").await.at,
        next(&mut posts, Duration::from_secs(1), "post 2").await.at,
        next(&mut posts, Duration::from_secs(1), "post 3").await.at,
    ]
    .into();
    let first_wait = times[1] - times[0];
    let second_wait = times[2] - times[1];
    assert!(first_wait >= QUICK.first_backoff, "{first_wait:?}");
    assert!(
        second_wait >= QUICK.first_backoff * 2,
        "the backoff doubles: {first_wait:?} then {second_wait:?}"
    );
}

#[tokio::test]
async fn a_hung_target_is_cut_at_its_timeout_and_delays_no_other() {
    let (hung, _hung_posts) = receiver(vec![Answer::Hang; 10]).await;
    let (good, mut good_posts) = receiver(Vec::new()).await;
    let (runner, _) = test_runner();
    let (report, mut reports) = reporter();
    // Generous, so a loaded machine does not make the good target look late.
    let timeout = Duration::from_secs(1);
    let retry = Retry {
        attempts: 2,
        first_backoff: Duration::from_millis(100),
        give_up_after: Duration::from_secs(10),
        ..QUICK
    };
    let notifier = Notifier::start_with_retry(
        &Handle::current(),
        vec![spec(webhook(&hung), timeout), spec(webhook(&good), timeout)],
        retry,
        runner,
        report,
    );
    let sent = Instant::now();
    notifier.send(alert(AlertState::Firing));
    assert!(
        sent.elapsed() < Duration::from_millis(50),
        "send never waits"
    );
    next(&mut good_posts, Duration::from_secs(5), "the good receiver").await;
    assert!(
        sent.elapsed() < timeout,
        "the good target waited for the hung one: {:?}",
        sent.elapsed()
    );
    let delivered = next(&mut reports, Duration::from_secs(5), "the good report").await;
    assert_eq!(delivered.target, format!("webhook http://{good}/hook"));
    assert_eq!(delivered.outcome, Ok(()));
    let failed = next(&mut reports, Duration::from_secs(5), "the hung report").await;
    assert_eq!(failed.target, format!("webhook http://{hung}/hook"));
    assert_eq!(failed.attempts, 2);
    let error = failed.outcome.expect_err("the hung target fails");
    assert!(error.contains("no answer within 1s"), "{error}");
    let took = sent.elapsed();
    assert!(
        took >= timeout * 2 && took < Duration::from_secs(5),
        "two attempts each cut at the timeout: {took:?}"
    );
}

#[tokio::test]
async fn a_dead_target_reports_failure() {
    // A port nobody listens on: bind one, then close it.
    let address = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("address").to_string()
    };
    let (runner, _) = test_runner();
    let (report, mut reports) = reporter();
    let retry = Retry {
        attempts: 3,
        first_backoff: Duration::from_millis(50),
        give_up_after: Duration::from_secs(10),
        ..QUICK
    };
    let notifier = Notifier::start_with_retry(
        &Handle::current(),
        vec![spec(webhook(&address), Duration::from_secs(1))],
        retry,
        runner,
        report,
    );
    notifier.send(alert(AlertState::Firing));
    let report = next(&mut reports, Duration::from_secs(5), "the failure").await;
    assert_eq!(report.attempts, 3);
    assert_eq!(report.state, AlertState::Firing);
    assert_eq!(report.agent.as_deref(), Some("web"));
    let error = report.outcome.expect_err("nobody listens");
    assert!(
        error.contains("connect") && error.contains("after 3 attempts"),
        "{error}"
    );
}

#[tokio::test]
async fn a_file_target_never_writes_through_a_symlink() {
    let directory = tempfile::tempdir().expect("tempdir");
    let victim = directory.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write");
    let link = directory.path().join("alerts.jsonl");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    let (runner, _) = test_runner();
    let (report, mut reports) = reporter();
    let notifier = Notifier::start_with_retry(
        &Handle::current(),
        vec![spec(NotifyTarget::File(link), Duration::from_secs(1))],
        Retry {
            attempts: 1,
            ..QUICK
        },
        runner,
        report,
    );
    notifier.send(alert(AlertState::Firing));
    let report = next(&mut reports, Duration::from_secs(5), "the refusal").await;
    let error = report.outcome.expect_err("a link is refused");
    assert!(error.contains("symbolic link"), "{error}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        "precious\n"
    );
}

#[tokio::test]
async fn a_hung_command_is_killed_at_the_timeout_and_failures_are_reported() {
    let directory = tempfile::tempdir().expect("tempdir");
    let (runner, kills) = test_runner();
    let (report, mut reports) = reporter();
    let retry = Retry {
        attempts: 1,
        ..QUICK
    };
    let notifier = Notifier::start_with_retry(
        &Handle::current(),
        vec![
            spec(
                NotifyTarget::Exec {
                    argv: vec!["sleep".into(), "30".into()],
                    cwd: directory.path().to_path_buf(),
                },
                Duration::from_millis(300),
            ),
            spec(
                NotifyTarget::Exec {
                    argv: vec!["false".into()],
                    cwd: directory.path().to_path_buf(),
                },
                Duration::from_secs(5),
            ),
        ],
        retry,
        runner,
        report,
    );
    notifier.send(alert(AlertState::Firing));
    let mut errors = Vec::new();
    for _ in 0..2 {
        let report = next(&mut reports, Duration::from_secs(5), "two failures").await;
        errors.push(report.outcome.expect_err("both fail"));
    }
    errors.sort();
    assert!(errors[0].contains("exec false: ended with"), "{errors:?}");
    assert!(
        errors[1].contains("exec sleep 30: still running after 300ms; killed"),
        "{errors:?}"
    );
    assert_eq!(kills.lock().expect("lock").len(), 1, "one kill asked for");
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_and_says_so() {
    let (hung, _posts) = receiver(vec![Answer::Hang; 5]).await;
    let (runner, _) = test_runner();
    let (report, mut reports) = reporter();
    let notifier = Notifier::start_with_retry(
        &Handle::current(),
        vec![spec(webhook(&hung), Duration::from_secs(5))],
        QUICK,
        runner,
        report,
    );
    for number in 0..QUEUE_CAPACITY + 3 {
        let mut record = alert(AlertState::Firing);
        record.fingerprint = format!("alert-{number}");
        notifier.send(record);
    }
    // The task holds the first (hung) one, or not yet: 2 or 3 are dropped,
    // the oldest first.
    let dropped = next(&mut reports, Duration::from_secs(5), "a drop").await;
    assert_eq!(dropped.attempts, 0);
    assert!(
        matches!(dropped.fingerprint.as_str(), "alert-0" | "alert-1"),
        "{dropped:?}"
    );
    let error = dropped.outcome.expect_err("dropped");
    assert!(
        error.starts_with("dropped: 1000 alerts were waiting"),
        "{error}"
    );
}

#[tokio::test]
async fn reconfigure_keeps_unchanged_targets_and_stops_removed_ones() {
    let (first, mut first_posts) = receiver(Vec::new()).await;
    let (second, mut second_posts) = receiver(Vec::new()).await;
    let (runner, _) = test_runner();
    let (report, mut reports) = reporter();
    let timeout = Duration::from_secs(1);
    let mut notifier = Notifier::start_with_retry(
        &Handle::current(),
        vec![spec(webhook(&first), timeout)],
        QUICK,
        runner,
        report,
    );
    notifier.reconfigure(vec![spec(webhook(&second), timeout)]);
    assert_eq!(
        notifier.targets(),
        [format!("webhook http://{second}/hook")]
    );
    notifier.send(alert(AlertState::Firing));
    next(&mut second_posts, Duration::from_secs(5), "the new target").await;
    let report = next(&mut reports, Duration::from_secs(5), "its report").await;
    assert_eq!(report.target, format!("webhook http://{second}/hook"));
    assert!(
        first_posts.try_recv().is_err(),
        "a removed target gets nothing"
    );
}

#[tokio::test]
async fn firing_alerts_are_pushed_again_to_an_alertmanager_until_resolved() {
    let (address, mut posts) = receiver(Vec::new()).await;
    let (runner, _) = test_runner();
    let (report, mut reports) = reporter();
    let every = Duration::from_millis(300);
    let target =
        NotifyTarget::Alertmanager(HttpTarget::parse(&format!("http://{address}/")).expect("url"));
    let notifier = Notifier::start_with_retry(
        &Handle::current(),
        vec![spec(target, Duration::from_secs(1))],
        Retry {
            alertmanager_resend: every,
            ..QUICK
        },
        runner,
        report,
    );
    notifier.send(alert(AlertState::Firing));
    let first = next(&mut posts, Duration::from_secs(5), "the push").await;
    assert_eq!(first.path, "/api/v2/alerts");
    assert_eq!(first.body[0]["labels"]["alertname"], "MemoryHigh");
    assert_eq!(
        next(&mut reports, Duration::from_secs(5), "its report")
            .await
            .outcome,
        Ok(())
    );
    for again in 1..=2 {
        let push = next(&mut posts, Duration::from_secs(5), "a push again").await;
        assert_eq!(
            push.body, first.body,
            "push {again} is the same firing alert"
        );
        assert!(push.body[0].get("endsAt").is_none());
    }
    notifier.send(alert(AlertState::Resolved));
    // A push again may have been on its way; then comes the resolution,
    // and nothing more.
    let resolution = loop {
        let push = next(&mut posts, Duration::from_secs(5), "the resolution").await;
        if push.body[0].get("endsAt").is_some() {
            break push;
        }
    };
    assert_eq!(resolution.body[0]["endsAt"], "2026-11-29T10:05:00.000Z");
    assert!(
        tokio::time::timeout(every * 3, posts.recv()).await.is_err(),
        "a resolved alert is not pushed again"
    );
}

// ---- a real Prometheus Alertmanager -------------------------------------

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// Kills the Alertmanager when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` (HTTP/1.0, so the answer is neither chunked nor kept alive):
/// (status, body).
async fn get(address: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let status = crate::probe::status_code(&answer)?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((status, body.to_owned()))
}

async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_real_alertmanager_shows_the_alert_then_its_resolution() {
    if !Path::new(ALERTMANAGER).exists() {
        eprintln!("skipped: {ALERTMANAGER} is not installed (Debian package prometheus-alertmanager; .ci/run installs it)");
        return;
    }
    let directory = tempfile::tempdir().expect("tempdir");
    let config = directory.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
    )
    .expect("write the config");
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("address").port()
    };
    let address = format!("127.0.0.1:{port}");
    let _alertmanager = Running(
        std::process::Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                directory.path().join("data").display()
            ))
            .arg("--cluster.listen-address=")
            .arg(format!("--web.listen-address={address}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start prometheus-alertmanager"),
    );
    wait_for(
        "the Alertmanager to be ready",
        Duration::from_secs(10),
        || {
            let address = address.clone();
            async move {
                get(&address, "/-/ready")
                    .await
                    .filter(|(status, _)| *status == 200)
            }
        },
    )
    .await;

    let (runner, _) = test_runner();
    let (report, mut reports) = reporter();
    let target =
        NotifyTarget::Alertmanager(HttpTarget::parse(&format!("http://{address}")).expect("url"));
    let notifier = Notifier::start_with_retry(
        &Handle::current(),
        vec![spec(target, Duration::from_secs(2))],
        QUICK,
        runner,
        report,
    );
    let now = unix_millis();
    let mut firing = alert(AlertState::Firing);
    firing.starts_at = rfc3339_millis(now - 1000);
    notifier.send(firing.clone());
    let delivered = next(&mut reports, Duration::from_secs(5), "the push").await;
    assert_eq!(delivered.outcome, Ok(()), "{delivered:?}");
    let shown = wait_for(
        "the alert in GET /api/v2/alerts",
        Duration::from_secs(5),
        || {
            let address = address.clone();
            async move {
                let (_, body) = get(&address, "/api/v2/alerts").await?;
                let alerts: Value = serde_json::from_str(&body).ok()?;
                alerts
                    .as_array()?
                    .iter()
                    .find(|alert| alert["labels"]["alertname"] == "MemoryHigh")
                    .cloned()
            }
        },
    )
    .await;
    assert_eq!(shown["labels"]["agent"], "web");
    assert_eq!(shown["labels"]["severity"], "warning");
    assert_eq!(shown["annotations"]["summary"], "web uses 91% of memory");
    assert_eq!(shown["status"]["state"], "active");

    let mut resolved = firing;
    resolved.state = AlertState::Resolved;
    resolved.ends_at = Some(rfc3339_millis(unix_millis()));
    notifier.send(resolved);
    let delivered = next(&mut reports, Duration::from_secs(5), "the resolution").await;
    assert_eq!(delivered.outcome, Ok(()), "{delivered:?}");
    wait_for(
        "the alert to leave GET /api/v2/alerts?active=true",
        Duration::from_secs(5),
        || {
            let address = address.clone();
            async move {
                let (_, body) = get(&address, "/api/v2/alerts?active=true").await?;
                let alerts: Value = serde_json::from_str(&body).ok()?;
                let still = alerts
                    .as_array()?
                    .iter()
                    .any(|alert| alert["labels"]["alertname"] == "MemoryHigh");
                (!still).then_some(())
            }
        },
    )
    .await;
}
