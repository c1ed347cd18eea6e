"""Shared helpers for the bench: /proc reading, cleanup, temp dirs, stats,
and the command line every measure script has.

Standard library only.
"""

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH)
PEERS_DIR = os.path.join(BENCH, ".peers")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# Where every temp dir of this process lives. bench/run sets RBENCH_ROOT so
# it can sweep whatever a killed measure left behind; alone, a measure makes
# its own. Kept short: roster's and supervisord's unix sockets live below it.
ROOT = os.environ.get("RBENCH_ROOT") or ""


def log(*parts):
    """Progress to stderr (stdout carries the human line and the JSON)."""
    print(*parts, file=sys.stderr, flush=True)


def root_dir():
    global ROOT
    if not ROOT:
        ROOT = tempfile.mkdtemp(prefix="rbench-", dir="/tmp")
        _OWN_ROOT.append(ROOT)
    os.makedirs(ROOT, exist_ok=True)
    return ROOT


_OWN_ROOT = []


def make_tmp(prefix):
    return tempfile.mkdtemp(prefix=prefix + "-", dir=root_dir())


def new_token():
    """A per-instance number that makes the children's argv unique, e.g.
    `sleep 100000.482913` (GNU sleep takes a fraction), so a stray match
    from another run or another program is impossible."""
    return "100000.%06d" % random.randrange(1, 1000000)


# ---------------------------------------------------------------- /proc

def read_file(path, limit=65536):
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def free_port():
    """A loopback port nobody listens on right now (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(port, request, timeout):
    """Sends `request` (bytes) on a new loopback connection, reads the
    answer to its end; raises on connection errors and timeouts."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(request)
        chunks = []
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def http_status_body(answer):
    """(status, body) of an HTTP answer; status 0 when it is not one."""
    head, _, body = answer.partition(b"\r\n\r\n")
    try:
        status = int(head.split()[1])
    except (IndexError, ValueError):
        status = 0
    return status, body


def cmdline(pid):
    """argv of pid as a tuple of str, or None if gone (empty for zombies)."""
    data = read_file("/proc/%d/cmdline" % pid)
    if data is None:
        return None
    if not data:
        return ()
    return tuple(data.rstrip(b"\0").decode("utf-8", "replace").split("\0"))


def argv_key(argv):
    """argv compared by program basename: PM2 runs `sleep` as /usr/bin/sleep."""
    if not argv:
        return ()
    return (os.path.basename(argv[0]),) + tuple(argv[1:])


def stat_fields(pid):
    """/proc/PID/stat fields after the comm: index 0 is field 3 (state)."""
    data = read_file("/proc/%d/stat" % pid)
    if not data:
        return None
    text = data.decode("utf-8", "replace")
    return text[text.rfind(")") + 2:].split()


def ppid_of(pid):
    f = stat_fields(pid)
    return int(f[1]) if f else None


def cpu_ticks(pid):
    """utime + stime (fields 14 and 15) of pid alone, in clock ticks."""
    f = stat_fields(pid)
    if not f:
        return 0
    return int(f[11]) + int(f[12])


def thread_cpu_ns(pid):
    """{tid: CPU ns} for pid's live threads (/proc/PID/task/*/schedstat):
    finer than clock ticks, but a thread that exits takes its time along."""
    out = {}
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for t in tasks:
        data = read_file("/proc/%d/task/%s/schedstat" % (pid, t))
        if data:
            out[int(t)] = int(data.split()[0])
    return out


def rss_kib(pid):
    data = read_file("/proc/%d/status" % pid)
    if not data:
        return 0
    for line in data.decode().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pss_kib(pid):
    data = read_file("/proc/%d/smaps_rollup" % pid)
    if not data:
        return 0
    for line in data.decode().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def proc_table():
    """{pid: ppid} for every process."""
    table = {}
    for pid in all_pids():
        f = stat_fields(pid)
        if f:
            table[pid] = int(f[1])
    return table


def descendants(roots, table=None):
    """Every descendant of roots (not the roots)."""
    table = table if table is not None else proc_table()
    kids = {}
    for pid, ppid in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [r for r in roots]
    seen = set(todo)
    while todo:
        for k in kids.get(todo.pop(), ()):
            if k not in seen:
                seen.add(k)
                out.append(k)
                todo.append(k)
    return out


def alive(pid):
    f = stat_fields(pid)
    return bool(f) and f[0] != "Z"


def read_last_pid():
    with open("/proc/sys/kernel/ns_last_pid") as f:
        return int(f.read())


PID_MAX = int(open("/proc/sys/kernel/pid_max").read())


class NewProcScanner:
    """Finds processes created after construction whose argv is `argv`,
    by looking only at pids past /proc/sys/kernel/ns_last_pid (cheap
    enough to poll every millisecond or faster).

    A new pid first shows its parent's argv (fork) and then the child's
    (exec); first_seen keeps the time the pid was first seen at all."""

    def __init__(self, argv, exclude=()):
        self.argv = argv_key(argv)
        self.exclude = set(exclude)
        self.next = read_last_pid() + 1
        self.pending = {}   # pid -> [added_ns, first_seen_ns or None]
        self.matched = {}   # pid -> (first_seen_ns, matched_ns)

    def _new_pids(self, cur):
        if cur + 1 >= self.next:
            rng = list(range(self.next, cur + 1))
        else:  # wrapped around pid_max
            rng = list(range(self.next, PID_MAX)) + list(range(1, cur + 1))
        self.next = cur + 1
        return rng

    def poll(self):
        """Returns the pids newly matched by this call."""
        now = time.perf_counter_ns()
        for pid in self._new_pids(read_last_pid()):
            if pid not in self.exclude and pid not in self.matched:
                self.pending[pid] = [now, None]
        found = []
        for pid, entry in list(self.pending.items()):
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    data = f.read(4096)
            except OSError:
                # not visible yet (just allocated) or gone already
                if entry[1] is not None or now - entry[0] > 50_000_000:
                    del self.pending[pid]
                continue
            t = time.perf_counter_ns()
            if entry[1] is None:
                entry[1] = t
            argv = tuple(data.rstrip(b"\0").decode("utf-8", "replace").split("\0")) if data else ()
            if argv_key(argv) == self.argv:
                self.matched[pid] = (entry[1], t)
                del self.pending[pid]
                found.append(pid)
            elif t - entry[1] > 3_000_000_000:
                del self.pending[pid]  # never exec'd into our argv
        return found


def kill_and_wait_replacement(pid, argv, timeout=30.0, poll_s=0.0002):
    """SIGKILL pid, then poll new pids (every poll_s) until one runs argv:
    (new pid, ns until it was first seen, ns until it ran argv), or None
    when none did within timeout. Sleeping between polls beats spinning on
    2 cores: the supervisor and the dying child need the CPU too."""
    scanner = NewProcScanner(argv, exclude=[pid])
    t0 = time.perf_counter_ns()
    os.kill(pid, signal.SIGKILL)
    while True:
        found = scanner.poll()
        if found:
            first, matched = scanner.matched[found[0]]
            return found[0], first - t0, matched - t0
        if time.perf_counter_ns() - t0 > timeout * 1e9:
            return None
        time.sleep(poll_s)


# ---------------------------------------------------------------- cleanup

_CLEANUPS = []


def on_cleanup(fn):
    """Register fn to run at exit, on error, on Ctrl-C and on SIGTERM."""
    _CLEANUPS.append(fn)
    return fn


def remove_cleanup(fn):
    if fn in _CLEANUPS:
        _CLEANUPS.remove(fn)


def run_cleanups():
    """Run (and forget) every registered cleanup, newest first."""
    while _CLEANUPS:
        fn = _CLEANUPS.pop()
        try:
            fn()
        except BaseException as e:  # keep cleaning, even on a second Ctrl-C
            log("cleanup error:", repr(e))


def final_cleanup():
    """At exit: the registered cleanups, then a sweep of this process's
    own temp root as a last resort. Not to be cut short by a signal."""
    with signals_held():
        run_cleanups()
        for root in _OWN_ROOT:
            sweep(root)
            shutil.rmtree(root, ignore_errors=True)


class signals_held:
    """Ignore SIGINT/SIGTERM/SIGHUP inside the block (in the main thread):
    the kill-and-sweep part of a teardown must run to its end."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        import threading
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = [(s, signal.signal(s, signal.SIG_IGN)) for s in self.SIGNALS]
        return self

    def __exit__(self, *exc):
        if self.old:
            for s, h in self.old:
                signal.signal(s, h)
        return False


def _signalled(signum, frame):
    # Turn SIGTERM/SIGHUP into an exception so every finally block runs.
    raise KeyboardInterrupt("signal %d" % signum)


def install_handlers():
    atexit.register(final_cleanup)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _signalled)


def _own_ancestry():
    out, pid = set(), os.getpid()
    while pid and pid not in out:
        out.add(pid)
        pid = ppid_of(pid) or 0
    return out


def sweep(path, sig=signal.SIGKILL, rounds=20):
    """Kill every process whose argv mentions `path` or whose cwd is under
    it: whatever a peer started for the bench (supervisors, their helpers,
    orphaned children). Returns how many were killed."""
    if not path or not path.startswith("/tmp/"):
        return 0
    path = path.rstrip("/")
    mine = _own_ancestry()
    killed = 0
    for _ in range(rounds):
        hit = []
        for pid in all_pids():
            if pid in mine:
                continue
            try:
                cwd = os.readlink("/proc/%d/cwd" % pid)
            except OSError:
                cwd = ""
            argv = cmdline(pid) or ()
            if cwd == path or cwd.startswith(path + "/") or any(path in a for a in argv):
                if alive(pid):
                    hit.append(pid)
        if not hit:
            break
        for pid in hit:
            try:
                os.kill(pid, sig)
                killed += 1
            except OSError:
                pass
        time.sleep(0.1)
    return killed


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    want = min(want, 1 << 20)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass


# ---------------------------------------------------------------- stats

def percentile(values, p):
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def summary_ms(values_ns):
    ms = [v / 1e6 for v in values_ns]
    if not ms:
        return {"runs": 0}
    return {
        "runs": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
    }


def wait_until(cond, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---------------------------------------------------------------- status in a loop

class StatusLoop:
    """A peer's status command run over and over in a thread of its own:
    one starts `every` seconds after the previous one started (at once if
    that one took longer), each with `timeout`. Results are kept per phase,
    the value of `.phase` when the query started (None: no query runs).
    A query answered when its exit code is in the peer's STATUS_ANSWERED.
    `excuse(phase)`, called after a failed query, says whether not to
    count it as failed (e.g. the supervisor has exited by then)."""

    def __init__(self, peer, every, timeout, excuse=None):
        import threading
        self.peer = peer
        self.every = every
        self.timeout = timeout
        self.excuse = excuse
        self.phase = None
        self.phases = {}
        self.busy = False      # a query is running
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._done.set()
        self._thread.join(self.timeout + 10)

    def pause(self):
        """No new query; returns once the one running (it counts for the
        phase it started in) has ended."""
        self.phase = None
        wait_until(lambda: not self.busy, self.timeout + 10, 0.005)

    def _entry(self, phase):
        return self.phases.setdefault(phase, {"ns": [], "failed": 0, "timed_out": 0,
                                              "excused": 0, "first_failure": None})

    def _run(self):
        import subprocess
        argv, env = self.peer.status_argv(), self.peer.status_env()
        while not self._done.is_set():
            phase = self.phase
            if phase is None:
                self._done.wait(0.01)
                continue
            self.busy = True
            if self.phase is None:   # paused meanwhile
                self.busy = False
                continue
            t0 = time.perf_counter_ns()
            failure = None
            try:
                r = subprocess.run(argv, env=env, cwd=self.peer.dir, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   timeout=self.timeout)
                took = time.perf_counter_ns() - t0
                if r.returncode not in self.peer.STATUS_ANSWERED:
                    said = r.stdout.decode("utf-8", "replace").strip().splitlines()
                    failure = "exit %d: %s" % (r.returncode, said[-1][-200:] if said else "")
            except subprocess.TimeoutExpired:
                failure = "timed out"
            entry = self._entry(phase)
            if failure is None:
                entry["ns"].append(took)
            elif self.excuse and self.excuse(phase):
                entry["excused"] += 1
            elif failure == "timed out":
                entry["timed_out"] += 1
            else:
                entry["failed"] += 1
                entry["first_failure"] = entry["first_failure"] or failure
            self.busy = False
            rest = self.every - (time.perf_counter_ns() - t0) / 1e9
            if rest > 0:
                self._done.wait(rest)

    def summary(self, phase):
        """ran, answered, failed, timed_out, latency of the answered ones."""
        e = self._entry(phase)
        out = summary_ms(e["ns"])
        out["answered"] = out.pop("runs")
        out["ran"] = out["answered"] + e["failed"] + e["timed_out"] + e["excused"]
        out["failed"] = e["failed"]
        out["timed_out"] = e["timed_out"]
        if e["excused"]:
            out["excused"] = e["excused"]
        if e["first_failure"]:
            out["first_failure"] = e["first_failure"]
        return out


# ---------------------------------------------------------------- CLI

def measure_main(name, run_mode, describe):
    try:
        _measure_main(name, run_mode, describe)
    except KeyboardInterrupt:
        log("%s: interrupted; everything started was stopped" % name)
        final_cleanup()
        sys.exit(130)


def _measure_main(name, run_mode, describe):
    """The command line of every measure script:
        NAME.py --peer P [--mode fastest|defaults] [--quick] [--json]
    run_mode(peer_cls, mode, quick) -> dict; describe(dict) -> str
    """
    import peers as peers_mod
    ap = argparse.ArgumentParser(description="bench measure: " + name)
    ap.add_argument("--peer", required=True, choices=sorted(peers_mod.PEERS))
    ap.add_argument("--mode", choices=["fastest", "defaults"],
                    help="default: every mode the peer has")
    ap.add_argument("--quick", action="store_true", help="smoke mode: seconds, small counts")
    ap.add_argument("--json", action="store_true", help="also print one JSON object on stdout")
    args = ap.parse_args()
    install_handlers()
    raise_nofile()
    cls = peers_mod.PEERS[args.peer]
    out = {"measure": name, "peer": args.peer, "quick": args.quick, "results": {}}
    ok, why = cls.available()
    if not ok:
        out["error"] = why
        print("%s %s: %s" % (name, args.peer, why), flush=True)
    else:
        modes = [args.mode] if args.mode else list(cls.MODES)
        for mode in modes:
            if mode not in cls.MODES:
                mode_used = cls.MODES[0]
                note = "%s has no %s settings; measured as %s" % (args.peer, mode, mode_used)
            else:
                mode_used, note = mode, None
            try:
                res = run_mode(cls, mode_used, args.quick)
            except KeyboardInterrupt:
                raise
            except Exception as e:
                import traceback
                traceback.print_exc(file=sys.stderr)
                res = {"error": "%s: %s" % (type(e).__name__, e)}
            finally:
                run_cleanups()
            if note:
                res["note"] = (res.get("note", "") + " " + note).strip()
            out["results"][mode] = res
            print("%s %s %s: %s" % (name, args.peer, mode, describe(res)), flush=True)
    if args.json:
        print(json.dumps(out), flush=True)
