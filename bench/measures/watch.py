#!/usr/bin/env python3
"""The cost of watching: the daemon's own CPU over a window while N idle
children (`sleep`) run, in three settings:

  - `no rules`: `watch = []`, no health check (nothing to sample or probe:
    the idle cost, as before rules existed);
  - `rules`: the graded default rules (every agent sampled every 5 s);
  - `rules + http`: the defaults plus an HTTP health check per agent every
    5 s (against one loopback server the measure runs, so the figure is
    the daemon's cost of probing, not the children's of answering).

    watch.py --peer P [--mode defaults] [--quick] [--json]

roster only: supervisord, PM2 and runit have no built-in resource rules or
HTTP health checks. N is 100 and 1000 (--quick: 100); the window is 60 s
after a 12 s warm-up (--quick: 15 s). Defaults mode only.
"""

import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import log, measure_main, sweep  # noqa: E402
import peers as peers_mod  # noqa: E402


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args):
        pass


def ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def one(n, setting, window, port):
    directory = tempfile.mkdtemp(prefix="rbench-watch-", dir="/tmp")
    home = os.path.join(directory, "home")
    conf = os.path.join(directory, "roster.toml")
    lines = []
    for i in range(n):
        lines.append("[agents.c%04d]" % i)
        lines.append('command = ["sleep", "100000.%06d"]' % i)
        if setting == "no rules":
            lines.append("watch = []")
        if setting == "rules + http":
            lines.append('health = { http = "http://127.0.0.1:%d/health", interval = "5s" }' % port)
        lines.append("")
    with open(conf, "w") as f:
        f.write("\n".join(lines))
    binary = peers_mod.roster_bin()
    try:
        subprocess.run([binary, "--home", home, "up", "-f", conf, "--timeout", "600s"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       cwd=directory, timeout=900)
        with open(os.path.join(home, "daemon.lock")) as f:
            daemon = int(f.read().split()[0])
        time.sleep(12 if window >= 60 else 6)  # warm-up: first samples and probes
        hz = os.sysconf("SC_CLK_TCK")
        t0, c0 = time.monotonic(), ticks(daemon)
        time.sleep(window)
        t1, c1 = time.monotonic(), ticks(daemon)
        return {"children": n, "setting": setting, "window_s": round(t1 - t0, 1),
                "cpu_percent": round((c1 - c0) / hz / (t1 - t0) * 100, 3)}
    finally:
        subprocess.run([binary, "--home", home, "down"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
        sweep(directory)


def run_mode(cls, mode, quick):
    if cls.NAME != "roster":
        return {"error": "%s has no built-in resource rules or HTTP health checks" % cls.NAME}
    if mode != "defaults":
        return {"skip": True, "note": "watch is measured in the defaults mode only"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    rows = []
    try:
        for n in ([100] if quick else [100, 1000]):
            for setting in ("no rules", "rules", "rules + http"):
                r = one(n, setting, 15 if quick else 60, port)
                log("watch %d %s: %s" % (n, setting, r))
                rows.append(r)
    finally:
        server.shutdown()
    return {"rows": rows}


def describe(r):
    if r.get("skip"):
        return r["note"]
    return "; ".join("%d children, %s: %.3f%% of a core" % (row["children"], row["setting"],
                                                            row["cpu_percent"])
                     for row in r.get("rows", [])) or r.get("error", "?")


if __name__ == "__main__":
    measure_main("watch", run_mode, describe)
