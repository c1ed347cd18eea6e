#!/usr/bin/env python3
"""Footprint: the supervisor's own memory (all its processes, not the
children) with 1, 100 and 1000 idle children, and its CPU time over an idle
window with 100 children.

    footprint.py --peer P [--mode fastest|defaults] [--quick] [--json]

RSS is the sum of VmRSS over the supervisor's processes (PSS beside it:
shared pages split between processes, which matters for runit's one runsv
per child), 2 s after all children run and, with 100, again at the end of
the idle window. CPU is utime+stime of those processes (not of the children)
before and after the window, as % of one core (clock ticks, so 1 tick over
60 s is 0.017%); beside it the same from the threads' schedstat (ns).
--quick: 1, 10 and 100 children and a 10 s window.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import CLK_TCK, cpu_ticks, thread_cpu_ns, log, measure_main, pss_kib, rss_kib  # noqa: E402

START_TIMEOUT = 180.0
SETTLE = 2.0


def counts(quick):
    return (1, 10, 100) if quick else (1, 100, 1000)


def one(cls, mode, n, window):
    peer = cls(mode)
    try:
        peer.setup(n)
        t0 = time.monotonic()
        error = peer.start_children(n, START_TIMEOUT)
        if error:
            return {"children": n, "error": error}
        ready_s = time.monotonic() - t0
        time.sleep(SETTLE)
        sup = peer.supervisor_pids()
        out = {
            "children": n,
            "ready_s": round(ready_s, 2),
            "supervisor_processes": len(sup),
            "rss_kib": sum(rss_kib(p) for p in sup),
            "pss_kib": sum(pss_kib(p) for p in sup),
        }
        if window:
            before = {p: cpu_ticks(p) for p in sup}
            before_ns = {}
            for p in sup:
                before_ns.update(thread_cpu_ns(p))
            w0 = time.monotonic()
            time.sleep(window)
            elapsed = time.monotonic() - w0
            now = peer.supervisor_pids()
            after = {p: cpu_ticks(p) for p in now}
            after_ns = {}
            for p in now:
                after_ns.update(thread_cpu_ns(p))
            # a process or thread that appeared during the window counts from zero
            ticks = sum(v - before.get(p, 0) for p, v in after.items())
            ns = sum(v - before_ns.get(t, 0) for t, v in after_ns.items())
            out["cpu_percent_schedstat"] = round(100.0 * ns / 1e9 / elapsed, 4)
            out["cpu_window_s"] = round(elapsed, 1)
            out["cpu_ticks"] = ticks
            out["cpu_percent"] = round(100.0 * ticks / CLK_TCK / elapsed, 4)
            out["cpu_resolution_percent"] = round(100.0 / CLK_TCK / elapsed, 4)
            # Memory again once idle: a supervisor may give back what
            # start-up used (roster drops its start-up pages when quiet).
            out["rss_idle_kib"] = sum(rss_kib(p) for p in now)
            out["pss_idle_kib"] = sum(pss_kib(p) for p in now)
        log("footprint %s %s: %s" % (cls.NAME, mode, out))
        return out
    finally:
        peer.stop()


def run_mode(cls, mode, quick):
    window = 10.0 if quick else 60.0
    res = {"by_children": {}}
    for n in counts(quick):
        res["by_children"][str(n)] = one(cls, mode, n, window if n == 100 else 0)
    return res


def describe(r):
    if "error" in r:
        return r["error"]
    parts = []
    for n, v in r["by_children"].items():
        if "error" in v:
            parts.append("%s children: %s" % (n, v["error"]))
            continue
        s = "%s children: RSS %.1f MiB" % (n, v["rss_kib"] / 1024)
        if "cpu_percent" in v:
            s += ", CPU %.3f%% over %.0f s" % (v["cpu_percent"], v["cpu_window_s"])
        parts.append(s)
    return "; ".join(parts)


if __name__ == "__main__":
    measure_main("footprint", run_mode, describe)
