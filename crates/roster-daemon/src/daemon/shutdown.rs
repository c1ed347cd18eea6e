//! Stopping: `roster down`, SIGTERM/SIGINT and a lost home begin it (every
//! agent is stopped gracefully); once they all stopped, the strays are
//! stopped and the journal closed.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use roster_core::api::EventKind;
use roster_core::Supervisor;

use super::context::Context;
use super::startup;
use crate::journal::{Journal, Row};
use crate::spawn;

/// Whether the daemon is stopping, who waits for it, and why its home was
/// lost if it was.
#[derive(Default)]
pub(super) struct Shutdown {
    stopping: bool,
    /// `roster down` requests, answered once the daemon is done.
    replies: Vec<oneshot::Sender<()>>,
    /// Why the home was lost, once it was.
    home_lost: Option<String>,
}

impl Shutdown {
    /// Whether the daemon is stopping.
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Stops every agent (again: a later request stops what an earlier
    /// one's apply started meanwhile), and says so once.
    pub(super) fn begin(&mut self, why: &str, journal: &Journal, supervisor: &mut Supervisor) {
        if !self.stopping {
            self.stopping = true;
            startup::notify_systemd_stopping();
            journal.record(Row::now(
                None,
                EventKind::DaemonStopping,
                None,
                format!("stopping every agent ({why})"),
            ));
        }
        supervisor.handle_stop_all(Instant::now());
    }

    /// `roster down`: answered when the daemon is done.
    pub(super) fn wait(&mut self, reply: oneshot::Sender<()>) {
        self.replies.push(reply);
    }

    /// The home was deleted or replaced: nothing more can be kept in it,
    /// and nobody can reach this daemon. Says so where it still can (its
    /// log, the journal's open file) and stops every agent gracefully.
    pub(super) fn lose_home(
        &mut self,
        reason: String,
        context: &Context,
        supervisor: &mut Supervisor,
    ) {
        let message = format!(
            "the home {} {reason}; stopping every agent and exiting (nothing more is written to that path)",
            context.home.root().display()
        );
        tracing::error!("{message}");
        context
            .journal
            .record(Row::now(None, EventKind::HomeLost, None, message.clone()));
        self.home_lost = Some(reason);
        self.begin("its home is gone", &context.journal, supervisor);
    }

    /// Why the home was lost, if it was (once).
    pub(super) fn take_home_lost(&mut self) -> Option<String> {
        self.home_lost.take()
    }

    /// Answers everyone who waited for the daemon to be done.
    pub(super) fn answer(&mut self) {
        for reply in self.replies.drain(..) {
            let _ = reply.send(());
        }
    }
}

/// After every agent stopped: SIGTERM to the strays (`all_strays` finds
/// them), 2 s for them to go, then SIGKILL.
pub(super) fn stop_strays(journal: &Journal, all_strays: impl Fn() -> Vec<u32>) {
    let strays = all_strays();
    if strays.is_empty() {
        return;
    }
    for pid in &strays {
        spawn::signal_process(*pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && !all_strays().is_empty() {
        while spawn::reap_one().is_some() {}
        std::thread::sleep(Duration::from_millis(10));
    }
    for pid in all_strays() {
        spawn::signal_process(pid, libc::SIGKILL);
    }
    journal.record(Row::now(
        None,
        EventKind::StraysStopped,
        None,
        format!("{} stray process(es) stopped", strays.len()),
    ));
}

/// The last row, and the journal closed.
pub(super) fn close_journal(journal: &mut Journal) {
    journal.record(Row::now(
        None,
        EventKind::DaemonStopped,
        Some(std::process::id()),
        "daemon stopped",
    ));
    journal.close();
}
