#!/usr/bin/env python3
"""The fleet, side by side with Ansible: 17 network-namespace hosts with
Debian's sshd (bench/lib/netns_hosts.py), 50 instances of one template (a
tiny python3 HTTP server with a /health), capacity 3 per host.

    fleet.py --peer roster [--mode defaults] [--quick] [--json]

"Peers" here are roster and Ansible (Debian's `ansible`), both driven from a
client namespace of its own; the other --peer values are skipped. --quick:
4 hosts, 10 instances, 2 runs per row, no 100-host row.

Rows (best of 3 and median where cheap):
  floor          plain parallel `ssh HOST true` to every host, no master
  status cold    `roster fleet status --json`, a fresh runtime dir (no master)
  status warm    the same again with the masters the cold run left
  ansible raw    `ansible all -m raw -a 'roster ... status --json' -f N`, cold
  ansible command  the same with the `command` module
  black-holed    `roster fleet status`, cold, one host's packets dropped
  apply          `roster fleet apply` from scratch, then unchanged again
                 (skipped with the reason while the binary has no such
                 subcommand; the status rows then run on hosts set up by
                 hand as apply would leave them); Ansible: a playbook that
                 uploads the binary, the app and each host's roster.toml
                 and runs `roster up`, from scratch and again
  deploy         `roster fleet deploy support SRC --version v2` to every
                 instance; Ansible: a playbook that uploads the release over
                 the app's directory and runs `roster restart all`
  100 hosts      floor and status cold and warm over 100 hosts, one instance
                 each (full mode only)
"""

import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import fleet_files  # noqa: E402
import netns_hosts  # noqa: E402
from common import log, make_tmp, measure_main  # noqa: E402
from peers import roster_bin  # noqa: E402

HOSTS, INSTANCES, BIG = 17, 50, 100
QUICK_HOSTS, QUICK_INSTANCES = 4, 10
CAPACITY = 3
CONNECT_TIMEOUT_S = 5
COMMAND_TIMEOUT_S = 600


def timed(argv, cwd=None, env=None, timeout=COMMAND_TIMEOUT_S):
    """(seconds, exit code, stdout, stderr) of one command."""
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return time.monotonic() - t0, None, e.stdout or "", "timed out after %d s" % timeout
    return time.monotonic() - t0, r.returncode, r.stdout, r.stderr


def row(what, tool, command, runs, codes, hosts, instances=None, **extra):
    r = {"what": what, "tool": tool, "command": command, "hosts": hosts, "instances": instances,
         "runs_s": [round(s, 3) for s in runs], "exit_codes": codes}
    if runs:
        r["best_s"] = round(min(runs), 3)
        r["median_s"] = round(statistics.median(runs), 3)
    r.update(extra)
    log("fleet: %s (%s): %s exit %s %s" % (what, tool, r.get("runs_s"), codes,
                                           {k: v for k, v in extra.items() if k != "output"}))
    return r


def skipped(what, tool, command, reason, hosts):
    log("fleet: %s (%s) skipped: %s" % (what, tool, reason))
    return {"what": what, "tool": tool, "command": command, "hosts": hosts, "skip": reason}


class Client:
    """Runs commands in the fleet's client namespace."""

    def __init__(self, fleet, directory, binary):
        self.fleet = fleet
        self.dir = directory
        self.binary = binary
        self.fleet_path = os.path.join(directory, "fleet.toml")

    def runtime(self):
        return make_tmp("xdg")

    def roster(self, args, runtime=None, timeout=COMMAND_TIMEOUT_S):
        env = dict(os.environ, XDG_RUNTIME_DIR=runtime or self.runtime())
        return timed(self.fleet.in_client([self.binary] + args), cwd=self.dir, env=env,
                     timeout=timeout)

    def status(self, runtime=None):
        return self.roster(["fleet", "status", "-f", self.fleet_path, "--json"], runtime,
                           timeout=CONNECT_TIMEOUT_S + 60)

    def has(self, sub):
        _, rc, _, _ = self.roster(["fleet", sub, "--help"], timeout=30)
        return rc == 0

    def ssh_floor(self):
        """Every host's `ssh HOST true` at once, no master: (seconds, failures)."""
        lines = ["pids="]
        for host in self.fleet.hosts:
            lines.append(" ".join("'%s'" % a for a in self.fleet.ssh_argv(host, "true"))
                         + " </dev/null & pids=\"$pids $!\"")
        lines.append("bad=0; for p in $pids; do wait $p || bad=$((bad+1)); done; exit $bad")
        secs, rc, _, err = timed(self.fleet.in_client(["sh", "-c", "\n".join(lines)]))
        return secs, rc, err

    def ansible_env(self):
        home = os.path.join(self.dir, "ansible-home")
        os.makedirs(home, exist_ok=True)
        return dict(os.environ, ANSIBLE_HOME=home, ANSIBLE_LOCAL_TEMP=os.path.join(home, "tmp"),
                    ANSIBLE_SSH_CONTROL_PATH_DIR=make_tmp("ansible-cp"),
                    ANSIBLE_HOST_KEY_CHECKING="True", ANSIBLE_NOCOLOR="1",
                    ANSIBLE_DEPRECATION_WARNINGS="False", ANSIBLE_RETRY_FILES_ENABLED="False")

    def ansible(self, argv):
        """An ansible command in the client namespace, cold (a control path
        dir of its own)."""
        return timed(self.fleet.in_client(argv), cwd=self.dir, env=self.ansible_env())


def status_summary(out):
    """(instances running, instances, unreachable hosts with their error)."""
    import json
    try:
        data = json.loads(out)
    except ValueError:
        return None, None, None
    inst = data.get("instances") or []
    down = {h.get("name"): h.get("error") for h in data.get("hosts") or [] if not h.get("reachable")}
    return sum(1 for i in inst if i.get("state") == "running"), len(inst), down


def wait_running(client, instances, timeout):
    """Until every instance runs (fleet status exits 0): seconds, or None."""
    t0 = time.monotonic()
    runtime = client.runtime()
    while time.monotonic() - t0 < timeout:
        _, rc, out, _ = client.status(runtime)
        running, _, _ = status_summary(out)
        if rc == 0 and running == instances:
            return time.monotonic() - t0
        time.sleep(0.5)
    return None


def make_fleet(root, name, count):
    fleet = netns_hosts.NetnsHosts(count, os.path.join(root, name))
    log("fleet: %d hosts built in %.1f s" % (count, fleet.build_s))
    return fleet


def start(fleet):
    t0 = time.monotonic()
    fleet.start()
    log("fleet: %d sshd started in %.1f s" % (len(fleet.hosts), time.monotonic() - t0))


# ------------------------------------------------------------------ phases

def status_rows(client, n, instances, runs, goal_warm, floor):
    rows = []
    cmd = "roster fleet status --json"
    colds, codes, dirs, seen = [], [], [], None
    for _ in range(runs):
        d = client.runtime()
        secs, rc, out, _ = client.status(d)
        colds.append(secs)
        codes.append(rc)
        dirs.append(d)
        seen = status_summary(out)
    # A run where hosts timed out or instances were missing measures timeouts, not status.
    complete = seen[0] == instances and all(c == 0 for c in codes)
    extra = {"unreachable_hosts": len(seen[2] or {})}
    if floor.get("best_s") is not None:
        extra.update(goal="≤ the floor (%.2f s)" % floor["best_s"],
                     goal_met=complete and min(colds) <= floor["best_s"])
    rows.append(row("status, cold (no master)", "roster", cmd, colds, codes, n, instances,
                    running=seen[0], **extra))
    client.status(dirs[0])  # the masters the first cold run left, once more before timing
    warms, wcodes = [], []
    for _ in range(runs):
        secs, rc, out, _ = client.status(dirs[0])
        warms.append(secs)
        wcodes.append(rc)
    running, _, down = status_summary(out)
    complete = running == instances and all(c == 0 for c in wcodes)
    rows.append(row("status, warm (masters up)", "roster", cmd, warms, wcodes, n, instances,
                    running=running, unreachable_hosts=len(down or {}),
                    goal="< %.1f s" % goal_warm, goal_met=complete and min(warms) < goal_warm))
    return rows


def floor_row(client, n, runs):
    times, codes = [], []
    for _ in range(runs):
        secs, rc, _ = client.ssh_floor()
        times.append(secs)
        codes.append(rc)
    return row("plain parallel `ssh HOST true`, cold: the floor", "ssh", "ssh HOST true",
               times, codes, n)


def ansible_status_rows(client, n, instances, runs, have_ansible):
    rows = []
    for module in ("raw", "command"):
        command = ("ansible all -m %s -a '%s --home %s status --json' -f %d"
                   % (module, fleet_files.REMOTE_ROSTER, fleet_files.REMOTE_HOME, n))
        if not have_ansible:
            rows.append(skipped("status, `%s` module, cold" % module, "ansible", command,
                                have_ansible is None and "ansible is not installed"
                                or "ansible-playbook is missing", n))
            continue
        times, codes = [], []
        for _ in range(runs):
            secs, rc, _, err = client.ansible(
                ["ansible", "all", "-i", "inventory", "-m", module, "-a",
                 "%s --home %s status --json" % (fleet_files.REMOTE_ROSTER, fleet_files.REMOTE_HOME),
                 "-f", str(n)])
            times.append(secs)
            codes.append(rc)
            if rc != 0:
                log("fleet: ansible %s exited %s: %s" % (module, rc, err.strip()[-300:]))
        rows.append(row("status, `%s` module, cold" % module, "ansible", command, times, codes, n,
                        instances))
    return rows


def black_hole_row(client, fleet, n, instances, runs):
    fleet.black_hole(n - 1)
    times, codes, down = [], [], None
    try:
        for _ in range(runs):
            secs, rc, out, _ = client.status()
            times.append(secs)
            codes.append(rc)
            down = status_summary(out)[2]
    finally:
        fleet.restore(n - 1)
    goal = CONNECT_TIMEOUT_S + 1.0
    return row("status, cold, one host black-holed", "roster", "roster fleet status --json", times,
               codes, n, instances, unreachable=down,
               goal="< connect_timeout (%d s) + 1 s" % CONNECT_TIMEOUT_S, goal_met=min(times) < goal)


def roster_apply_deploy(client, n, instances, root):
    """apply from scratch, unchanged apply, first deploy, deploy of v2."""
    rows = []
    fleet_path = client.fleet_path
    secs, rc, out, err = client.roster(["fleet", "apply", "-f", fleet_path])
    rows.append(row("apply from scratch", "roster", "roster fleet apply -f fleet.toml", [secs], [rc],
                    n, instances, output=(out + err).strip()[-400:]))
    secs, rc, out, err = client.roster(["fleet", "apply", "-f", fleet_path])
    rows.append(row("apply again, unchanged", "roster", "roster fleet apply -f fleet.toml", [secs],
                    [rc], n, instances, nothing_to_change="nothing to change" in out + err,
                    output=(out + err).strip()[-400:]))
    if not client.has("deploy"):
        rows.append(skipped("deploy of a new release", "roster",
                            "roster fleet deploy support SRC -f fleet.toml --version v2",
                            "this roster has no `fleet deploy` (`roster fleet deploy --help` fails)",
                            n))
        first_deploy_by_hand(client, instances)
        return rows
    # Each wave of hosts takes at least the template's verify_for (30 s by
    # default: the new release must stay healthy that long before the old
    # one goes), so the default rollout (a canary, then the rest) has a
    # floor of two of them and `--canary 0` of one.
    deploys = [("v1", [], "first deploy (starts every instance)"),
               ("v2", [], "deploy of a new release"),
               ("v3", ["--canary", "0"], "deploy of a new release, no canary (one wave)")]
    for version, flags, what in deploys:
        src = fleet_files.write_release(os.path.join(root, "release-" + version), version)
        secs, rc, out, err = client.roster(["fleet", "deploy", "support", src, "-f", fleet_path,
                                            "--version", version] + flags)
        waves = 1 if flags else 2
        extra = {} if version == "v1" else {
            "goal": "< 30 s", "goal_met": rc == 0 and secs < 30,
            "verify_floor_s": 30 * waves, "above_floor_s": round(secs - 30 * waves, 2)}
        rows.append(row(what, "roster", " ".join(["roster fleet deploy support SRC -f fleet.toml",
                                                  "--version", version] + flags),
                        [secs], [rc], n, instances, output=(out + err).strip()[-400:], **extra))
    return rows


def first_deploy_by_hand(client, instances):
    """Without `fleet deploy`, the applied instances wait for their first
    release: `roster deploy` of v1 of every instance on each host at
    once, over ssh (setup, not measured)."""
    fleet = client.fleet
    procs = []
    for i, host in enumerate(fleet.hosts):
        fleet_files.write_release(os.path.join(host.home, "src-v1"), "v1")
        names = ["%s.support" % t for t, h, _ in fleet_files.placement(fleet.hosts, instances)
                 if h == i]
        # At once (each waits out its verify_for), then each one's exit code.
        script = "pids=; " + "".join("%s --home %s deploy %s %s/src-v1 --version v1 >/dev/null & "
                                     "pids=\"$pids $!\"; "
                                     % (fleet_files.REMOTE_ROSTER, fleet_files.REMOTE_HOME, name,
                                        fleet_files.REMOTE_HOME) for name in names)
        script += "bad=0; for p in $pids; do wait $p || bad=1; done; exit $bad"
        procs.append(subprocess.Popen(fleet.in_client(fleet.ssh_argv(host, script)),
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    for host, proc in zip(fleet.hosts, procs):
        _, err = proc.communicate(timeout=COMMAND_TIMEOUT_S)
        if proc.returncode != 0:
            log("fleet: first deploy on %s exited %s: %s" % (host.name, proc.returncode,
                                                              err.strip()[-300:]))
            try:
                with open(os.path.join(host.home, "daemon.log")) as f:
                    steps = [line.strip() for line in f if "deploy_step" in line]
            except OSError:
                steps = []
            log("fleet: %s's daemon, last deploy steps:\n  %s" % (host.name, "\n  ".join(steps[-4:])))


def roster_phase(root, binary, n, instances, runs, have_ansible):
    rows = []
    fleet = make_fleet(root, "roster", n)
    try:
        client = Client(fleet, fleet.dir, binary)
        with open(client.fleet_path, "w") as f:
            f.write(fleet_files.fleet_file(fleet, instances, CAPACITY, "%ds" % CONNECT_TIMEOUT_S))
        with open(os.path.join(fleet.dir, "inventory"), "w") as f:
            f.write(fleet_files.inventory(fleet))
        has_apply = client.has("apply")
        if not has_apply:
            fleet_files.install_by_hand(fleet, binary, instances)
        start(fleet)
        floor = floor_row(client, n, runs)
        rows.append(floor)
        if has_apply:
            rows += roster_apply_deploy(client, n, instances, fleet.dir)
        else:
            why = "this roster has no `fleet apply` (`roster fleet apply --help` fails)"
            rows.append(skipped("apply from scratch", "roster", "roster fleet apply -f fleet.toml",
                                why, n))
            rows.append(skipped("apply again, unchanged", "roster",
                                "roster fleet apply -f fleet.toml", why, n))
            rows.append(skipped("deploy of a new release", "roster",
                                "roster fleet deploy support SRC -f fleet.toml --version v2",
                                why + "; the deploy needs the instances it sets up", n))
        waited = wait_running(client, instances, 120)
        if waited is None:
            rows.append({"what": "setup", "tool": "roster", "hosts": n,
                         "error": "not every instance ran within 120 s"})
        else:
            log("fleet: all %d instances running (waited %.1f s)" % (instances, waited))
        rows += status_rows(client, n, instances, runs, 0.5, floor)
        rows += ansible_status_rows(client, n, instances, runs, have_ansible)
        rows.append(black_hole_row(client, fleet, n, instances, max(1, runs - 1)))
    finally:
        fleet.close()
    return rows


def ansible_phase(root, binary, n, instances, have_ansible):
    if not have_ansible:
        why = "ansible is not installed" if have_ansible is None else "ansible-playbook is missing"
        return [skipped("apply from scratch", "ansible", "ansible-playbook apply.yml", why, n),
                skipped("deploy of a new release", "ansible", "ansible-playbook deploy.yml", why, n)]
    rows = []
    fleet = make_fleet(root, "ansible", n)
    try:
        client = Client(fleet, fleet.dir, binary)
        with open(client.fleet_path, "w") as f:
            f.write(fleet_files.fleet_file(fleet, instances, CAPACITY, "%ds" % CONNECT_TIMEOUT_S))
        with open(os.path.join(fleet.dir, "inventory"), "w") as f:
            f.write(fleet_files.inventory(fleet))
        configs = os.path.join(fleet.dir, "configs")
        os.makedirs(configs)
        for host, text in zip(fleet.hosts, fleet_files.host_configs(fleet, instances)):
            with open(os.path.join(configs, host.name + ".toml"), "w") as f:
                f.write(text)
        app = fleet_files.write_release(os.path.join(fleet.dir, "app-v1"), "v1")
        with open(os.path.join(fleet.dir, "apply.yml"), "w") as f:
            f.write(fleet_files.apply_playbook(binary, app, configs))
        release = fleet_files.write_release(os.path.join(fleet.dir, "release-v2"), "v2")
        with open(os.path.join(fleet.dir, "deploy.yml"), "w") as f:
            f.write(fleet_files.deploy_playbook(release))
        start(fleet)
        play = ["ansible-playbook", "-i", "inventory", "-f", str(n)]
        for what in ("apply from scratch", "apply again, unchanged"):
            secs, rc, out, err = client.ansible(play + ["apply.yml"])
            recap = [line for line in out.splitlines() if "ok=" in line]
            rows.append(row(what, "ansible", "ansible-playbook apply.yml -f %d" % n, [secs], [rc], n,
                            instances, output=(err.strip()[-300:] if rc else "")
                            or " / ".join(recap[:2])))
        waited = wait_running(client, instances, 60)
        if waited is None:
            rows.append({"what": "setup", "tool": "ansible", "hosts": n,
                         "error": "not every instance ran within 60 s of the playbook"})
        secs, rc, out, err = client.ansible(play + ["deploy.yml"])
        after = wait_running(client, instances, 60)
        rows.append(row("deploy of a new release", "ansible", "ansible-playbook deploy.yml -f %d" % n,
                        [secs], [rc], n, instances,
                        all_running_after_s=None if after is None else round(after, 2),
                        output=err.strip()[-300:] if rc else ""))
    finally:
        fleet.close()
    return rows


def big_phase(root, binary, runs):
    rows = []
    fleet = make_fleet(root, "big", BIG)
    try:
        client = Client(fleet, fleet.dir, binary)
        with open(client.fleet_path, "w") as f:
            f.write(fleet_files.fleet_file(fleet, BIG, CAPACITY, "%ds" % CONNECT_TIMEOUT_S))
        fleet_files.install_by_hand(fleet, binary, BIG)
        start(fleet)
        floor = floor_row(client, BIG, runs)
        rows.append(floor)
        waited = wait_running(client, BIG, 180)
        if waited is None:
            rows.append({"what": "setup", "tool": "roster", "hosts": BIG,
                         "error": "not every instance ran within 180 s"})
        rows += status_rows(client, BIG, BIG, runs, 2.0, floor)
    finally:
        fleet.close()
    return rows


def ansible_available():
    """True, None (not installed) or False (ansible-playbook missing)."""
    if not shutil.which("ansible"):
        return None
    return bool(shutil.which("ansible-playbook"))


def ansible_version():
    try:
        out = subprocess.run(["ansible", "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0].strip() if out else None


def run_mode(cls, mode, quick):
    if cls.NAME != "roster":
        return {"skip": True, "note": "fleet compares roster with Ansible; run it with --peer roster"}
    if mode != "defaults" and "defaults" in cls.MODES:
        return {"skip": True, "note": "fleet is measured in the defaults mode only"}
    ok, why = netns_hosts.available()
    if not ok:
        return {"error": why}
    binary = os.path.abspath(roster_bin())
    if not os.path.exists(binary):
        return {"error": "%s is missing (build it: cargo build --release)" % binary}
    n, instances = (QUICK_HOSTS, QUICK_INSTANCES) if quick else (HOSTS, INSTANCES)
    runs = 2 if quick else 3
    root = make_tmp("fleet")
    have_ansible = ansible_available()
    res = {"hosts": n, "instances": instances, "capacity": CAPACITY,
           "connect_timeout_s": CONNECT_TIMEOUT_S, "ansible": ansible_version(), "rows": []}
    res["rows"] += roster_phase(root, binary, n, instances, runs, have_ansible)
    res["rows"] += ansible_phase(root, binary, n, instances, have_ansible)
    if quick:
        res["rows"].append(skipped("status over 100 hosts", "roster", "roster fleet status --json",
                                   "not in --quick", BIG))
    else:
        try:
            res["rows"] += big_phase(root, binary, runs)
        except (RuntimeError, OSError) as e:
            res["rows"].append({"what": "status over 100 hosts", "tool": "roster", "hosts": BIG,
                                "error": str(e)})
    return res


def describe(r):
    if "rows" not in r:
        return r.get("note") or r.get("error", "?")
    parts = []
    for x in r["rows"]:
        if "best_s" in x:
            parts.append("%s %s (%d hosts): best %.2f s" % (x["tool"], x["what"], x["hosts"],
                                                             x["best_s"]))
        else:
            parts.append("%s %s: %s" % (x["tool"], x["what"], x.get("skip") or x.get("error")))
    return "\n  " + "\n  ".join(parts)


if __name__ == "__main__":
    measure_main("fleet", run_mode, describe)
