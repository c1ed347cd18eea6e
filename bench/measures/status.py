#!/usr/bin/env python3
"""Status at scale: the wall time of one status query with 1000 children
running (`roster status --json`, `supervisorctl status`, `pm2 jlist`,
`sv status` over every service), measured around subprocess.run.

    status.py --peer P [--mode fastest|defaults] [--quick] [--json]

One untimed query first, then 20 (--quick: 100 children, 3 queries).
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import log, measure_main, summary_ms  # noqa: E402

START_TIMEOUT = 180.0


def run_mode(cls, mode, quick):
    n = 100 if quick else 1000
    queries = 3 if quick else 20
    peer = cls(mode)
    try:
        peer.setup(n)
        error = peer.start_children(n, START_TIMEOUT)
        if error:
            return {"children": n, "error": error}
        time.sleep(1.0)
        _, rc, size = peer.status_query()
        times = []
        for _ in range(queries):
            secs, rc, size = peer.status_query()
            times.append(int(secs * 1e9))
        res = summary_ms(times)
        res.update({"children": n, "exit_code": rc, "output_bytes": size,
                    "command": cls.STATUS})
        log("status %s %s: %s" % (cls.NAME, mode, res))
        return res
    finally:
        peer.stop()


def describe(r):
    if "median_ms" not in r:
        return r.get("error", "?")
    return ("one query with %d children: median %.1f ms, p90 %.1f ms (%d queries)"
            % (r["children"], r["median_ms"], r["p90_ms"], r["runs"]))


if __name__ == "__main__":
    measure_main("status", run_mode, describe)
