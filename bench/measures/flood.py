#!/usr/bin/env python3
"""A `log_matches` rule under a flood: one agent floods its log with lines
that match the rule while another, an idle `sleep` (the victim), is
SIGKILLed every 1.5 s. Does the flood, and matching it, slow the
supervisor's other work down?

    flood.py --peer P [--mode defaults] [--quick] [--json]

The writer (bench/lib/paced.py) prints 100-byte lines that match
`(?i)\\berror\\b` on a fixed schedule, two ways: 20,000 lines/s as one
write of 2,000 lines every 100 ms, and 3,000 lines/s as one write(2) per
line. roster runs it twice each: with the README's rule on the flooding
agent (`metric = "log_matches"`, `pattern = "(?i)\\\\berror\\\\b"`,
`within = "5m"`, `above = 100`, `action = "alert"`: every line is matched)
and with `watch = []` (what capturing alone costs). The peers have no such
rule: they capture the same flood. Everything at the peer's defaults, but
every rotated log file is kept (roster `[log] keep`, svlogd `n0`; rotation
size and compression stay as they are) so that the lines can be counted,
and roster's victim has `stable_after = "1s"` (its default is 10 s; the
peers count a run as stable after 1 s: supervisord `startsecs`, PM2
`min_uptime`), so a kill every 1.5 s is an ordinary death, not a crash loop.

Over the flood (60 s; --quick: 15 s):
  - the victim's restart latency: SIGKILL to a new pid running its argv,
    new pids polled every 0.2 ms (as restart.py): median, p90, max;
  - the status command (`roster status --json`, `supervisorctl status`,
    `pm2 jlist`, `sv status`) every ~1 s, 10 s timeout: median, max, failed;
  - the supervisor's RSS (all its processes, every 0.5 s): max;
  - its CPU (utime+stime ticks from /proc/PID/stat) over the last 30 s of
    the flood (--quick: 10 s), % of one core;
  - lines written (the writer's `done N`), lines found in the log (every
    file, rotated and gzipped too), lines captured per second (from the go
    signal to the `done` line in the log) and how long after the writer's
    last line that took (drain).
Defaults mode only.
"""

import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import (BENCH, CLK_TCK, StatusLoop, argv_key, cmdline, cpu_ticks,  # noqa: E402
                    kill_and_wait_replacement, log, measure_main, rss_kib, summary_ms)

PACED = os.path.join(BENCH, "lib", "paced.py")
POLL_S = 0.0002           # as restart.py
SPACING_S = 1.5           # between the victim's replacement and the next kill
STATUS_EVERY_S = 1.0
STATUS_TIMEOUT_S = 10.0
RSS_EVERY_S = 0.5
SETTLE_S = 2.0            # after both children run, before the go signal

# (key, lines a write, writes a second)
WRITES = [("batched", 2000, 10), ("per line", 1, 3000)]

RULE = """
[[agents.flood.watch]]
metric = "log_matches"
pattern = "(?i)\\\\berror\\\\b"
within = "5m"
above = 100
action = "alert"
"""

LINE = re.compile(rb"(\d{8}) error x{84}\n$")
DONE = re.compile(rb"done (\d+)\n$")


def durations(quick):
    """(flood seconds, CPU window seconds)"""
    return (15.0, 10.0) if quick else (60.0, 30.0)


class RssMax:
    """The supervisor's RSS (sum over its processes) every 0.5 s in a
    thread; keeps the largest."""

    def __init__(self, pids):
        self.pids = pids
        self.max_kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._done.set()
        self._thread.join(5)

    def _run(self):
        while not self._done.is_set():
            self.max_kib = max(self.max_kib, sum(rss_kib(p) for p in self.pids))
            self._done.wait(RSS_EVERY_S)


def kill_loop(victim_argv, pid, until, window_from, sup):
    """Kill the victim every SPACING_S until `until` (monotonic); reads the
    supervisor's CPU ticks once past `window_from`. Returns (latencies ns,
    failures, (t, ticks) at the window's start or None)."""
    lat, failures, window_start = [], [], None
    next_kill = time.monotonic() + SPACING_S
    while True:
        now = time.monotonic()
        if window_start is None and now >= window_from:
            window_start = (now, sum(cpu_ticks(p) for p in sup))
        if now >= until:
            return lat, failures, window_start
        wake = min(next_kill, window_from) if window_start is None else next_kill
        if wake > now:
            time.sleep(min(wake, until) - now)
            continue
        try:
            got = kill_and_wait_replacement(pid, victim_argv, 30.0, POLL_S)
        except OSError as e:
            failures.append("kill: %s" % e)
            return lat, failures, window_start
        if got is None:
            failures.append("kill %d: no replacement within 30 s" % (len(lat) + 1))
            return lat, failures, window_start
        pid, _, matched = got
        lat.append(matched)
        next_kill = time.monotonic() + SPACING_S


def _done_in_log(files):
    """N of the writer's `done N` line at the end of the newest files, or None."""
    for path in files[-2:]:
        if path.endswith(".gz"):
            continue
        try:
            with open(path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 200))
                tail = f.read()
        except OSError:
            continue
        m = DONE.search(tail)
        if m:
            return int(m.group(1))
    return None


def count_lines(files, written):
    """Distinct flood lines in the log's files (oldest first), doubled ones,
    and lines that are neither a flood line nor `done` (split or foreign)."""
    seen = bytearray(max(written, 1))
    doubled = other = 0
    for path in files:
        opener = gzip.open if path.endswith(".gz") else open
        try:
            with opener(path, "rb") as f:
                for line in f:
                    m = LINE.search(line)
                    if m:
                        seq = int(m.group(1))
                        if seq >= len(seen):
                            seen.extend(bytearray(seq + 1 - len(seen)))
                        if seen[seq]:
                            doubled += 1
                        seen[seq] = 1
                    elif not DONE.search(line):
                        other += 1
        except (OSError, EOFError) as e:
            other += 1
            log("flood: reading %s: %s" % (path, e))
    return {"captured": len(seen) - seen.count(0), "doubled": doubled, "other_lines": other}


def alert_fired(peer):
    import peers as peers_mod
    r = subprocess.run([peers_mod.roster_bin(), "--home", peer.home, "alerts", "--json"],
                       capture_output=True, text=True, timeout=60)
    try:
        firing = json.loads(r.stdout).get("firing", [])
    except ValueError:
        return None
    return any(a.get("agent") == "flood" for a in firing)


def one(cls, mode, key, per_write, per_s, rule, quick):
    seconds, window = durations(quick)
    peer = cls(mode)
    try:
        go = os.path.join(peer.dir, "go")
        writer = [sys.executable, PACED, go, "%g" % seconds, str(per_write), "%g" % per_s, peer.token]
        victim = ["sleep", peer.token]
        if cls.NAME == "roster":
            peer.agent_toml = {"flood": [] if rule else ["watch = []"],
                               "victim": ['stable_after = "1s"', "watch = []"]}
        peer.setup(0, programs=[("flood", writer), ("victim", victim)], log=True, keep_logs=True)
        if rule:
            with open(peer.conf, "a") as f:
                f.write(RULE)
        peer.start(timeout=60)
        if peer.wait_children(2, 30) < 2:
            return {"error": "the flood writer and the victim did not both start"}
        time.sleep(SETTLE_S)
        victim_key = argv_key(victim)
        victims = [p for p in peer.child_pids() if argv_key(cmdline(p)) == victim_key]
        if not victims:
            return {"error": "the victim is not running"}
        sup = peer.supervisor_pids()
        rss = RssMax(sup).start()
        status = StatusLoop(peer, STATUS_EVERY_S, STATUS_TIMEOUT_S).start()
        status.phase = "flood"
        t_go = time.monotonic()
        open(go, "w").close()
        end = t_go + seconds
        try:
            lat, failures, w0 = kill_loop(victim, victims[0], end, end - window, sup)
            time.sleep(max(0.0, end - time.monotonic()))
            w1 = (time.monotonic(), sum(cpu_ticks(p) for p in sup))
        finally:
            status.phase = None
            status.stop()
            rss.stop()
        # the writer's last line, `done N`, reaching the log
        written = None
        deadline = time.monotonic() + 60
        while written is None and time.monotonic() < deadline:
            written = _done_in_log(peer.log_files("flood"))
            if written is None:
                time.sleep(0.01)
        t_done = time.monotonic()
        files = peer.log_files("flood")
        res = {"setting": "rule" if rule else "no rule", "writes": key,
               "lines_per_write": per_write, "target_lines_per_s": per_write * per_s,
               "flood_s": seconds}
        if written is None:
            res["error"] = "no `done` line in the log 60 s after the flood"
            res["drain_s"] = None
            counts = count_lines(files, int(per_write * per_s * seconds))
        else:
            res["drain_s"] = round(max(0.0, t_done - end), 2)
            res["written"] = written
            res["written_per_s"] = round(written / seconds)
            counts = count_lines(files, written)
            res["lost"] = written - counts["captured"]
            res["captured_per_s"] = round(counts["captured"] / (t_done - t_go))
        res.update(counts)
        res["files"] = len(files)
        res["restart"] = summary_ms(lat)
        if failures:
            res["restart"]["failures"] = failures
        res["status"] = status.summary("flood")
        res["status_command"] = cls.STATUS
        res["rss_max_kib"] = rss.max_kib
        if w0:
            res["cpu_window_s"] = round(w1[0] - w0[0], 1)
            res["cpu_percent"] = round(100.0 * (w1[1] - w0[1]) / CLK_TCK / (w1[0] - w0[0]), 2)
        if cls.NAME == "roster" and rule:
            res["alert_fired"] = alert_fired(peer)
        return res
    finally:
        peer.stop()


def run_mode(cls, mode, quick):
    if mode != "defaults" and "defaults" in cls.MODES:
        return {"skip": True, "note": "flood is measured in the defaults mode only"}
    rows = []
    for key, per_write, per_s in WRITES:
        for rule in ([True, False] if cls.NAME == "roster" else [False]):
            r = one(cls, mode, key, per_write, per_s, rule, quick)
            r.setdefault("setting", "rule" if rule else "no rule")
            r.setdefault("writes", key)
            log("flood %s %s %s %s: %s" % (cls.NAME, mode, key, r["setting"], r))
            rows.append(r)
    return {"rows": rows}


def _row_text(row):
    head = "%s, %s" % (row["writes"], row["setting"])
    if "captured_per_s" not in row:
        return "%s: %s" % (head, row.get("error", "?"))
    rs = row["restart"]
    text = "%s: %d lines/s captured (%d written/s, %d lost)" % (
        head, row["captured_per_s"], row["written_per_s"], row["lost"])
    if rs.get("runs"):
        text += ", victim restart median %.2f ms max %.2f ms" % (rs["median_ms"], rs["max_ms"])
    if row.get("cpu_percent") is not None:
        text += ", CPU %.1f%%" % row["cpu_percent"]
    text += ", RSS max %.1f MiB" % (row["rss_max_kib"] / 1024)
    return text


def describe(r):
    if r.get("skip"):
        return r["note"]
    return "; ".join(_row_text(row) for row in r.get("rows", [])) or r.get("error", "?")


if __name__ == "__main__":
    measure_main("flood", run_mode, describe)
