//! The pump: reads an agent's pipe (stdout and stderr share it, so their
//! order is kept) and feeds the writer. A writer slower than the agent fills
//! the pipe, and the agent blocks in write(): backpressure, not truncation.

use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use roster_core::LogConfig;

use super::writer::{LogWriter, WriteReport};
use crate::clock::unix_millis;

/// A problem the pump reports to the daemon loop, to journal.
#[derive(Debug)]
pub struct LogTrouble {
    /// The agent.
    pub agent: String,
    /// Lines dropped by this batch.
    pub dropped_lines: u64,
    /// Why.
    pub error: String,
}

/// Reads `pipe` until every writer has closed it.
pub async fn pump(
    agent: String,
    pipe: OwnedFd,
    mut writer: LogWriter,
    mut config: watch::Receiver<LogConfig>,
    trouble: mpsc::UnboundedSender<LogTrouble>,
) {
    if let Err(error) = set_nonblocking(&pipe) {
        tracing::error!(%agent, "log pipe: {error}");
    }
    // SAFETY: the OwnedFd is moved into the AsyncFd, which owns it until the
    // pump ends; nothing else closes or replaces it meanwhile.
    let pipe = match unsafe { AsyncFd::register(pipe) } {
        Ok(pipe) => pipe,
        Err(error) => {
            tracing::error!(%agent, "log pipe cannot be polled: {error}");
            return;
        }
    };
    let mut buffer = vec![0u8; 256 * 1024];
    let report = |writer_report: WriteReport| {
        if let Some(error) = writer_report.error {
            let _ = trouble.send(LogTrouble {
                agent: agent.clone(),
                dropped_lines: writer_report.dropped_lines,
                error,
            });
        }
    };
    loop {
        let mut guard = match pipe.readable().await {
            Ok(guard) => guard,
            Err(error) => {
                tracing::error!(%agent, "log pipe: {error}");
                break;
            }
        };
        let read = guard.try_io(|inner| {
            nix::unistd::read(inner.get_ref(), &mut buffer).map_err(std::io::Error::from)
        });
        match read {
            Ok(Ok(0)) => break,
            Ok(Ok(length)) => {
                if config.has_changed().unwrap_or(false) {
                    writer.set_config(config.borrow_and_update().clone());
                }
                let chunk = &buffer[..length];
                // Rotating waits for the previous compression; don't hold a
                // runtime worker hostage while it does.
                let result = if writer.is_compressing() {
                    tokio::task::block_in_place(|| writer.write(chunk, unix_millis()))
                } else {
                    writer.write(chunk, unix_millis())
                };
                report(result);
            }
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(error)) => {
                tracing::error!(%agent, "reading log pipe: {error}");
                break;
            }
            Err(_would_block) => {}
        }
    }
    let result = tokio::task::block_in_place(|| writer.finish(unix_millis()));
    report(result);
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}
