"""Plumbing shared by the three example agents: one log line per event,
counters for /health, the health server, graceful stop on SIGTERM/SIGINT,
and small file helpers. Standard library only (Python 3.11+).

Each agent calls configure(AGENT, DEFAULT_PORT) once at import time.
"""

import json
import os
import signal
import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

AGENT = "agent"
DEFAULT_PORT = 8700


def configure(agent, default_port):
    """Names the agent (log prefix, /health) and its default port."""
    global AGENT, DEFAULT_PORT
    AGENT = agent
    DEFAULT_PORT = default_port


def log(message):
    """One line per event on stdout, prefixed with the agent's name."""
    line = f"{AGENT}: " + str(message).replace("\r", "\\r").replace("\n", "\\n")
    try:
        print(line, flush=True)
    except (OSError, ValueError):
        pass  # stdout is gone (the supervisor went away): keep working anyway


class Stats:
    """Counters read by the /health handler thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.handled = 0
        self.failed = 0
        self.details = {}  # extra, agent-specific fields for /health

    def count(self, field, by=1):
        with self.lock:
            setattr(self, field, getattr(self, field) + by)

    def count_detail(self, field, by=1):
        with self.lock:
            self.details[field] = self.details.get(field, 0) + by

    def health(self):
        with self.lock:
            return {
                "status": "stopping" if stopping() else "ok",
                "agent": AGENT,
                "pid": os.getpid(),
                "release": os.environ.get("ROSTER_RELEASE"),
                "handled": self.handled,
                "failed": self.failed,
                "uptime_secs": round(time.monotonic() - self.started, 1),
                **self.details,
            }


# Set from the signal handler, read by the main loop. A plain flag rather than
# a threading.Event: Event.set() takes a lock the interrupted main thread may
# be holding, and a signal handler must not block.
_stop_signal = None


def on_signal(signum, _frame):
    """The handler for SIGTERM and SIGINT: finish the current item, then stop."""
    global _stop_signal
    _stop_signal = signum


def stopping():
    return _stop_signal is not None


def sleep_unless_stopped(seconds):
    deadline = time.monotonic() + seconds
    while not stopping():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, 0.1))


def port_from_env():
    raw = os.environ.get("PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        port = int(raw)
        if not 0 <= port <= 65535:
            raise ValueError
        return port
    except ValueError:
        log(f"error: PORT={raw!r} is not a port number; using {DEFAULT_PORT}")
        return DEFAULT_PORT


def inherited_socket():
    """The listening socket roster hands over (systemd's protocol: fd 3,
    LISTEN_FDS, LISTEN_PID set to our own pid), or None. Old and new
    versions of the agent accept on it during a blue-green deploy, so no
    connection is refused while one replaces the other."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    if count < 1:
        return None
    return socket.socket(fileno=3)


_server = None


def start_health_server(port, stats):
    """Serves GET /health on 127.0.0.1:port (or on the socket roster hands
    over) in a thread.

    Returns the port actually served, or None when the port cannot be bound:
    the agent then carries on without it.
    """
    global _server

    class Handler(BaseHTTPRequestHandler):
        server_version = f"{AGENT}/1"
        timeout = 5

        def do_GET(self):
            if urlsplit(self.path).path == "/health":
                if fault() == "unhealthy":
                    self.reply(503, {**stats.health(), "status": "failing (FAULT=unhealthy)"})
                else:
                    self.reply(200, stats.health())
            else:
                self.reply(404, {"error": "not found", "try": "/health"})

        def reply(self, status, payload):
            body = (json.dumps(payload) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass  # no access log: a poller would flood the agent's log

    inherited = inherited_socket()
    try:
        if inherited is not None:
            server = ThreadingHTTPServer(
                inherited.getsockname()[:2], Handler, bind_and_activate=False
            )
            server.socket.close()
            server.socket = inherited
            log(f"serving on the socket roster handed over ({os.environ.get('LISTEN_FDNAMES', '')})")
        else:
            server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as error:
        log(
            f"error: cannot serve /health on 127.0.0.1:{port}: "
            f"{error.strerror or error}; carrying on without a health endpoint"
        )
        return None
    # Requests in flight finish before the agent exits (stop_health_server).
    server.daemon_threads = False
    server.block_on_close = True
    threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name="health",
        daemon=True,
    ).start()
    _server = server
    return server.server_address[1]


def stop_health_server():
    """Stops accepting and waits for the requests in flight: a deploy's
    old version drains this way while the new one accepts on the same
    socket. Closing our copy of an inherited socket leaves it open for the
    other processes that hold it."""
    global _server
    server, _server = _server, None
    if server is None:
        return
    server.shutdown()
    server.server_close()


def unique_path(directory, name):
    """directory/name, or directory/STEM-2.EXT ... when that is taken."""
    candidate = directory / name
    if not candidate.exists():
        return candidate
    dot = name.find(".", 1)
    stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    for n in range(2, 100_000):
        candidate = directory / f"{stem}-{n}{ext}"
        if not candidate.exists():
            return candidate
    return directory / f"{stem}-{time.time_ns()}{ext}"


def write_atomically(path, text):
    """Writes a hidden temporary file and renames it, so that readers (the
    report generator) never see half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def seed_enabled():
    return os.environ.get("SEED_SAMPLES", "").strip().lower() in ("1", "true", "yes", "on")


def utc_now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stop_signal_name():
    """The name of the signal that asked us to stop (e.g. "SIGTERM")."""
    return signal.Signals(_stop_signal).name if _stop_signal is not None else "none"


# Fault modes, to watch roster respond: write one word into a file named
# FAULT in the agent's folder, remove the file to stop.
#   leak       memory grows by 10 MiB a second (freed when FAULT goes)
#   spin       a thread burns a CPU core
#   unhealthy  /health answers 503
#   errors     20 "error:" lines a second
FAULTS = ("leak", "spin", "unhealthy", "errors")
_fault = None


def fault():
    return _fault


def _read_fault():
    try:
        with open("FAULT", encoding="utf-8") as file:
            word = file.read(64).strip().lower()
    except OSError:
        return None
    return word if word in FAULTS else None


def _fault_loop():
    global _fault
    leaked = []
    spinning = []
    count = 0
    while not stopping():
        mode = _read_fault()
        if mode != _fault:
            log(f"fault mode: {mode or 'off'}")
            _fault = mode
            if mode != "leak":
                leaked.clear()
        if mode == "leak" and len(leaked) < 400:
            leaked.append(bytearray(10 * 1024 * 1024))
        if mode == "spin" and not spinning:
            thread = threading.Thread(target=_spin, name="spin", daemon=True)
            spinning.append(thread)
            thread.start()
        if mode != "spin":
            spinning.clear()
        if mode == "errors":
            for _ in range(20):
                count += 1
                log(f"error: simulated failure {count} (FAULT=errors)")
        time.sleep(1.0 if mode == "leak" else 0.5 if mode is None else 1.0)


def _spin():
    while _fault == "spin" and not stopping():
        pass


def start(stats):
    """Installs the graceful-stop handlers, logs the start, serves /health and
    watches for a FAULT file."""
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    port = port_from_env()
    log(f"starting: pid={os.getpid()} port={port} cwd={os.getcwd()}")
    bound = start_health_server(port, stats)
    if bound is not None:
        log(f"health endpoint on http://127.0.0.1:{bound}/health")
    threading.Thread(target=_fault_loop, name="faults", daemon=True).start()


def watch(folder, pending, handle, ensure_dirs, poll_seconds, stats):
    """Until asked to stop: every poll_seconds, hands each file pending(skip)
    lists (as (mtime, name, stat) tuples) to handle(folder / name, stats).

    A file that could be neither handled nor moved away is not retried until
    it changes, so that the log is not flooded on every poll.
    """
    skip = set()
    while not stopping():
        try:
            ensure_dirs()
            for _mtime, name, info in pending(skip):
                if stopping():
                    break
                try:
                    handle(folder / name, stats)
                except OSError:
                    skip.add((name, info.st_mtime_ns, info.st_size))
        except Exception as error:  # noqa: BLE001 - e.g. the folder removed under our feet
            log(f"error: poll failed: {type(error).__name__}: {error}")
        sleep_unless_stopped(poll_seconds)
    stop_health_server()

