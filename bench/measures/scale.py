#!/usr/bin/env python3
"""Up and down at scale, with status answering throughout: N idle children
(`sleep`) started from nothing, then stopped, while the status command runs
every ~250 ms.

    scale.py --peer P [--mode defaults] [--quick] [--json]

For each N (1,000, 2,000 and 5,000; --quick: 200 and 500), with the config
written before and nothing running:
  - up: the start command (`roster up -f`, `supervisord -c`, `pm2 start
    ecosystem.config.js`, `runsvdir`) until all N children run (new pids
    with the children's argv, polled every 20 ms); its exit code and how long
    it took itself (runsvdir does not return);
  - the supervisor's RSS and PSS (all its processes; PSS splits shared
    pages, which matters for runit's runsv per child) once all N run;
  - down: the stop command (`roster down`, `supervisorctl shutdown`,
    `pm2 kill`, SIGHUP to runsvdir) until no child is left; its exit code
    and its own time;
  - the status command (`roster status --json`, `supervisorctl status`,
    `pm2 jlist`, `sv status` over every service), one every 250 ms (at once
    when one took longer), 10 s timeout each, from the first child running
    to all N running (up) and from the stop command until no child is left
    (down): how many ran, answered, failed or timed out, the answered ones'
    median and max. In the down phase a query that fails once the
    supervisor itself has exited is not counted as failed (`excused`).
Each phase has 300 s (--quick: 60 s), and up ends early when no new child
appeared for 60 s (runsvdir, for one, runs at most 1000 services); a phase
that does not finish is reported so (with how many children ran or were
left), and larger N are then skipped.
Defaults mode only.
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import NewProcScanner, StatusLoop, alive, log, measure_main, pss_kib, rss_kib  # noqa: E402

PHASE_TIMEOUT_S = 300.0    # --quick: 60 s
STATUS_EVERY_S = 0.25
STATUS_TIMEOUT_S = 10.0
STALL_S = 60.0             # up ends early when no new child appeared for this long
POLL_S = 0.02            # coarse: the times are seconds, and a poll costs CPU the supervisor needs


def counts(quick):
    return [200, 500] if quick else [1000, 2000, 5000]


def up(peer, n, status, timeout):
    """Start command until n children run: the up part of the result."""
    argv = next(iter(peer.child_argvs))
    scanner = NewProcScanner(argv)
    t0 = time.perf_counter()
    proc = peer.launch()
    out = {"finished": False}
    t_all = None
    next_alive_check = 0.0
    seen, grew = 0, 0.0
    while True:
        scanner.poll()
        now = time.perf_counter() - t0
        if len(scanner.matched) > seen:
            seen, grew = len(scanner.matched), now
        if "command_s" not in out and proc.poll() is not None:
            out["command_s"] = round(now, 3)
            out["command_exit"] = proc.returncode
        if scanner.matched and status.phase is None and t_all is None:
            status.phase = "up"
        if t_all is None and len(scanner.matched) >= n and now >= next_alive_check:
            # all n alive at once (none died and was replaced)
            if sum(1 for p in scanner.matched if alive(p)) >= n:
                t_all = now
                status.phase = None
            next_alive_check = now + 0.2
        if t_all is not None and ("command_s" in out or peer.NAME == "runit"):
            break
        if now > timeout:
            break
        if t_all is None and now - grew > STALL_S:
            out["stalled_s"] = STALL_S   # e.g. runsvdir runs at most 1000 services
            break
        time.sleep(POLL_S)
    status.pause()
    if t_all is not None:
        out["finished"] = True
        out["children_s"] = round(t_all, 3)
    else:
        out["running"] = sum(1 for p in scanner.matched if alive(p))
    if "command_s" not in out and peer.NAME != "runit":
        out["command_s"] = None   # still running at the end of the phase
    return out, [p for p in scanner.matched if alive(p)]


def down(peer, children, status, timeout):
    """Stop command until none of `children` is left: the down part. It
    also waits (up to 30 s more, not part of the time) for the stop command
    and the supervisor's processes to end, so nothing is killed that was
    about to exit."""
    roots = peer.supervisor_pids()   # runit: runsvdir and every runsv
    t0 = time.perf_counter()
    status.phase = "down"
    proc = peer.launch_stop()
    out = {"finished": False, "children": len(children)}
    left = list(children)
    next_check = 0.0
    while True:
        now = time.perf_counter() - t0
        if proc is not None and "command_s" not in out and proc.poll() is not None:
            out["command_s"] = round(now, 3)
            out["command_exit"] = proc.returncode
        if now >= next_check:
            left = [p for p in left if alive(p)]
            next_check = now + 0.05
            if not left and "gone_s" not in out:
                out["gone_s"] = round(now, 3)
                status.phase = None
            if "supervisor_gone_s" not in out and not any(alive(p) for p in roots):
                out["supervisor_gone_s"] = round(now, 3)
        if "gone_s" in out and (proc is None or "command_s" in out):
            if "supervisor_gone_s" in out or now > out["gone_s"] + 30:
                break
        if now > timeout:
            break
        time.sleep(POLL_S)
    status.pause()
    out["finished"] = "gone_s" in out
    if left:
        out["left"] = len(left)
    if proc is not None and "command_s" not in out:
        out["command_s"] = None
    return out


def one(cls, mode, n, timeout):
    peer = cls(mode)
    status = None
    try:
        peer.setup(n)
        status = StatusLoop(peer, STATUS_EVERY_S, STATUS_TIMEOUT_S,
                            excuse=lambda phase: phase == "down" and not peer.roots()).start()
        res = {"children": n}
        res["up"], children = up(peer, n, status, timeout)
        res["up"]["status"] = status.summary("up")
        log("scale %s %d up: %s" % (cls.NAME, n, res["up"]))
        if res["up"]["finished"]:
            time.sleep(1.0)
            sup = peer.supervisor_pids()
            res["rss_kib"] = sum(rss_kib(p) for p in sup)
            res["pss_kib"] = sum(pss_kib(p) for p in sup)
        res["down"] = down(peer, children, status, timeout)
        res["down"]["status"] = status.summary("down")
        log("scale %s %d down: %s" % (cls.NAME, n, res["down"]))
        return res
    finally:
        if status:
            status.stop()
        peer.stop()


def run_mode(cls, mode, quick):
    if mode != "defaults" and "defaults" in cls.MODES:
        return {"skip": True, "note": "scale is measured in the defaults mode only"}
    timeout = 60.0 if quick else PHASE_TIMEOUT_S
    rows = []
    unfinished = None
    for n in counts(quick):
        if unfinished:
            rows.append({"children": n, "skipped": "%d children did not finish" % unfinished})
            continue
        try:
            r = one(cls, mode, n, timeout)
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            r = {"children": n, "error": "%s: %s" % (type(e).__name__, e)}
        rows.append(r)
        if not (r.get("up", {}).get("finished") and r.get("down", {}).get("finished")):
            unfinished = n
    return {"rows": rows, "phase_timeout_s": timeout}


def _part(name, p, timeout):
    if p.get("finished"):
        key = "children_s" if name == "up" else "gone_s"
        text = "%s %.2f s" % (name, p[key])
    elif name == "up" and p.get("stalled_s"):
        text = "up did not finish: %d running, none more for %.0f s" % (p.get("running", 0),
                                                                         p["stalled_s"])
    elif name == "up":
        text = "up did not finish in %.0f s (%d running)" % (timeout, p.get("running", 0))
    else:
        text = "down did not finish in %.0f s (%d left)" % (timeout, p.get("left", 0))
    s = p.get("status", {})
    if s.get("ran"):
        text += " (status %d ran, %d failed, %d timed out" % (s["ran"], s["failed"], s["timed_out"])
        if s.get("answered"):
            text += ", median %.0f ms, max %.0f ms" % (s["median_ms"], s["max_ms"])
        text += ")"
    return text


def describe(r):
    if r.get("skip"):
        return r["note"]
    parts = []
    t = r.get("phase_timeout_s", PHASE_TIMEOUT_S)
    for row in r.get("rows", []):
        if "up" not in row:
            parts.append("%d: %s" % (row["children"], row.get("skipped") or row.get("error")))
            continue
        parts.append("%d: %s, %s" % (row["children"], _part("up", row["up"], t), _part("down", row["down"], t)))
    return "; ".join(parts) or r.get("error", "?")


if __name__ == "__main__":
    measure_main("scale", run_mode, describe)
