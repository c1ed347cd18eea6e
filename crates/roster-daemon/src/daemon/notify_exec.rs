//! The loop's side of alert delivery: it runs exec notifiers' commands (the
//! loop is the only caller of `waitpid`, so nobody else may start a child)
//! and journals deliveries: each `notified`, and failures as
//! `roster_core::delivery_log` summarises them (`notify_failed`,
//! `notify_recovered`, at most a row or two per target a minute). Deciding
//! when an alert fires is not done here, and neither is delivering it
//! (`crate::notify`).
//!
//! What the loop does for an exec target, exactly:
//! 1. `Input::NotifyExec(ExecRequest::Run { id, .. })`: spawn the command
//!    in its own process group (`spawn::spawn_notifier`, output to
//!    /dev/null, marked `ROSTER_HELPER=notify:ID`) and keep
//!    `pid → (id, reply)` ([`NotifyCommands`]); a spawn failure is
//!    answered at once.
//! 2. On reaping one of these pids: answer its reply, `Ok` on exit 0.
//!    Whatever the command left running is killed (`leftovers.rs`).
//! 3. `Input::NotifyExec(ExecRequest::Kill { id })` (the notifier's timeout
//!    passed): SIGKILL the process group of that run, if it still runs; the
//!    reap follows as in 2.
//! 4. On the way out (`finish`): SIGKILL every such group still running.
//!
//! These pids are excluded from the strays of agents, like exec probes.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use roster_core::api::EventKind;
use roster_core::delivery_log::{DeliveryLog, Failures, Note, NoteKind, Outcome};
use roster_core::ExitStatus;

use super::leftovers;
use crate::inbox::{Inbox, Input};
use crate::journal::{Journal, Row};
use crate::metrics::Metrics;
use crate::notify::{DeliveryReport, ExecRequest, Notifier};
use crate::spawn;

/// Exec notifiers' commands running: pid to (run id, the reply).
#[derive(Default)]
pub(super) struct NotifyCommands {
    running: HashMap<u32, (u64, oneshot::Sender<Result<(), String>>)>,
}

impl NotifyCommands {
    /// Runs or kills, as asked; `home` is the `ROSTER_HOME` commands see.
    pub(super) fn handle(&mut self, request: ExecRequest, home: &Path) {
        match request {
            ExecRequest::Run {
                id,
                argv,
                cwd,
                env,
                reply,
            } => {
                let spawned = std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .map_err(|error| format!("opening /dev/null: {error}"))
                    .and_then(|null| {
                        let null = OwnedFd::from(null);
                        let run = leftovers::notify_run(id);
                        spawn::spawn_notifier(&argv, &cwd, &env, home, &null, Some(&run))
                    });
                match spawned {
                    Ok(pid) => {
                        self.running.insert(pid, (id, reply));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
            ExecRequest::Kill { id } => {
                for (pid, (run, _)) in &self.running {
                    if *run == id {
                        let _ = spawn::signal_group(*pid, libc::SIGKILL);
                    }
                }
            }
        }
    }

    /// True when `pid` was an exec notifier's command (its reply is then
    /// answered).
    pub(super) fn reaped(&mut self, pid: u32, status: ExitStatus) -> bool {
        let Some((_, reply)) = self.running.remove(&pid) else {
            return false;
        };
        let result = if status.is_success() {
            Ok(())
        } else {
            Err(format!("ended with {status}"))
        };
        // The notifier may have given up on it (timeout): nobody listens.
        let _ = reply.send(result);
        true
    }

    /// Whether `pid` is one of these commands.
    pub(super) fn contains(&self, pid: u32) -> bool {
        self.running.contains_key(&pid)
    }

    /// The runs going on, as their helper markers name them.
    pub(super) fn running_runs(&self) -> impl Iterator<Item = String> + '_ {
        self.running
            .values()
            .map(|(run, _)| leftovers::notify_run(*run))
    }

    /// On the way out: no notifier command outlives the daemon.
    pub(super) fn kill_all(&self) {
        for pid in self.running.keys() {
            let _ = spawn::signal_group(*pid, libc::SIGKILL);
        }
    }
}

/// The daemon's notifier, with no target until a config is applied: exec
/// runs and delivery reports go to the loop through the inbox.
pub(super) fn start_notifier(runtime: &tokio::runtime::Handle, inbox: &Inbox) -> Notifier {
    let exec_inbox = inbox.clone();
    let report_inbox = inbox.clone();
    Notifier::start(
        runtime,
        Vec::new(),
        // When the loop is gone the request, and its reply, are dropped:
        // the notifier then reports the command as not run.
        move |request| {
            exec_inbox.send(Input::NotifyExec(request));
        },
        move |report| {
            report_inbox.send(Input::Notified(report));
        },
    )
}

/// A delivery's final outcome: a delivery is journaled (`notified`); a
/// failure, or an alert dropped from a full queue, is counted, and
/// journaled as the delivery log decides.
pub(super) fn journal_delivery(
    deliveries: &mut DeliveryLog,
    report: DeliveryReport,
    journal: &Journal,
    metrics: &mut Metrics,
) {
    let state = match report.state {
        roster_core::api::AlertState::Firing => "firing",
        roster_core::api::AlertState::Resolved => "resolved",
    };
    let alert = format!("{} {state} ({})", report.name, report.fingerprint);
    let outcome = match &report.outcome {
        Ok(()) => {
            journal.record(Row::now(
                report.agent.as_deref(),
                EventKind::Notified,
                None,
                format!("{alert} delivered to {}", report.target),
            ));
            Outcome::Delivered
        }
        // No attempt: it was dropped from the target's full queue.
        Err(error) if report.attempts == 0 => Outcome::Dropped(error),
        Err(error) => Outcome::Failed(error),
    };
    if outcome != Outcome::Delivered {
        // roster_notify_failures_total changed.
        metrics.mark_changed();
    }
    deliveries.handle_outcome(
        Instant::now(),
        &report.target,
        (&alert, report.agent.as_deref()),
        outcome,
    );
    journal_delivery_notes(deliveries, journal);
}

/// Journals what the delivery log has to say (and logs it: the daemon's
/// log gets no more than the journal).
pub(super) fn journal_delivery_notes(deliveries: &mut DeliveryLog, journal: &Journal) {
    while let Some(note) = deliveries.poll_note() {
        let (kind, agent, detail) = delivery_note(&note);
        tracing::warn!(target_ = %note.target, "{detail}");
        journal.record(Row::now(agent.as_deref(), kind, None, detail));
    }
}

/// A delivery note as a journal row: (kind, agent, detail). A single
/// failure reads as before, under its alert's agent; a summary names no
/// agent (its alerts may be anyone's).
fn delivery_note(note: &Note) -> (EventKind, Option<String>, String) {
    let target = &note.target;
    let counted = |failures: &Failures, over: Option<Duration>| {
        let since = match over {
            Some(over) => format!("in the last {}s", over.as_secs()),
            None => "so far".to_owned(),
        };
        format!(
            "{} alert event(s) not delivered to {target} {since} ({} failed, {} dropped \
             from the full queue); last: {}: {}",
            failures.count(),
            failures.failed,
            failures.dropped,
            failures.last_alert,
            failures.last_error
        )
    };
    match &note.kind {
        NoteKind::Failed {
            failures,
            over,
            delivering,
        } => {
            if failures.count() == 1 && !delivering {
                let detail = format!(
                    "{} not delivered to {target}: {}",
                    failures.last_alert, failures.last_error
                );
                return (EventKind::NotifyFailed, failures.last_agent.clone(), detail);
            }
            let mut detail = counted(failures, *over);
            detail.push_str(if *delivering {
                "; it delivers between failures"
            } else {
                "; still failing"
            });
            (EventKind::NotifyFailed, None, detail)
        }
        NoteKind::Recovered { failures, over } => {
            let mut detail = format!("{target} delivers again");
            if failures.count() > 0 {
                detail.push_str(&format!("; {}", counted(failures, *over)));
            }
            (EventKind::NotifyRecovered, None, detail)
        }
    }
}

#[cfg(test)]
mod tests {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::Pid;

    use super::*;

    /// Waits for one of our own children (by pid: other tests' children
    /// must keep their statuses), as the loop's reaper would.
    fn reap(pid: u32) -> ExitStatus {
        match waitpid(Pid::from_raw(pid as i32), None).expect("waitpid") {
            WaitStatus::Exited(_, code) => ExitStatus::Code(code),
            WaitStatus::Signaled(_, signal, _) => ExitStatus::Signal(signal as i32),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn run(
        commands: &mut NotifyCommands,
        id: u64,
        argv: &[&str],
        cwd: &Path,
    ) -> oneshot::Receiver<Result<(), String>> {
        let (reply, answer) = oneshot::channel();
        commands.handle(
            ExecRequest::Run {
                id,
                argv: argv.iter().map(|word| word.to_string()).collect(),
                cwd: cwd.to_path_buf(),
                env: vec![("ROSTER_ALERT_NAME".into(), "MemoryHigh".into())],
                reply,
            },
            Path::new("/var/lib/roster-test-home"),
        );
        answer
    }

    fn only_pid(commands: &NotifyCommands) -> u32 {
        let pids: Vec<u32> = commands.running.keys().copied().collect();
        assert_eq!(pids.len(), 1, "{pids:?}");
        pids[0]
    }

    #[test]
    fn delivery_notes_read_as_rows() {
        let failures = |failed, dropped| Failures {
            failed,
            dropped,
            last_error: "connect: refused".into(),
            last_alert: "MemoryHigh firing (web/watch0)".into(),
            last_agent: Some("web".into()),
        };
        let note = |kind| Note {
            target: "webhook http://127.0.0.1:1/".into(),
            kind,
        };
        assert_eq!(
            delivery_note(&note(NoteKind::Failed {
                failures: failures(1, 0),
                over: None,
                delivering: false,
            })),
            (
                EventKind::NotifyFailed,
                Some("web".into()),
                "MemoryHigh firing (web/watch0) not delivered to webhook http://127.0.0.1:1/: \
                 connect: refused"
                    .into()
            )
        );
        assert_eq!(
            delivery_note(&note(NoteKind::Failed {
                failures: failures(3, 997),
                over: Some(Duration::from_secs(60)),
                delivering: false,
            })),
            (
                EventKind::NotifyFailed,
                None,
                "1000 alert event(s) not delivered to webhook http://127.0.0.1:1/ in the last \
                 60s (3 failed, 997 dropped from the full queue); last: MemoryHigh firing \
                 (web/watch0): connect: refused; still failing"
                    .into()
            )
        );
        let (kind, agent, detail) = delivery_note(&note(NoteKind::Recovered {
            failures: failures(0, 0),
            over: Some(Duration::from_secs(5)),
        }));
        assert_eq!(kind, EventKind::NotifyRecovered);
        assert_eq!(agent, None);
        assert_eq!(detail, "webhook http://127.0.0.1:1/ delivers again");
    }

    #[test]
    fn runs_reaps_and_kills_notifier_commands() {
        let directory = tempfile::tempdir().expect("tempdir");
        let mut commands = NotifyCommands::default();

        // Run: the alert is in the environment, in the config's directory,
        // and the reap answers the reply.
        let mut answer = run(
            &mut commands,
            1,
            &[
                "sh",
                "-c",
                "echo \"$ROSTER_ALERT_NAME $ROSTER_HOME ${ROSTER_AGENT-none} $ROSTER_HELPER\" > out.txt",
            ],
            directory.path(),
        );
        let pid = only_pid(&commands);
        assert!(commands.contains(pid));
        assert!(answer.try_recv().is_err(), "no answer before the reap");
        let status = reap(pid);
        assert!(commands.reaped(pid, status));
        assert_eq!(answer.try_recv(), Ok(Ok(())));
        assert!(!commands.contains(pid));
        assert!(!commands.reaped(pid, status), "answered once");
        assert_eq!(
            std::fs::read_to_string(directory.path().join("out.txt")).expect("output"),
            "MemoryHigh /var/lib/roster-test-home none notify:1\n"
        );

        // Kill: the notifier's timeout passed.
        let mut answer = run(&mut commands, 2, &["sleep", "30"], directory.path());
        let pid = only_pid(&commands);
        commands.handle(ExecRequest::Kill { id: 3 }, Path::new("/"));
        commands.handle(ExecRequest::Kill { id: 2 }, Path::new("/"));
        let status = reap(pid);
        assert_eq!(status, ExitStatus::Signal(libc::SIGKILL));
        assert!(commands.reaped(pid, status));
        let error = answer.try_recv().expect("answered").expect_err("killed");
        assert!(error.starts_with("ended with"), "{error}");

        // A command that cannot start is answered at once.
        let mut answer = run(
            &mut commands,
            4,
            &["no-such-notifier-command"],
            directory.path(),
        );
        assert!(commands.running.is_empty());
        let error = answer.try_recv().expect("answered").expect_err("not found");
        assert!(error.contains("not found"), "{error}");
    }
}
