//! The write path: bytes from a source framed into whole lines, stamped,
//! cut with a marker past [`MAX_LINE`], counted against the `log_matches`
//! rules, buffered and appended; a rotation is asked for between two lines
//! when the size would pass `max_size` or the day changed. A failed write
//! is rolled back to the last whole line and its lines are counted as
//! dropped.

use std::io::{self, Write};
use std::sync::atomic::Ordering;

use super::{LogWriter, WriteReport, MAX_LINE};
use crate::clock::{day_of, rfc3339_millis};
use crate::logs::files::CUT_MARKER;

impl LogWriter {
    /// Takes bytes read at `now_ms` from one source (one run's pipe);
    /// `pending` is that source's unfinished line, kept by the caller so
    /// that two runs' partial lines are never joined.
    pub fn write(&mut self, pending: &mut Vec<u8>, mut chunk: &[u8], now_ms: i64) -> WriteReport {
        let mut report = WriteReport::default();
        self.refresh_log_rules();
        self.check_file(now_ms, false);
        let today = day_of(now_ms);
        if today != self.day && self.size > 0 {
            self.rotate(&mut report);
        }
        self.day = today;
        let mut stamp = rfc3339_millis(now_ms).into_bytes();
        stamp.push(b' ');
        while !chunk.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(end) => {
                    let (line, rest) = chunk.split_at(end + 1);
                    chunk = rest;
                    if pending.is_empty() {
                        self.push_whole(&stamp, line, &mut report);
                    } else {
                        pending.extend_from_slice(line);
                        self.push_whole(&stamp, pending, &mut report);
                        pending.clear();
                    }
                }
                None => {
                    pending.extend_from_slice(chunk);
                    chunk = &[];
                    if pending.len() > MAX_LINE {
                        let rest = self.push_cut_pieces(&stamp, pending, &mut report).to_vec();
                        *pending = rest;
                    }
                }
            }
        }
        self.flush_out(&mut report);
        self.publish_matches(&mut report);
        if report.dropped_lines > 0 {
            // A failed write may mean the file is gone: look now, not in a
            // second, so the next chunk already lands in a reopened file.
            self.check_file(now_ms, true);
        }
        // A burst grew the buffer; between chunks an agent keeps at most a
        // small one, so a thousand quiet agents stay cheap. (One allocation
        // per chunk during a flood costs nothing measurable.)
        if self.out.capacity() > 64 * 1024 {
            self.out = Vec::new();
        }
        report
    }

    /// A source (pipe) closed: its last line without a newline is stored
    /// with one.
    pub fn end_source(&mut self, pending: &mut Vec<u8>, now_ms: i64) -> WriteReport {
        let mut report = WriteReport::default();
        self.check_file(now_ms, false);
        if !pending.is_empty() {
            let mut stamp = rfc3339_millis(now_ms).into_bytes();
            stamp.push(b' ');
            self.push_line(&stamp, &[pending, b"\n"], &mut report);
            pending.clear();
        }
        self.flush_out(&mut report);
        report
    }

    fn refresh_log_rules(&mut self) {
        self.current_rules = self
            .log_rules
            .read()
            .map(|rules| rules.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
    }

    fn count_matches(&mut self, line: &[u8]) {
        if let Some(rules) = &self.current_rules {
            rules.count_line(line, &mut self.tally);
        }
    }

    /// Hands this call's matches to the shared counters.
    fn publish_matches(&mut self, report: &mut WriteReport) {
        if let Some(rules) = &self.current_rules {
            if !self.tally.is_empty() && rules.add(&self.tally) {
                report.matches_pending = Some(rules.clone());
            }
        }
        self.tally.clear();
    }

    /// Pushes a complete line (ending in a newline), cutting it into marked
    /// pieces when it is longer than [`MAX_LINE`].
    fn push_whole(&mut self, stamp: &[u8], line: &[u8], report: &mut WriteReport) {
        self.count_matches(line);
        let rest = if line.len() > MAX_LINE + 1 {
            self.push_cut_pieces(stamp, line, report)
        } else {
            line
        };
        self.push_line(stamp, &[rest], report);
    }

    /// Pushes `MAX_LINE` pieces of `bytes` with the cut marker while more
    /// than `MAX_LINE` bytes remain; returns the remainder.
    fn push_cut_pieces<'a>(
        &mut self,
        stamp: &[u8],
        mut bytes: &'a [u8],
        report: &mut WriteReport,
    ) -> &'a [u8] {
        while bytes.len() > MAX_LINE + 1 || (bytes.len() > MAX_LINE && bytes.last() != Some(&b'\n'))
        {
            let cut = utf8_boundary(bytes, MAX_LINE);
            self.push_line(stamp, &[&bytes[..cut], CUT_MARKER, b"\n"], report);
            bytes = &bytes[cut..];
        }
        bytes
    }

    fn push_line(&mut self, stamp: &[u8], parts: &[&[u8]], report: &mut WriteReport) {
        let length = stamp.len() + parts.iter().map(|part| part.len()).sum::<usize>();
        let buffered = self.size + self.out.len() as u64;
        if buffered > 0 && buffered + length as u64 > self.config.max_size {
            self.flush_out(report);
            self.rotate(report);
        }
        self.out.extend_from_slice(stamp);
        for part in parts {
            self.out.extend_from_slice(part);
        }
        self.out_lines += 1;
        if self.out.len() >= 256 * 1024 {
            self.flush_out(report);
        }
    }

    fn flush_out(&mut self, report: &mut WriteReport) {
        if self.out.is_empty() {
            return;
        }
        if self.file.is_none() {
            if let Err(error) = self.reopen() {
                self.drop_out(report, &error);
                return;
            }
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        match file.write_all(&self.out) {
            Ok(()) => {
                self.size += self.out.len() as u64;
                if let Some(written) = &self.written {
                    written.fetch_add(self.out_lines, Ordering::Relaxed);
                }
                self.out.clear();
                self.out_lines = 0;
            }
            Err(error) => {
                // Roll back a partial write so the file keeps whole lines
                // only. The file stays open: when space comes back, the
                // next write simply succeeds.
                let _ = file.set_len(self.size);
                self.drop_out(report, &error);
            }
        }
    }

    fn drop_out(&mut self, report: &mut WriteReport, error: &io::Error) {
        report.dropped_lines += self.out_lines;
        report.error = Some(format!("{}: {error}", self.shown.display()));
        self.dropped.fetch_add(self.out_lines, Ordering::Relaxed);
        self.out.clear();
        self.out_lines = 0;
    }
}

/// The largest index <= `limit` that does not split a UTF-8 character.
fn utf8_boundary(bytes: &[u8], limit: usize) -> usize {
    let mut cut = limit.min(bytes.len());
    while cut > limit.saturating_sub(4)
        && cut < bytes.len()
        && (bytes[cut] & 0b1100_0000) == 0b1000_0000
    {
        cut -= 1;
    }
    if cut == 0 {
        limit
    } else {
        cut
    }
}
