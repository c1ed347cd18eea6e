//! `roster events`: reads the journal directly (it works with the daemon down).

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use roster_core::api::EventRecord;
use roster_store::journal::{newest_id, read_events, EventFilter};
use roster_store::Home;

fn print(out: &mut impl Write, events: &[EventRecord], json: bool) -> io::Result<()> {
    for event in events {
        if json {
            writeln!(
                out,
                "{}",
                serde_json::to_string(event).map_err(io::Error::other)?
            )?;
        } else {
            writeln!(
                out,
                "{}  {:<20}  {:<15}  {}",
                event.time,
                event.agent.as_deref().unwrap_or("(daemon)"),
                event.kind,
                event.detail
            )?;
        }
    }
    out.flush()
}

/// Runs `roster events`.
pub fn run(
    home: &Home,
    names: &[String],
    since: Option<Duration>,
    limit: Option<u32>,
    json: bool,
    follow: bool,
) -> Result<ExitCode> {
    let known = super::known_agents(home)?;
    super::require_known(home, names, &known)?;
    let since_ms = since.map(|since| roster_store::clock::unix_millis() - since.as_millis() as i64);
    let agents = if names.iter().any(|name| name == "all") {
        Vec::new()
    } else {
        names.to_vec()
    };
    let mut filter = EventFilter {
        agents,
        since_ms,
        after_id: None,
        limit: limit.or(if follow { Some(20) } else { None }),
    };
    let journal = home.journal();
    // Taken before the first read: a follower whose starting window is
    // empty (`-n 0`, a short `--since`) goes on after this, printing only
    // what comes later, never the whole journal.
    let newest_before = if follow {
        newest_id(&journal).with_context(|| format!("reading {}", journal.display()))?
    } else {
        None
    };
    let mut out = io::BufWriter::new(io::stdout());
    loop {
        let events = read_events(&journal, &filter)?;
        if print(&mut out, &events, json).is_err() {
            return Ok(ExitCode::SUCCESS);
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(last) = events.last() {
            filter.after_id = Some(last.id.max(filter.after_id.unwrap_or(0)));
        } else if filter.after_id.is_none() {
            filter.after_id = Some(newest_before.unwrap_or(0));
        }
        filter.limit = None;
        filter.since_ms = None;
        std::thread::sleep(Duration::from_millis(200));
    }
}
