"""One adapter per supervisor, all with the same interface:

    p = Peer(mode)                       # its own temp dir; mode fastest|defaults
    p.setup(n, command=None, mode=None, log=False)  # the config for n children
    p.setup(0, programs=[(name, argv), ...], log=True, keep_logs=True)
                                         # named children with their own argv
    p.start(timeout)                     # returns when the supervisor is up
    p.launch() / p.wait_launched(proc)   # the same in two halves (cold start)
    p.wait_children(n, timeout)          # until n children exist
    p.child_pids()                       # the supervised processes
    p.supervisor_pids()                  # the supervisor's own processes
    p.status_argv()                      # its status command
    p.launch_stop()                      # its stop command, without waiting
    p.log_files(name)                    # that child's log files, oldest first
    p.stop()                             # everything gone, temp dir removed

Children are `sleep 100000.NNNNNN` (a per-instance number), so they can
be told apart from anything else on the machine; each child's working
directory is the peer's temp dir, so a sweep of that dir finds every
process the peer started even if the supervisor itself was killed.
"""

import json
import os
import shutil
import signal
import subprocess
import time

from common import (PEERS_DIR, REPO, alive, argv_key, cmdline, log, make_tmp, new_token,
                    on_cleanup, proc_table, read_file, remove_cleanup, signals_held, sweep,
                    wait_until)


def _which(*candidates):
    for c in candidates:
        if os.path.isabs(c):
            if os.access(c, os.X_OK):
                return c
        else:
            found = shutil.which(c)
            if found:
                return found
    return None


def _tail(path, n=2000):
    data = read_file(path, 1 << 20) or b""
    return data[-n:].decode("utf-8", "replace")


class Peer:
    NAME = "?"
    STATUS = "?"
    MODES = ("fastest", "defaults")
    LOG_PREFIX = 0          # bytes each log line carries before the child's text
    STATUS_ANSWERED = (0,)  # exit codes of the status command that mean it answered
    # How long a child must have run before a kill counts as an ordinary
    # death rather than a quick one (seconds), per mode.
    STABLE_AFTER = {"fastest": 0.2, "defaults": 0.2}

    def __init__(self, mode="fastest"):
        self.mode = mode
        self.dir = make_tmp(self.NAME)
        self.token = new_token()
        self.child_argvs = set()
        self.names = []
        self.programs = []
        self.keep_logs = False
        self.launcher = None
        self.stopped = False
        on_cleanup(self.stop)

    # -- to override
    @classmethod
    def available(cls):
        return False, "not installed"

    @classmethod
    def version(cls):
        return None

    def _write_config(self, log):
        """Write the config for self.programs (and self.keep_logs)."""
        raise NotImplementedError

    def launch(self):
        """Start the start command without waiting; returns a Popen."""
        raise NotImplementedError

    def wait_launched(self, proc, timeout):
        """Wait for the start command to finish (and check it worked)."""
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError("%s start command did not return within %ss" % (self.NAME, timeout))
        if rc != 0:
            raise RuntimeError("%s start command exited %s: %s" % (self.NAME, rc, _tail(self.out_path)))

    def roots(self):
        """The supervisor's top process(es)."""
        raise NotImplementedError

    def status_argv(self):
        raise NotImplementedError

    def status_env(self):
        return None

    def log_files(self, name):
        raise NotImplementedError

    def launch_stop(self):
        """Start the stop command without waiting: a Popen, or None when
        the stop is a signal (runit)."""
        raise NotImplementedError

    def _graceful_stop(self):
        raise NotImplementedError

    # -- common
    @property
    def out_path(self):
        return os.path.join(self.dir, "start.out")

    def default_command(self):
        return ["sleep", self.token]

    def setup(self, n, command=None, mode=None, log=False, programs=None, keep_logs=False):
        """Config for n children running `command` (argv; default an idle
        `sleep 100000.NNNNNN`), in `mode` (default: the one given at
        construction). With log=True there is one child, `flood`, whose
        output the peer captures into its log file. `programs`, a list of
        (name, argv), names the children and their argv instead (n and
        command unused). keep_logs=True keeps every rotated log file
        (rotation itself stays as the mode has it), so lines can be counted
        after a long flood."""
        if mode:
            self.mode = mode
        if programs is None:
            command = list(command or self.default_command())
            names = ["flood"] if log else ["c%04d" % i for i in range(1, n + 1)]
            programs = [(name, command) for name in names]
        self.programs = [(name, list(argv)) for name, argv in programs]
        self.names = [name for name, _ in self.programs]
        self.child_argvs = {argv_key(argv) for _, argv in self.programs}
        self.keep_logs = keep_logs
        self._write_config(log)

    def start(self, timeout=60):
        proc = self.launch()
        self.wait_launched(proc, timeout)
        if not wait_until(lambda: self.roots(), 15):
            raise RuntimeError("%s is not up after its start command" % self.NAME)

    def _open_out(self):
        return open(self.out_path, "ab")

    def _split(self, table=None):
        """(supervisor pids, child pids) from one walk of the process tree:
        children are descendants running a child argv; supervisor pids are
        the roots and every descendant not at or below a child."""
        roots = [r for r in self.roots() if r]
        table = table if table is not None else proc_table()
        kids = {}
        for pid, ppid in table.items():
            kids.setdefault(ppid, []).append(pid)
        sup, children = [], []
        todo = [r for r in roots if r in table]
        seen = set(todo)
        while todo:
            pid = todo.pop()
            if pid not in roots and argv_key(cmdline(pid)) in self.child_argvs:
                if alive(pid):
                    children.append(pid)
                continue  # a child's own descendants are not the supervisor's
            sup.append(pid)
            for k in kids.get(pid, ()):
                if k not in seen:
                    seen.add(k)
                    todo.append(k)
        return sup, children

    def supervisor_pids(self):
        return self._split()[0]

    def child_pids(self):
        return self._split()[1]

    def start_children(self, n, timeout=180.0):
        """Starts the peer and waits until its n children run: None, or why not."""
        t0 = time.monotonic()
        try:
            self.start(timeout=timeout)
        except RuntimeError as e:
            return str(e)
        got = self.wait_children(n, max(1.0, timeout - (time.monotonic() - t0)), interval=0.5)
        if got < n:
            return "reached %d of %d children in %.0f s" % (got, n, timeout)
        return None

    def wait_children(self, n, timeout, interval=0.2):
        """Until n children run; returns how many there were at the end."""
        deadline = time.monotonic() + timeout
        got = 0
        while True:
            got = len(self.child_pids())
            if got >= n or time.monotonic() >= deadline:
                return got
            time.sleep(interval)

    def status_query(self, timeout=60):
        """Run the status command once: (seconds, returncode, output bytes)."""
        t0 = time.perf_counter()
        r = subprocess.run(self.status_argv(), env=self.status_env(), cwd=self.dir,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        return time.perf_counter() - t0, r.returncode, len(r.stdout)

    def stop(self):
        """Tear down everything; never leaves a process behind."""
        if self.stopped:
            return
        self.stopped = True
        remove_cleanup(self.stop)
        interrupted = None
        try:
            self._graceful_stop()
        except BaseException as e:
            log("%s: graceful stop failed (%r); killing" % (self.NAME, e))
            if isinstance(e, KeyboardInterrupt):
                interrupted = e
        with signals_held():
            if self.launcher and self.launcher.poll() is None:
                try:
                    os.killpg(self.launcher.pid, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    self.launcher.kill()
                    self.launcher.wait(5)
                except Exception:
                    pass
            n = sweep(self.dir)
            if n:
                log("%s: killed %d leftover process(es)" % (self.NAME, n))
            shutil.rmtree(self.dir, ignore_errors=True)
        if interrupted:
            raise interrupted

    def _popen(self, argv, env=None, new_session=True):
        out = self._open_out()
        try:
            return subprocess.Popen(argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=new_session)
        finally:
            out.close()

    def _run(self, argv, timeout, env=None):
        out = self._open_out()
        try:
            return subprocess.run(argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        finally:
            out.close()

    def _wait_gone(self, pids, timeout):
        return wait_until(lambda: not any(alive(p) for p in pids), timeout, 0.05)


# ====================================================================== roster

def roster_bin():
    return os.environ.get("ROSTER_BIN") or os.path.join(REPO, "target", "release", "roster")


class Roster(Peer):
    NAME = "roster"
    STATUS = "roster status --json"
    LOG_PREFIX = 25
    STABLE_AFTER = {"fastest": 0.2, "defaults": 10.5}   # stable_after = 10s

    @classmethod
    def available(cls):
        b = roster_bin()
        if os.access(b, os.X_OK):
            return True, ""
        return False, "not installed (no %s; run cargo build --release)" % b

    @classmethod
    def version(cls):
        try:
            v = subprocess.run([roster_bin(), "--version"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        except Exception:
            return None
        try:
            head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                  capture_output=True, text=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "crates",
                                    "Cargo.toml", "Cargo.lock"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            if head:
                v += " (%s%s)" % (head, "+changes" if dirty else "")
        except Exception:
            pass
        return v

    @property
    def home(self):
        return os.path.join(self.dir, "home")

    @property
    def conf(self):
        return os.path.join(self.dir, "roster.toml")

    def __init__(self, mode="fastest"):
        super().__init__(mode)
        # TOML lines a measure adds to an agent's table: {name: [line, ...]}
        # (set before setup; roster only).
        self.agent_toml = {}

    def _write_config(self, log):
        lines = []
        if log and (self.mode == "fastest" or self.keep_logs):
            lines.append("[log]")
            if self.mode == "fastest":
                lines += ['max_size = "1GiB"', "compress = false"]
            if self.keep_logs:
                lines.append("keep = 10000")
            lines.append("")
        for name, command in self.programs:
            lines.append("[agents.%s]" % name)
            lines.append("command = %s" % json.dumps(command))
            if self.mode == "fastest":
                lines += ['restart_delay = "0s"', 'stable_after = "0s"', "crash_loop = 0"]
            lines += self.agent_toml.get(name, [])
            lines.append("")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines))

    def launch(self):
        self.launcher = self._popen([roster_bin(), "--home", self.home, "up", "-f", self.conf,
                                     "--timeout", "600s"])
        return self.launcher

    def roots(self):
        data = read_file(os.path.join(self.home, "daemon.lock"))
        try:
            pid = int(data.split()[0])
        except (AttributeError, ValueError, IndexError):
            return []
        return [pid] if alive(pid) else []

    def status_argv(self):
        return [roster_bin(), "--home", self.home, "status", "--json"]

    def log_files(self, name):
        d = os.path.join(self.home, "logs")
        return _rotated(d, name + ".log")

    def launch_stop(self):
        return self._popen([roster_bin(), "--home", self.home, "down"])

    def _graceful_stop(self):
        roots = self.roots()
        if not roots:
            return
        self._run([roster_bin(), "--home", self.home, "down"], timeout=120)
        self._wait_gone(roots, 10)


def _rotated(d, base):
    """base.N[.gz] ... base.1, base: oldest first."""
    try:
        names = os.listdir(d)
    except OSError:
        return []
    numbered = []
    for n in names:
        if n.startswith(base + "."):
            rest = n[len(base) + 1:]
            if rest.endswith(".gz"):
                rest = rest[:-3]
            if rest.isdigit():
                numbered.append((int(rest), n))
    out = [os.path.join(d, n) for _, n in sorted(numbered, reverse=True)]
    if base in names:
        out.append(os.path.join(d, base))
    return out


# ================================================================= supervisord

def _venv_bin(name):
    return _which(os.path.join(PEERS_DIR, "venv", "bin", name), name)


class Supervisord(Peer):
    NAME = "supervisord"
    STATUS = "supervisorctl status"
    STATUS_ANSWERED = (0, 3)   # 3: it answered, and some program is stopped or exited
    STABLE_AFTER = {"fastest": 0.2, "defaults": 1.5}    # startsecs = 1

    @classmethod
    def available(cls):
        if _venv_bin("supervisord") and _venv_bin("supervisorctl"):
            return True, ""
        return False, "not installed (bench/run installs it into bench/.peers/venv)"

    @classmethod
    def version(cls):
        try:
            return subprocess.run([_venv_bin("supervisord"), "--version"], capture_output=True,
                                  text=True, timeout=20).stdout.strip()
        except Exception:
            return None

    @property
    def conf(self):
        return os.path.join(self.dir, "supervisord.conf")

    @property
    def pidfile(self):
        return os.path.join(self.dir, "supervisord.pid")

    def _write_config(self, log):
        d = self.dir
        os.makedirs(os.path.join(d, "childlogs"), exist_ok=True)
        os.makedirs(os.path.join(d, "logs"), exist_ok=True)
        lines = [
            "[unix_http_server]", "file=%s/s.sock" % d, "",
            "[supervisord]", "logfile=%s/supervisord.log" % d, "pidfile=%s" % self.pidfile,
            "childlogdir=%s/childlogs" % d, "user=root" if os.geteuid() == 0 else "", "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", "serverurl=unix://%s/s.sock" % d, "",
        ]
        for name, command in self.programs:
            cmd = " ".join(_shquote(a) for a in command)
            lines += ["[program:%s]" % name, "command=%s" % cmd, "autostart=true",
                      "directory=%s" % d]
            if self.mode == "fastest":
                lines += ["startsecs=0", "autorestart=true", "startretries=1000000"]
            if log:
                lines += ["stdout_logfile=%s/logs/%s.log" % (d, name), "redirect_stderr=true"]
                if self.mode == "fastest":
                    lines += ["stdout_logfile_maxbytes=0"]
                elif self.keep_logs:
                    lines += ["stdout_logfile_backups=1000"]
            lines.append("")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines))

    def launch(self):
        # supervisord daemonizes: the command returns once it has forked.
        self.launcher = self._popen([_venv_bin("supervisord"), "-c", self.conf])
        return self.launcher

    def roots(self):
        data = read_file(self.pidfile)
        try:
            pid = int(data.split()[0])
        except (AttributeError, ValueError, IndexError):
            return []
        return [pid] if alive(pid) else []

    def status_argv(self):
        return [_venv_bin("supervisorctl"), "-c", self.conf, "status"]

    def log_files(self, name):
        return _rotated(os.path.join(self.dir, "logs"), name + ".log")

    def launch_stop(self):
        return self._popen([_venv_bin("supervisorctl"), "-c", self.conf, "shutdown"])

    def _graceful_stop(self):
        roots = self.roots()
        if not roots:
            return
        try:
            self._run([_venv_bin("supervisorctl"), "-c", self.conf, "shutdown"], timeout=60)
        except subprocess.TimeoutExpired:
            pass
        if not self._wait_gone(roots, 60):
            for p in roots:
                os.kill(p, signal.SIGTERM)
            self._wait_gone(roots, 10)


def _shquote(a):
    import shlex
    return shlex.quote(a)


# ========================================================================= pm2

def pm2_bin():
    return os.path.join(PEERS_DIR, "npm", "node_modules", ".bin", "pm2")


class PM2(Peer):
    NAME = "pm2"
    STATUS = "pm2 jlist"
    STABLE_AFTER = {"fastest": 0.2, "defaults": 1.5}    # min_uptime = 1000 ms

    @classmethod
    def available(cls):
        if os.access(pm2_bin(), os.X_OK) and shutil.which("node"):
            return True, ""
        return False, "not installed (bench/run installs it into bench/.peers/npm)"

    @classmethod
    def version(cls):
        try:
            with open(os.path.join(PEERS_DIR, "npm", "node_modules", "pm2", "package.json")) as f:
                v = json.load(f)["version"]
            node = subprocess.run(["node", "--version"], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
            return "%s (node %s)" % (v, node)
        except Exception:
            return None

    @property
    def pm2_home(self):
        return os.path.join(self.dir, "pm2home")

    def status_env(self):
        env = dict(os.environ)
        env["PM2_HOME"] = self.pm2_home
        env.pop("PM2_PUBLIC_KEY", None)
        env.pop("PM2_SECRET_KEY", None)
        return env

    def _write_config(self, log):
        os.makedirs(self.pm2_home, exist_ok=True)
        apps = []
        for name, command in self.programs:
            app = {"name": name, "script": command[0], "args": command[1:],
                   "interpreter": "none", "exec_mode": "fork", "cwd": self.dir}
            if self.mode == "fastest":
                app.update({"autorestart": True, "restart_delay": 0, "min_uptime": 0,
                            "max_restarts": 1000000})
            if log:
                app.update({"merge_logs": True,
                            "out_file": os.path.join(self.pm2_home, "logs", name + "-out.log"),
                            "error_file": os.path.join(self.pm2_home, "logs", name + "-error.log")})
            apps.append(app)
        with open(os.path.join(self.dir, "ecosystem.config.js"), "w") as f:
            f.write("module.exports = " + json.dumps({"apps": apps}, indent=1) + ";\n")

    def launch(self):
        self.launcher = self._popen([pm2_bin(), "start", os.path.join(self.dir, "ecosystem.config.js")],
                                    env=self.status_env())
        return self.launcher

    def roots(self):
        data = read_file(os.path.join(self.pm2_home, "pm2.pid"))
        try:
            pid = int(data.split()[0])
        except (AttributeError, ValueError, IndexError):
            return []
        return [pid] if alive(pid) else []

    def status_argv(self):
        return [pm2_bin(), "jlist"]

    def log_files(self, name):
        return [os.path.join(self.pm2_home, "logs", name + "-out.log")]

    def launch_stop(self):
        return self._popen([pm2_bin(), "kill"], env=self.status_env())

    def _graceful_stop(self):
        roots = self.roots()
        if not roots and not os.path.exists(os.path.join(self.pm2_home, "rpc.sock")):
            return
        try:
            self._run([pm2_bin(), "kill"], timeout=60, env=self.status_env())
        except subprocess.TimeoutExpired:
            pass
        self._wait_gone(roots, 15)


# ======================================================================= runit

class Runit(Peer):
    NAME = "runit"
    STATUS = "sv status DIR/* (all services)"
    # sv's exit code counts the services it could not read (not yet under
    # a runsv while runsvdir starts them): it still answered for the rest.
    STATUS_ANSWERED = tuple(range(100))
    # runit has no restart settings: runsv restarts at once, unless the run
    # lasted under a second, then it waits a second. One mode only.
    MODES = ("defaults",)
    STABLE_AFTER = {"fastest": 1.2, "defaults": 1.2}

    @classmethod
    def available(cls):
        if _which("runsvdir") and _which("sv") and _which("runsv"):
            return True, ""
        return False, "not installed (bench/run installs Debian's runit when root)"

    @classmethod
    def version(cls):
        try:
            r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "runit"],
                               capture_output=True, text=True, timeout=10)
            if r.returncode == 0 and r.stdout.strip():
                return "runit " + r.stdout.strip() + " (Debian)"
        except Exception:
            pass
        return "runit (version unknown)"

    @property
    def svdir(self):
        return os.path.join(self.dir, "service")

    def _write_config(self, log):
        os.makedirs(self.svdir, exist_ok=True)
        for name, command in self.programs:
            cmd = " ".join(_shquote(a) for a in command)
            d = os.path.join(self.svdir, name)
            os.makedirs(d)
            _script(os.path.join(d, "run"), "#!/bin/sh\nexec 2>&1\ncd %s\nexec %s\n" % (_shquote(self.dir), cmd))
            if log:
                if not _which("svlogd"):
                    raise RuntimeError("svlogd not installed")
                logdir = os.path.join(self.dir, "logs", name)
                os.makedirs(logdir)
                if self.mode == "fastest":
                    with open(os.path.join(logdir, "config"), "w") as f:
                        f.write("s0\n")   # no rotation
                elif self.keep_logs:
                    with open(os.path.join(logdir, "config"), "w") as f:
                        f.write("n0\n")   # rotate at 1 MB as usual, delete nothing
                os.makedirs(os.path.join(d, "log"))
                _script(os.path.join(d, "log", "run"), "#!/bin/sh\nexec svlogd %s\n" % _shquote(logdir))

    def launch(self):
        self.launcher = self._popen([_which("runsvdir"), "-P", self.svdir])
        return self.launcher

    def wait_launched(self, proc, timeout):
        # runsvdir is the supervisor itself: it does not return.
        if proc.poll() is not None:
            raise RuntimeError("runsvdir exited %s: %s" % (proc.returncode, _tail(self.out_path)))

    def roots(self):
        if self.launcher and self.launcher.poll() is None:
            return [self.launcher.pid]
        return []

    def status_argv(self):
        return [_which("sv"), "status"] + [os.path.join(self.svdir, n) for n in self.names]

    def log_files(self, name):
        d = os.path.join(self.dir, "logs", name)
        try:
            old = sorted(n for n in os.listdir(d) if n.startswith("@"))
        except OSError:
            return []
        return [os.path.join(d, n) for n in old] + [os.path.join(d, "current")]

    def launch_stop(self):
        # SIGHUP: runsvdir sends TERM to every runsv and exits (see below).
        if self.launcher and self.launcher.poll() is None:
            self.launcher.send_signal(signal.SIGHUP)
        return None

    def _graceful_stop(self):
        if not self.launcher or self.launcher.poll() is not None:
            return
        everything = [self.launcher.pid] + self.supervisor_pids() + self.child_pids()
        # SIGHUP: runsvdir sends TERM to every runsv and exits; each runsv
        # stops its service (TERM) and its log service, then exits.
        self.launcher.send_signal(signal.SIGHUP)
        try:
            self.launcher.wait(15)
        except subprocess.TimeoutExpired:
            pass
        self._wait_gone(everything, 15)


def _script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


PEERS = {"roster": Roster, "supervisord": Supervisord, "pm2": PM2, "runit": Runit}
ORDER = ["roster", "supervisord", "pm2", "runit"]
