#!/usr/bin/env python3
"""Cold start of 100 children: from the start command (the config written
before) to all 100 children running, i.e. 100 new processes with the
children's argv, found by polling new pids in /proc every 1 ms.

    coldstart.py --peer P [--mode fastest|defaults] [--quick] [--json]

The start command: `roster up -f` (starts the daemon, which starts the
agents), `supervisord -c` (daemonizes), `pm2 start ecosystem.config.js`
(starts PM2's daemon too), `runsvdir` on a service dir. The command's own
wall time is recorded beside it: `roster up` waits for ready_after (1 s)
before it returns, supervisord returns once it has forked, runsvdir never
returns (so none). Each run gets a fresh temp dir and home. 5 runs, the
median; --quick: 1 run.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import NewProcScanner, alive, log, measure_main  # noqa: E402

N = 100
TIMEOUT = 120.0


def one(cls, mode):
    peer = cls(mode)
    try:
        peer.setup(N)
        argv = next(iter(peer.child_argvs))
        scanner = NewProcScanner(argv)
        t0 = time.perf_counter()
        proc = peer.launch()
        t_all = t_cmd = None
        while True:
            scanner.poll()
            now = time.perf_counter()
            if t_cmd is None and proc.poll() is not None:
                t_cmd = now - t0
            if t_all is None and len(scanner.matched) >= N:
                # the 100 must all be alive (none died and was replaced)
                if sum(1 for p in scanner.matched if alive(p)) >= N:
                    t_all = now - t0
            if t_all is not None and (t_cmd is not None or cls.NAME == "runit"):
                break
            if now - t0 > TIMEOUT:
                break
            time.sleep(0.001)
        if t_all is None:
            return {"error": "%d of %d children after %.0f s" % (len(scanner.matched), N, TIMEOUT)}
        out = {"children_s": t_all, "command_s": t_cmd}
        if cls.NAME != "runit":
            peer.wait_launched(proc, 5)
        return out
    finally:
        peer.stop()


def run_mode(cls, mode, quick):
    runs = 1 if quick else 5
    got = []
    for i in range(runs):
        r = one(cls, mode)
        if "error" in r:
            return dict(r, runs_done=len(got))
        log("coldstart %s %s run %d/%d: %s" % (cls.NAME, mode, i + 1, runs, r))
        got.append(r)
    ms = [r["children_s"] * 1000 for r in got]
    res = {"children": N, "runs": runs, "median_ms": round(statistics.median(ms), 1),
           "min_ms": round(min(ms), 1), "max_ms": round(max(ms), 1),
           "all_ms": [round(x, 1) for x in ms]}
    cmd = [r["command_s"] * 1000 for r in got if r["command_s"] is not None]
    res["command_median_ms"] = round(statistics.median(cmd), 1) if cmd else None
    return res


def describe(r):
    if "median_ms" not in r:
        return r.get("error", "?")
    s = "100 children running after %.1f ms (median of %d)" % (r["median_ms"], r["runs"])
    if r.get("command_median_ms") is not None:
        s += "; the command itself took %.1f ms" % r["command_median_ms"]
    return s


if __name__ == "__main__":
    measure_main("coldstart", run_mode, describe)
