//! One fleet deploy or rollback at a time: a directory
//! `/var/lib/roster/fleet-deploy.lock` on every targeted host (`mkdir` is
//! atomic), with a file inside saying who holds it (user@client, pid) and
//! since when. Taken on every host before anything changes, released when
//! the [`Lock`] is dropped (at the end, on error, and after Ctrl-C, which
//! [`interrupted`] reports instead of ending the process).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Result};

use super::releases::{each_host, HostWork};
use super::ssh::{Ssh, Target};
use super::REMOTE_HOME;

/// What taking or releasing may take on top of connecting.
const BUDGET: Duration = Duration::from_secs(5);

/// Set by SIGINT/SIGTERM once [`catch_interrupts`] ran.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// From now on Ctrl-C (and SIGTERM) set a flag instead of ending the
/// process, so the rollout stops between steps and the lock is released;
/// a second one ends it at once. Call before any thread starts (threads
/// inherit the blocked mask; children get a clean one from std).
pub fn catch_interrupts() -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;
    std::thread::Builder::new()
        .name("fleet-signals".into())
        .spawn(move || {
            while let Ok(signal) = signals.wait() {
                if INTERRUPTED.swap(true, Ordering::SeqCst) {
                    std::process::exit(128 + signal as i32);
                }
                eprintln!(
                    "interrupted: stopping after the steps under way (again to quit at once)"
                );
            }
        })?;
    Ok(())
}

/// Whether Ctrl-C (or SIGTERM) came.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The lock's directory on a host.
fn path() -> String {
    format!("{REMOTE_HOME}/fleet-deploy.lock")
}

/// The lock, held on every targeted host until dropped.
pub struct Lock<'a> {
    transport: &'a Ssh,
    held: Vec<Target>,
    timeout: Duration,
}

/// Who this is: `user@host (pid N)`.
fn holder() -> String {
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|user| user.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("{user}@{host} (pid {})", std::process::id())
}

/// Takes the lock on every host of `works` (first breaking it when
/// `break_lock`), or releases what it took and says who holds it.
pub fn take<'a>(
    transport: &'a Ssh,
    works: &[HostWork],
    max_parallel: u32,
    connect_timeout: Duration,
    break_lock: bool,
) -> Result<Lock<'a>> {
    let timeout = connect_timeout + BUDGET;
    let script = "if [ \"$1\" = break ]; then rm -rf \"$2\"; fi; \
        if mkdir \"$2\" 2>/dev/null; then \
        printf '%s since %s\\n' \"$3\" \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" > \"$2/holder\"; echo taken; \
        else cat \"$2/holder\" 2>/dev/null || echo 'someone (no holder file)'; fi";
    let remote: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        script.into(),
        "sh".into(),
        if break_lock { "break" } else { "keep" }.into(),
        path(),
        holder(),
    ];
    let answers = each_host(works, max_parallel, |work| {
        transport.run(&work.target, &remote, timeout)
    });
    let mut lock = Lock {
        transport,
        held: Vec::new(),
        timeout,
    };
    let mut refusals = Vec::new();
    for (work, answer) in works.iter().zip(answers) {
        match answer {
            Ok(out) if String::from_utf8_lossy(&out).trim() == "taken" => {
                lock.held.push(work.target.clone());
            }
            Ok(out) => refusals.push(format!(
                "  {}: held by {}",
                work.target.name,
                String::from_utf8_lossy(&out).trim()
            )),
            Err(error) => refusals.push(format!(
                "  {}: cannot take the lock: {error}",
                work.target.name
            )),
        }
    }
    if !refusals.is_empty() {
        let held = refusals.iter().any(|line| line.contains(": held by "));
        let hint = if held {
            "\n  hint: another fleet deploy or rollback runs; if it is gone (a stale lock), \
             run again with --break-lock"
        } else {
            ""
        };
        bail!(
            "the fleet lock could not be taken on every host; nothing was changed\n{}{hint}",
            refusals.join("\n")
        );
    }
    Ok(lock)
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        let remote: Vec<String> = ["rm", "-rf", &path()].map(str::to_owned).to_vec();
        let works: Vec<HostWork> = self
            .held
            .iter()
            .map(|target| HostWork {
                target: target.clone(),
                instances: Vec::new(),
            })
            .collect();
        let answers = each_host(&works, 10, |work| {
            self.transport.run(&work.target, &remote, self.timeout)
        });
        for (target, answer) in self.held.iter().zip(answers) {
            if let Err(error) = answer {
                eprintln!(
                    "warning: cannot release the fleet lock on {}: {error}\n  \
                     hint: remove {} there, or pass --break-lock next time",
                    target.name,
                    path()
                );
            }
        }
    }
}
