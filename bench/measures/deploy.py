#!/usr/bin/env python3
"""Deploys under load: failed HTTP requests while an HTTP agent is replaced
by a new release N times, with requests running all along.

    deploy.py --peer P [--mode fastest|defaults] [--quick] [--json]

Two apps: `draining`, the example `customer-support` (examples/three-agents:
main.py and agentkit.py copied into one directory), which serves GET /health
and finishes what it answers on SIGTERM; and `naive`, http.server answering
every request after 30 ms, with Python's default SIGTERM (die at once,
dropping what it was answering). Two
load threads each make one request after another on a new loopback
connection (2 s connect and read timeouts); a request fails when it is
refused, reset, times out, or does not answer 200. A refused request returns
at once and the load retries at once, so the count of failures depends on
how fast it retries; the outage (summed: from a failed request's start to
the next answered one) does not. After 1 s of load, N
deploys (10; --quick: 2), each followed by ~1 s of load, then the load stops.

roster, five ways (each in its own home, every deploy a freshly copied
source directory with a new --version):
  blue-green + listen   `strategy = "blue-green"` with `[listen]`: each
                        release gets its own socket on the port; at cutover
                        the old one's queued connections move to the new one
                        and the old process drains once it holds none
                        (both apps)
  ..., tcp_migrate_req=0  the same where the kernel does not move queued
                        connections: old and new process share one socket
                        (naive app)
  restart + listen      `strategy = "restart"` with `[listen]`
  restart               `strategy = "restart"`, the agent binds $PORT itself
with `verify_for = "1s"` and a health check on the port every 200 ms,
`ready_after = "300ms"`.

The peers run the same app binding $PORT itself, at their defaults, and
deploy by hand: the new files copied over the app's directory, then the
peer's restart command (`supervisorctl restart`, `pm2 reload` (fork mode: a
restart for a non-Node app), `sv restart`).

Measured in the defaults mode only. Run as root, the measure runs in a
network namespace of its own (loopback only) with net.ipv4.tcp_migrate_req
= 1, whatever the machine's setting, and sets it to 0 for the row that
says so; elsewhere every row runs with the machine's setting.
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import (REPO, free_port, http_request, http_status_body, log,  # noqa: E402
                    measure_main, percentile, wait_until)

EXAMPLES = os.path.join(REPO, "examples", "three-agents")
APP_FILES = (("customer-support/main.py", "main.py"), ("agentkit.py", "agentkit.py"))
MIGRATE_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"
IN_NETNS = "RBENCH_DEPLOY_NETNS"

# Serves GET on the socket roster hands over (LISTEN_FDS) or on $PORT; each
# answer takes 30 ms; SIGTERM is Python's default: the process dies at once.
NAIVE_APP = r'''
import json, os, socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
if "--self-test" in sys.argv[1:]:
    sys.exit(0)
release = os.environ.get("ROSTER_RELEASE")

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.03)
        body = json.dumps({"release": release}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

if os.environ.get("LISTEN_PID") == str(os.getpid()):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=3)
else:
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.serve_forever()
'''
LOAD_THREADS = 2
LOAD_LIMIT = 400_000        # requests, all threads together
LOAD_MAX_S = 900.0          # the load never outlives this
SPACING_S = 1.0             # load between deploys
TIMEOUT_S = 2.0             # connect and read, per request



def copy_app(dest, app="draining"):
    os.makedirs(dest, exist_ok=True)
    if app == "naive":
        with open(os.path.join(dest, "main.py"), "w") as f:
            f.write(NAIVE_APP)
        return dest
    for src, name in APP_FILES:
        shutil.copyfile(os.path.join(EXAMPLES, src), os.path.join(dest, name))
    return dest


def app_files(app):
    return ["main.py"] if app == "naive" else [name for _, name in APP_FILES]


def migrate_setting():
    try:
        with open(MIGRATE_SYSCTL) as f:
            return f.read().strip()
    except OSError:
        return None


def set_migrate(value):
    """Sets the setting (in the measure's own network namespace only)."""
    if os.environ.get(IN_NETNS) != "1":
        return False
    with open(MIGRATE_SYSCTL, "w") as f:
        f.write(value)
    return True


def in_own_netns():
    """Re-runs this measure in a network namespace of its own with the
    setting at 1, when root and `unshare` can; returns only if not."""
    if os.environ.get(IN_NETNS) or os.geteuid() != 0 or not shutil.which("unshare"):
        return
    probe = subprocess.run(["unshare", "-n", "sh", "-c",
                            "ip link set lo up && echo 1 > " + MIGRATE_SYSCTL],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if probe.returncode != 0:
        log("deploy: no network namespace of its own; the machine's tcp_migrate_req (%s) holds"
            % migrate_setting())
        return
    env = dict(os.environ, **{IN_NETNS: "1"})
    argv = [sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    line = 'ip link set lo up && echo 1 > %s && exec "$@"' % MIGRATE_SYSCTL
    os.execvpe("unshare", ["unshare", "-n", "sh", "-c", line, "sh"] + argv, env)


def get_health(port):
    """One GET /health on a new connection: (status, body) or raises."""
    answer = http_request(port, b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n", TIMEOUT_S)
    return http_status_body(answer)


def classify(exc):
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    return type(exc).__name__


def answers(port):
    try:
        return get_health(port)[0] == 200
    except OSError:
        return False


class Load:
    """LOAD_THREADS threads of back-to-back requests until stopped."""

    def __init__(self, port):
        self.port = port
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.kinds = {}
        self.releases = set()
        self.latencies = []     # seconds, answered requests
        self.outage_s = 0.0     # summed: from a failed request's start to the next answer
        self.outage_from = None
        self.deadline = time.monotonic() + LOAD_MAX_S
        self.threads = [threading.Thread(target=self._loop, daemon=True)
                        for _ in range(LOAD_THREADS)]
        for t in self.threads:
            t.start()

    def _loop(self):
        while not self.stop_flag.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if self.ok + self.failed >= LOAD_LIMIT:
                    return
            kind, release = None, None
            t0 = time.perf_counter()
            try:
                status, body = get_health(self.port)
                if status != 200:
                    kind = "status %d" % status if status else "no answer"
                else:
                    i = body.find(b'"release": "')
                    if i >= 0:
                        release = body[i + 12:body.find(b'"', i + 12)].decode("utf-8", "replace")
            except OSError as e:
                kind = classify(e)
            t1 = time.perf_counter()
            with self.lock:
                if kind is None:
                    self.ok += 1
                    self.latencies.append(t1 - t0)
                    if self.outage_from is not None:
                        self.outage_s += t1 - self.outage_from
                        self.outage_from = None
                    if release:
                        self.releases.add(release)
                else:
                    self.failed += 1
                    if self.outage_from is None:
                        self.outage_from = t0
                    self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def finish(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(TIMEOUT_S * 3)
        total = self.ok + self.failed
        return {"requests": total, "failed": self.failed,
                "failed_percent": round(100.0 * self.failed / total, 3) if total else None,
                "failure_kinds": dict(sorted(self.kinds.items())),
                "releases_answering": len(self.releases),
                "outage_s": round(self.outage_s, 3),
                "answered_p99_ms": _ms(percentile(self.latencies, 99)),
                "answered_max_ms": _ms(max(self.latencies) if self.latencies else None)}


def _ms(secs):
    return None if secs is None else round(secs * 1000, 1)


def deploy_loop(port, deploy_one, n, label):
    """Load, then n deploys each followed by SPACING_S of load. deploy_one(i)
    -> (ok, why) does deploy i (1..n). Returns the row."""
    if not wait_until(lambda: answers(port), 30, 0.1):
        return {"error": "the app does not answer on port %d" % port}
    load = Load(port)
    durations, errors = [], []
    try:
        time.sleep(SPACING_S)
        for i in range(1, n + 1):
            t0 = time.monotonic()
            ok, why = deploy_one(i)
            durations.append(time.monotonic() - t0)
            log("deploy %s: %d/%d %s in %.2f s" % (label, i, n, "ok" if ok else "FAILED",
                                                   durations[-1]))
            if not ok:
                errors.append("deploy %d: %s" % (i, why))
            time.sleep(SPACING_S)
    finally:
        row = load.finish()
    row.update({"deploys": n, "deploys_failed": len(errors),
                "deploy_median_s": round(statistics.median(durations), 2) if durations else None,
                "deploy_max_s": round(max(durations), 2) if durations else None})
    if errors:
        row["errors"] = errors[:5]
    log("deploy %s: %s" % (label, row))
    return row


# ---------------------------------------------------------------- roster

ROSTER_VARIANTS = [
    # (label, strategy, listen, app, tcp_migrate_req to set or None)
    ("blue-green + listen", "blue-green", True, "draining", "1"),
    ("blue-green + listen, naive app", "blue-green", True, "naive", "1"),
    ("blue-green + listen, naive app, tcp_migrate_req=0", "blue-green", True, "naive", "0"),
    ("restart + listen", "restart", True, "draining", None),
    ("restart", "restart", False, "draining", None),
]


def roster_config(port, strategy, listen):
    lines = [
        "[agents.support]",
        "command = [%s, \"main.py\"]" % _toml_str(sys.executable),
        "env = { PORT = \"%d\" }" % port,
        'ready_after = "300ms"',
        'drain_timeout = "10s"',
        "",
        "[agents.support.deploy]",
        'strategy = "%s"' % strategy,
        "smoke_test = [%s, \"main.py\", \"--self-test\"]" % _toml_str(sys.executable),
        'verify_for = "1s"',
        "keep = 3",
        "",
    ]
    if listen:
        lines += ["[agents.support.listen]", 'http = "127.0.0.1:%d"' % port, ""]
    lines += [
        "[agents.support.health]",
        'http = "http://127.0.0.1:%d/health"' % port,
        'interval = "200ms"',
        'start_period = "0s"',
        "",
    ]
    return "\n".join(lines)


def _toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def roster_row(cls, label, strategy, listen, app, migrate, n):
    from peers import roster_bin
    if migrate == "0" and not set_migrate(migrate) and migrate_setting() != "0":
        return {"error": "needs net.ipv4.tcp_migrate_req=0 (run as root: the measure then "
                         "uses a network namespace of its own)"}
    if migrate == "1":
        set_migrate("1")    # else the machine's setting, recorded in the row
    peer = cls("defaults")
    port = free_port()
    try:
        peer.setup(1)
        with open(peer.conf, "w") as f:
            f.write(roster_config(port, strategy, listen))
        base = [roster_bin(), "--home", peer.home]
        # No release yet: `up` starts the daemon and reports that the agent
        # cannot start; the first deploy starts it.
        peer.launcher = peer._popen(base + ["up", "-f", peer.conf, "--timeout", "2s"])
        try:
            peer.launcher.wait(60)
        except subprocess.TimeoutExpired:
            return {"error": "roster up did not return"}
        if not wait_until(lambda: peer.roots(), 15):
            return {"error": "the roster daemon is not up"}

        def deploy(version):
            src = copy_app(os.path.join(peer.dir, "src-" + version), app)
            r = subprocess.run(base + ["deploy", "support", src, "--version", version],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=180)
            if r.returncode != 0:
                return False, "exit %d: %s" % (r.returncode, r.stdout.strip()[-300:])
            return True, ""

        ok, why = deploy("r0")
        if not ok:
            return {"error": "the first deploy failed: " + why}
        row = deploy_loop(port, lambda i: deploy("r%d" % i), n, "roster " + label)
        row.update({"how": label, "strategy": strategy, "listen": listen, "app": app,
                    "tcp_migrate_req": migrate_setting()})
        return row
    finally:
        peer.stop()
        set_migrate("1")


# ---------------------------------------------------------------- the peers

def peer_row(cls, n, kind):
    peer = cls("defaults")
    port = free_port()
    app = os.path.join(peer.dir, "app")
    try:
        copy_app(app, kind)
        # `env` execs python: the supervised process is the app itself.
        peer.setup(1, command=["env", "PORT=%d" % port, sys.executable, os.path.join(app, "main.py")])
        name = peer.names[0]
        peer.start(timeout=60)
        if cls.NAME == "supervisord":
            how = "copy files, `supervisorctl restart`"
            from peers import _venv_bin
            argv, env = [_venv_bin("supervisorctl"), "-c", peer.conf, "restart", name], None
        elif cls.NAME == "pm2":
            how = "copy files, `pm2 reload` (fork mode)"
            from peers import pm2_bin
            argv, env = [pm2_bin(), "reload", name], peer.status_env()
        elif cls.NAME == "runit":
            how = "copy files, `sv restart`"
            from peers import _which
            argv, env = [_which("sv"), "restart", os.path.join(peer.svdir, name)], None
        else:
            return {"error": "no deploy for %s" % cls.NAME}

        def deploy(i):
            src = copy_app(os.path.join(peer.dir, "src-r%d" % i), kind)
            for f in app_files(kind):     # the hand-made deploy: new files in place
                shutil.copyfile(os.path.join(src, f), os.path.join(app, f + ".new"))
                os.replace(os.path.join(app, f + ".new"), os.path.join(app, f))
            r = subprocess.run(argv, env=env, cwd=peer.dir, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=120)
            if r.returncode != 0:
                return False, "exit %d: %s" % (r.returncode, r.stdout.strip()[-300:])
            return True, ""

        row = deploy_loop(port, deploy, n, cls.NAME)
        row["how"] = how if kind == "draining" else how + ", naive app"
        row["app"] = kind
        return row
    finally:
        peer.stop()


def run_mode(cls, mode, quick):
    if mode != "defaults" and "defaults" in cls.MODES:
        return {"skip": True, "note": "deploy is measured in the defaults mode only"}
    n = 2 if quick else 10
    rows = []
    if cls.NAME == "roster":
        for label, strategy, listen, app, migrate in ROSTER_VARIANTS:
            try:
                row = roster_row(cls, label, strategy, listen, app, migrate, n)
            except Exception as e:
                row = {"error": "%s: %s" % (type(e).__name__, e)}
            row.setdefault("how", label)
            rows.append(row)
    else:
        for kind in ("draining", "naive"):
            try:
                row = peer_row(cls, n, kind)
            except Exception as e:
                row = {"error": "%s: %s" % (type(e).__name__, e)}
            rows.append(row)
    return {"rows": rows, "load_threads": LOAD_THREADS, "spacing_s": SPACING_S}


def describe(r):
    if r.get("skip"):
        return r["note"]
    if "rows" not in r:
        return r.get("error", "?")
    parts = []
    for row in r["rows"]:
        if "requests" not in row:
            parts.append("%s: %s" % (row.get("how"), row.get("error")))
        else:
            parts.append("%s: %d of %d requests failed (%s; %.2f s without an answer) over "
                         "%d deploys, median %.2f s"
                         % (row["how"], row["failed"], row["requests"],
                            ", ".join("%s %d" % kv for kv in row["failure_kinds"].items()) or "none",
                            row["outage_s"], row["deploys"], row["deploy_median_s"] or 0))
    return "; ".join(parts)


if __name__ == "__main__":
    in_own_netns()
    measure_main("deploy", run_mode, describe)
