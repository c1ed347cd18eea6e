#!/usr/bin/env python3
"""The cost of a dashboard left open: 100 idle children (`sleep`) at the
peer's defaults; the supervisor's CPU over a window without a dashboard,
then with the peer's terminal dashboard open in a tmux session of the
measure's own (120x40): `roster top` (its log pane following the first
agent), `pm2 monit`.

    dashboard.py --peer P [--mode defaults] [--quick] [--json]

Reported, as % of one core over the window (threads' schedstat, ns):
the supervisor without and with the dashboard, the dashboard's own
processes, and the tmux server that stands for the operator's terminal
(it parses and renders what the dashboard writes, as an SSH client or a
terminal emulator would). `added` is what opening the dashboard costs:
the supervisor's increase plus the dashboard's own. supervisord and runit
have no terminal dashboard. The window is 60 s after a 5 s warm-up
(--quick: 15 s); defaults mode only.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import descendants, log, measure_main, thread_cpu_ns  # noqa: E402
import peers as peers_mod  # noqa: E402

CHILDREN = 100
START_TIMEOUT = 180.0
WARM_UP = 5.0


def cpu_ns(pids):
    """{tid: ns} over the threads of pids."""
    out = {}
    for pid in pids:
        out.update(thread_cpu_ns(pid))
    return out


def used_percent(before, after, elapsed):
    """CPU % of one core between two cpu_ns readings (a new thread counts
    from zero)."""
    ns = sum(v - before.get(t, 0) for t, v in after.items())
    return round(100.0 * ns / 1e9 / elapsed, 3)


def dashboard_argv(peer):
    if peer.NAME == "roster":
        return [peers_mod.roster_bin(), "--home", peer.home, "top"], None
    env = peer.status_env()
    return [peers_mod.pm2_bin(), "monit"], env


class Tmux:
    """A tmux server of this measure's own."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rbench-tmux-", dir="/tmp")
        self.env = dict(os.environ, TMUX_TMPDIR=self.dir, TERM="xterm-256color")
        self.env.pop("TMUX", None)

    def run(self, *args):
        return subprocess.run(["tmux"] + list(args), env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=30)

    def open(self, argv, extra_env):
        args = ["new-session", "-d", "-s", "dash", "-x", "120", "-y", "40"]
        for key, value in (extra_env or {}).items():
            if key.startswith("PM2"):
                args += ["-e", "%s=%s" % (key, value)]
        args.append(" ".join("'%s'" % a.replace("'", "'\\''") for a in argv))
        r = self.run(*args)
        if r.returncode != 0:
            raise RuntimeError("tmux new-session: %s" % r.stdout)

    def pane_pid(self):
        r = self.run("list-panes", "-t", "dash", "-F", "#{pane_pid}")
        return int(r.stdout.split()[0])

    def server_pid(self):
        r = self.run("display-message", "-p", "-t", "dash", "#{pid}")
        return int(r.stdout.split()[0])

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "dash").stdout

    def close(self):
        self.run("kill-server")
        shutil.rmtree(self.dir, ignore_errors=True)


def run_mode(cls, mode, quick):
    if cls.NAME not in ("roster", "pm2"):
        return {"error": "%s has no terminal dashboard" % cls.NAME}
    if mode != "defaults":
        return {"skip": True, "note": "the dashboard is measured in the defaults mode only"}
    if not shutil.which("tmux"):
        return {"error": "tmux is not installed"}
    window = 15.0 if quick else 60.0
    peer = cls(mode)
    tmux = None
    try:
        peer.setup(CHILDREN)
        error = peer.start_children(CHILDREN, START_TIMEOUT)
        if error:
            return {"error": error}
        time.sleep(WARM_UP)
        sup = peer.supervisor_pids()
        b = cpu_ns(sup)
        t0 = time.monotonic()
        time.sleep(window)
        idle = used_percent(b, cpu_ns(peer.supervisor_pids()), time.monotonic() - t0)

        tmux = Tmux()
        argv, env = dashboard_argv(peer)
        tmux.open(argv, env)
        time.sleep(WARM_UP)
        screen = tmux.screen()
        if peer.NAME == "roster" and "c0001" not in screen:
            return {"error": "roster top did not show the agents: %r" % screen[-500:]}
        pane = tmux.pane_pid()
        server = tmux.server_pid()
        dash = [pane] + descendants([pane])
        sup = peer.supervisor_pids()
        b_sup, b_dash, b_tmux = cpu_ns(sup), cpu_ns(dash), cpu_ns([server])
        t0 = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - t0
        with_dash = used_percent(b_sup, cpu_ns(peer.supervisor_pids()), elapsed)
        dash_cpu = used_percent(b_dash, cpu_ns([pane] + descendants([pane])), elapsed)
        tmux_cpu = used_percent(b_tmux, cpu_ns([server]), elapsed)
        out = {
            "children": CHILDREN,
            "window_s": round(elapsed, 1),
            "dashboard": " ".join(os.path.basename(a) for a in argv[:1] + argv[-1:]),
            "supervisor_idle_percent": idle,
            "supervisor_with_dashboard_percent": with_dash,
            "dashboard_percent": dash_cpu,
            "terminal_percent": tmux_cpu,
            "added_percent": round(max(0.0, with_dash - idle) + dash_cpu, 3),
        }
        log("dashboard %s: %s" % (cls.NAME, out))
        return out
    finally:
        if tmux:
            tmux.close()
        peer.stop()


def describe(r):
    if r.get("skip"):
        return r["note"]
    if "error" in r:
        return r["error"]
    return ("%s: supervisor %.3f%% -> %.3f%%, dashboard %.3f%%, terminal %.3f%%, added %.3f%%"
            % (r["dashboard"], r["supervisor_idle_percent"],
               r["supervisor_with_dashboard_percent"], r["dashboard_percent"],
               r["terminal_percent"], r["added_percent"]))


if __name__ == "__main__":
    measure_main("dashboard", run_mode, describe)
