#!/usr/bin/env python3
"""Stopping at scale: N idle children running, then the peer's own stop
command (`roster down`, `supervisorctl shutdown`, `pm2 kill`, SIGHUP to
runsvdir); the time until every child and the supervisor are gone.

    stop.py --peer P [--mode defaults] [--quick] [--json]

Children are `sleep`, which ends on SIGTERM at once, so the time is the
supervisor's own: how fast it signals, reaps and exits. Each peer runs with
its default stop timeout. For roster the journal is read afterwards: every
child ended by its SIGTERM, so a `killed` event (SIGKILL after
stop_timeout) would be a false one.

Counts: roster 1000, 2000 and 5000; the others 1000 and 2000. --quick: 100.
Measured in the `defaults` mode only (stop behaviour does not depend on
the restart settings).
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import alive, log, measure_main, wait_until  # noqa: E402

START_TIMEOUT = 600.0


def counts(cls, quick):
    if quick:
        return [100]
    return [1000, 2000, 5000] if cls.NAME == "roster" else [1000, 2000]


def journal_kinds(peer):
    import peers as peers_mod
    r = subprocess.run([peers_mod.roster_bin(), "--home", peer.home, "events", "--json"],
                       capture_output=True, text=True, timeout=120)
    kinds = {}
    for line in r.stdout.splitlines():
        try:
            kind = json.loads(line)["kind"]
        except (ValueError, KeyError):
            continue
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def one(cls, mode, n):
    peer = cls(mode)
    try:
        peer.setup(n)
        why = peer.start_children(n, timeout=START_TIMEOUT)
        if why:
            return {"children": n, "error": why}
        children = peer.child_pids()
        roots = peer.roots()
        t0 = time.perf_counter()
        peer._graceful_stop()
        gone = wait_until(lambda: not any(alive(p) for p in children + roots), 120, 0.01)
        took = time.perf_counter() - t0
        out = {"children": n, "stop_s": round(took, 3), "all_gone": bool(gone)}
        if cls.NAME == "roster":
            kinds = journal_kinds(peer)
            out["journal_killed"] = kinds.get("killed", 0)
            out["journal_stopped"] = kinds.get("stopped", 0)
        return out
    finally:
        peer.stop()


def run_mode(cls, mode, quick):
    if mode != "defaults" and "defaults" in cls.MODES:
        return {"skip": True, "note": "stop is measured in the defaults mode only"}
    rows = []
    for n in counts(cls, quick):
        r = one(cls, mode, n)
        log("stop %s %s %d: %s" % (cls.NAME, mode, n, r))
        rows.append(r)
    return {"rows": rows}


def describe(r):
    if r.get("skip"):
        return r["note"]
    parts = []
    for row in r.get("rows", []):
        if "stop_s" in row:
            text = "%d children stopped in %.2f s" % (row["children"], row["stop_s"])
            if "journal_killed" in row:
                text += " (%d journaled killed)" % row["journal_killed"]
            parts.append(text)
        else:
            parts.append("%d children: %s" % (row["children"], row.get("error")))
    return "; ".join(parts) or r.get("error", "?")


if __name__ == "__main__":
    measure_main("stop", run_mode, describe)
