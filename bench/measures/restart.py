#!/usr/bin/env python3
"""Restart latency: SIGKILL a supervised idle child and time until its
replacement runs (a new pid whose argv is the child's), polling /proc.

    restart.py --peer P [--mode fastest|defaults] [--quick] [--json]

Only pids past /proc/sys/kernel/ns_last_pid (read just before the kill) are
looked at, so a poll costs a few file reads; polls are 0.2 ms apart (a
spinning poller takes a core from the supervisor on a 2-core machine, and
measured worse). Before each peer, the same method on a minimal supervisor
(waitpid, then posix_spawn) gives this machine's floor. Between kills the
new child is left running for the peer's stability threshold in that mode
(spacing), so every kill is an ordinary death, not a crash loop. 30 kills (10 where the
spacing is over 2 s: roster's defaults); --quick: 5 (1).

roster is measured twice: the idle child as above (started directly by
posix_spawn), then the same child with an `[agents.NAME.listen]` socket,
which roster starts through its exec shim (the roster binary re-executed as
`roster __roster-exec EXE ARGV0 ARGS...`, which sets LISTEN_PID and execs
the child): the cost of the shim. A replacement counts once its argv is the
child's, so the shim's own exec is inside the time.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import (argv_key, cmdline, descendants, free_port, kill_and_wait_replacement,  # noqa: E402
                    log, make_tmp, measure_main, new_token, summary_ms, sweep, wait_until)

POLL_S = 0.0002   # sleeping between polls beats spinning on 2 cores: the
                  # supervisor and the dying child need the CPU too

# The floor: a minimal supervisor (waitpid, then posix_spawn at once), the
# best any supervisor can do on this machine with this method.
MINIMAL = """
import os, shutil, sys
argv = [shutil.which("sleep"), sys.argv[1]]
while True:
    pid = os.posix_spawn(argv[0], argv, os.environ)
    os.waitpid(pid, 0)
"""


def runs_for(spacing, quick):
    """30 kills; 10 where each must wait long (roster's 10 s stable_after)."""
    if quick:
        return 5 if spacing <= 2 else 1
    return 30 if spacing <= 2 else 10


def kill_loop(find_first, argv, spacing, n, name, timeout=30.0):
    """Kill the child n times; returns (latencies ns, pid-seen ns, failures)."""
    lat, seen, failures = [], [], []
    pid = find_first()
    time.sleep(spacing)
    for i in range(n):
        got = kill_and_wait_replacement(pid, argv, timeout, POLL_S)
        if got is None:
            failures.append("kill %d: no replacement within %.0f s" % (i + 1, timeout))
            break
        pid, first, matched = got
        lat.append(matched)
        seen.append(first)
        log("restart %s: kill %d/%d: %.3f ms" % (name, i + 1, n, lat[-1] / 1e6))
        time.sleep(spacing)
    return lat, seen, failures


def floor(quick):
    d = make_tmp("floor")
    token = new_token()
    proc = subprocess.Popen([sys.executable, "-c", MINIMAL, token], cwd=d, start_new_session=True,
                            stdin=subprocess.DEVNULL)
    argv = ("sleep", token)
    try:
        def first():
            got = wait_until(lambda: [p for p in descendants([proc.pid]) if argv_key(cmdline(p)) == argv], 10)
            if not got:
                raise RuntimeError("the minimal supervisor did not start its child")
            return got[0]
        lat, seen, failures = kill_loop(first, argv, 0.2, runs_for(0.2, quick), "floor")
        res = summary_ms(lat)
        res["pid_seen"] = summary_ms(seen)
        if failures:
            res["failures"] = failures
        return res
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        sweep(d)
        shutil.rmtree(d, ignore_errors=True)


def measure_peer(cls, mode, quick, listen=False):
    """The kill loop on one peer; with listen=True (roster only) the agent
    has a `[listen]` socket, so roster starts it through its exec shim
    (`roster __roster-exec ...`, then exec of the child): one more exec
    per start than the direct posix_spawn."""
    peer = cls(mode)
    try:
        peer.setup(1)
        if listen:
            with open(peer.conf, "a") as f:
                f.write('\n[agents.%s.listen]\nhttp = "127.0.0.1:%d"\n' % (peer.names[0], free_port()))
        peer.start(timeout=60)
        if peer.wait_children(1, 30) < 1:
            return {"error": "the child did not start"}
        argv = next(iter(peer.child_argvs))
        spacing = peer.STABLE_AFTER[mode]
        n = runs_for(spacing, quick)
        lat, seen, failures = kill_loop(lambda: peer.child_pids()[0], argv, spacing, n,
                                        "%s %s%s" % (cls.NAME, mode, " listen" if listen else ""))
        res = summary_ms(lat)
        res["pid_seen"] = summary_ms(seen)
        res["spacing_s"] = spacing
        res["kills"] = n
        if failures:
            res["failures"] = failures
        return res
    finally:
        peer.stop()


def run_mode(cls, mode, quick):
    try:
        base = floor(quick)
    except Exception as e:
        base = {"error": str(e)}
    res = measure_peer(cls, mode, quick)
    res["floor"] = base
    if cls.NAME == "roster" and "error" not in res:
        # The same idle child with a listen socket: the exec shim's path.
        try:
            res["shim"] = measure_peer(cls, mode, quick, listen=True)
        except Exception as e:
            res["shim"] = {"error": "%s: %s" % (type(e).__name__, e)}
    return res


def describe(r):
    if "error" in r:
        return r["error"]
    if not r.get("runs"):
        return "no run: %s" % r.get("failures")
    out = ("median %.3f ms, p90 %.3f ms (min %.3f, max %.3f) over %d kills %.1f s apart"
           % (r["median_ms"], r["p90_ms"], r["min_ms"], r["max_ms"], r["runs"], r["spacing_s"]))
    shim = r.get("shim")
    if shim:
        if shim.get("runs"):
            out += "; with [listen] (exec shim): median %.3f ms, p90 %.3f ms" % (
                shim["median_ms"], shim["p90_ms"])
        else:
            out += "; with [listen] (exec shim): %s" % (shim.get("error") or shim.get("failures"))
    return out


if __name__ == "__main__":
    measure_main("restart", run_mode, describe)
