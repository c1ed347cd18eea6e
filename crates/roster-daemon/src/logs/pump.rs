//! The pump: reads one run's pipe and feeds one of the agent's writers.
//! Merged, stdout and stderr share the pipe, so their order is kept; with
//! `stderr = "separate"`, stderr has a pipe, pump and writer of its own, so
//! each stream keeps its own order (not their order between each other). A writer slower than the
//! agent fills the pipe, and the agent blocks in write(): backpressure, not
//! truncation.
//!
//! Each run of an agent gets its own pipe and pump, so a dead run's
//! unfinished last line ends at its EOF instead of being joined to the next
//! run's first line. A pump first waits (briefly) for the previous run's
//! pump, so one agent's runs reach the file in order.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use roster_core::LogConfig;

use super::writer::{LogWriter, WriteReport};
use crate::clock::unix_millis;

pub use crate::inbox::LogTrouble;

/// What a pump needs besides its pipe.
pub struct PumpContext {
    /// The agent, for reports.
    pub agent: String,
    /// The agent's writer, shared by its runs' pumps.
    pub writer: Arc<Mutex<LogWriter>>,
    /// Rotation settings, as applied.
    pub config: watch::Receiver<LogConfig>,
    /// Where to report dropped lines.
    pub trouble: crate::inbox::Inbox,
    /// The previous run's pump.
    pub previous: Option<JoinHandle<()>>,
}

/// How long a new run's output waits for the previous run's pump to drain.
/// Only a descendant that escaped every kill could hold the old pipe open
/// longer; past this the two are written side by side.
const PREVIOUS_RUN_GRACE: Duration = Duration::from_secs(1);

thread_local! {
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 1024 * 1024]);
}

/// Reads `pipe` until every writer has closed it.
pub async fn pump(pipe: OwnedFd, mut context: PumpContext) {
    let agent = context.agent.clone();
    if let Some(previous) = context.previous.take() {
        let _ = tokio::time::timeout(PREVIOUS_RUN_GRACE, previous).await;
    }
    if let Err(error) = set_nonblocking(&pipe) {
        tracing::error!(%agent, "log pipe: {error}");
    }
    let pipe = match crate::sys::register_pipe(pipe) {
        Ok(pipe) => pipe,
        Err(error) => {
            tracing::error!(%agent, "log pipe cannot be polled: {error}");
            return;
        }
    };
    let mut pending = Vec::new();
    loop {
        let mut guard = match pipe.readable().await {
            Ok(guard) => guard,
            Err(error) => {
                tracing::error!(%agent, "log pipe: {error}");
                break;
            }
        };
        // Read and write without an await in between, so one buffer per
        // worker thread serves every agent: a thousand idle agents do not
        // each hold a 128 KiB buffer.
        let read = READ_BUFFER.with_borrow_mut(|buffer| {
            let result = guard.try_io(|inner| {
                nix::unistd::read(inner.get_ref(), buffer).map_err(std::io::Error::from)
            });
            if let Ok(Ok(length)) = result {
                if length > 0 {
                    let chunk = &buffer[..length];
                    let report = with_writer(&mut context, |writer| {
                        writer.write(&mut pending, chunk, unix_millis())
                    });
                    send(&context, report);
                }
            }
            result
        });
        match read {
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(error)) => {
                tracing::error!(%agent, "reading log pipe: {error}");
                break;
            }
            Err(_would_block) => {}
        }
    }
    let report = with_writer(&mut context, |writer| {
        writer.end_source(&mut pending, unix_millis())
    });
    send(&context, report);
}

fn with_writer(
    context: &mut PumpContext,
    work: impl FnOnce(&mut LogWriter) -> WriteReport,
) -> WriteReport {
    let config = context
        .config
        .has_changed()
        .unwrap_or(false)
        .then(|| context.config.borrow_and_update().clone());
    let mut writer = context
        .writer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let work = |writer: &mut LogWriter| {
        if let Some(config) = config {
            // A lower `keep` removes files, after any compression ends.
            writer.set_config(config);
        }
        work(writer)
    };
    // Rotating waits for the previous compression; don't hold a runtime
    // worker hostage while it does.
    if writer.is_compressing() {
        tokio::task::block_in_place(|| work(&mut writer))
    } else {
        work(&mut writer)
    }
}

fn send(context: &PumpContext, mut report: WriteReport) {
    if let Some(rules) = report.matches_pending.take() {
        if let Ok(agent) = roster_core::AgentName::new(&context.agent) {
            context
                .trouble
                .send(crate::inbox::Input::LogMatches { agent, rules });
        }
    }
    if let Some(error) = report.error {
        context
            .trouble
            .send(crate::inbox::Input::Trouble(LogTrouble {
                agent: context.agent.clone(),
                dropped_lines: report.dropped_lines,
                error,
            }));
    }
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}
