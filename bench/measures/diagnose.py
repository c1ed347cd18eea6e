#!/usr/bin/env python3
"""`roster diagnose` with 100 agents (issue #17: goal under 2 s), beside
`sos report` (Debian's sosreport, when installed) collecting on the same
machine in the same run; and a restore drill: 50 agents shipped as
releases, backed up while they run, restored into a fresh home and
brought up (goal: every agent running within 10 s of the restore's
start).

    diagnose.py --peer roster [--mode defaults] [--quick] [--json]

roster: 100 agents (10 of them crash-looping, so there is something to
find), `roster diagnose --json` 10 times and `roster diagnose --bundle`
5 times, wall time around the command; the findings and the bundle's size
are recorded. sos: one `sos report --batch` (all its default plugins, into
a scratch directory), its wall time and archive size, stopped after 15
minutes. Restore drill: 50 agents, each deployed once (restart strategy,
`verify_for = "0s"`), one secret; `roster backup`, then `roster restore`
into a new home with the config at a new path and `roster up -f` there,
timed until `status` shows all 50 running. --quick: 20 agents, 3 and 2
runs, no sos, a drill of 10 agents.
"""

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import log, make_tmp, measure_main  # noqa: E402
from peers import roster_bin  # noqa: E402

AGENTS, CRASHING = 100, 10
DRILL_AGENTS = 50
DRILL_GOAL_S = 10.0
SOS_TIMEOUT_S = 900
GOAL_S = 2.0


def timed(argv, timeout=120):
    started = time.monotonic()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return time.monotonic() - started, proc


def write_config(path, agents, crashing):
    lines = []
    for i in range(agents):
        lines.append("[agents.a%03d]" % i)
        if i < crashing:
            lines.append('command = ["sh", "-c", "echo giving up; exit 3"]')
        else:
            lines.append('command = ["sleep", "100000.%d"]' % i)
        lines.append("allow_root = true")
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def summary(times):
    times = sorted(times)
    return {"runs_s": [round(t, 3) for t in times], "best_s": round(times[0], 3),
            "median_s": round(times[len(times) // 2], 3)}


def roster_rows(root, agents, crashing, runs_json, runs_bundle):
    binary = roster_bin()
    home = os.path.join(root, "home")
    conf = os.path.join(root, "roster.toml")
    write_config(conf, agents, crashing)
    rows = []
    up = subprocess.run([binary, "--home", home, "up", "-f", conf], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=300)
    log("diagnose: roster up exited %d" % up.returncode)
    try:
        # The crash loops have failed for good by now (five fast deaths).
        deadline = time.monotonic() + 60
        findings = None
        while time.monotonic() < deadline:
            _, proc = timed([binary, "--home", home, "diagnose", "--json", "-f", conf])
            try:
                findings = json.loads(proc.stdout)["findings"]
            except (ValueError, KeyError):
                findings = None
            if findings and sum(f.get("mode") == "crash_loop" for f in findings) >= crashing:
                break
            time.sleep(1)
        times, code = [], None
        for _ in range(runs_json):
            secs, proc = timed([binary, "--home", home, "diagnose", "--json", "-f", conf])
            times.append(secs)
            code = proc.returncode
        row = {"tool": "roster", "what": "diagnose --json", "agents": agents,
               "crashing": crashing, "exit": code,
               "findings": len(findings or []),
               "crash_loops": sum(f.get("mode") == "crash_loop" for f in findings or [])}
        row.update(summary(times))
        row["goal_met"] = row["median_s"] < GOAL_S
        rows.append(row)
        times, size = [], None
        bundle = os.path.join(root, "bundle.tar.gz")
        for _ in range(runs_bundle):
            secs, proc = timed([binary, "--home", home, "diagnose", "--bundle", bundle,
                                "-f", conf])
            times.append(secs)
            size = os.path.getsize(bundle) if os.path.exists(bundle) else None
        row = {"tool": "roster", "what": "diagnose --bundle", "agents": agents,
               "bundle_bytes": size}
        row.update(summary(times))
        row["goal_met"] = row["median_s"] < GOAL_S
        rows.append(row)
    finally:
        subprocess.run([binary, "--home", home, "down"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
    return rows


def sos_row(root):
    sos = shutil.which("sos")
    if not sos:
        return {"tool": "sos", "what": "sos report --batch", "skip":
                "sos is not installed (Debian package sosreport)"}
    out = os.path.join(root, "sos")
    os.makedirs(out, exist_ok=True)
    try:
        secs, proc = timed([sos, "report", "--batch", "--quiet", "--tmp-dir", out],
                           timeout=SOS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"tool": "sos", "what": "sos report --batch", "error":
                "did not finish within %d s" % SOS_TIMEOUT_S}
    archives = [os.path.join(out, n) for n in os.listdir(out) if n.startswith("sosreport")
                and not n.endswith((".md5", ".sha256"))]
    size = max((os.path.getsize(a) for a in archives if os.path.isfile(a)), default=None)
    row = {"tool": "sos", "what": "sos report --batch", "exit": proc.returncode,
           "archive_bytes": size}
    row.update(summary([secs]))
    return row


def running(binary, home):
    proc = subprocess.run([binary, "--home", home, "status", "--json"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, timeout=30)
    try:
        agents = json.loads(proc.stdout)["agents"]
    except (ValueError, KeyError):
        return 0
    return sum(agent.get("state") == "running" for agent in agents)


def drill_row(root, agents):
    """Backup of `agents` agents shipped as releases, restored into a new
    home and brought up: the restore's time and the time to all running."""
    binary = roster_bin()
    home = os.path.join(root, "drill-home")
    conf = os.path.join(root, "drill.toml")
    with open(conf, "w") as f:
        for i in range(agents):
            f.write('[agents.d%03d]\ncommand = ["sleep", "100000.%d"]\nallow_root = true\n'
                    '[agents.d%03d.deploy]\nstrategy = "restart"\nverify_for = "0s"\n\n'
                    % (i, 500 + i, i))
    source = os.path.join(root, "release")
    os.makedirs(source, exist_ok=True)
    with open(os.path.join(source, "VERSION"), "w") as f:
        f.write("v1\n")
    row = {"tool": "roster", "what": "restore drill: backup, restore, up", "agents": agents}
    new_home = os.path.join(root, "restored-home")
    try:
        subprocess.run([binary, "--home", home, "up", "-f", conf], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
        deploys = [subprocess.Popen([binary, "--home", home, "deploy", "d%03d" % i, source,
                                     "--version", "v1"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for i in range(agents)]
        failed = sum(p.wait(timeout=600) != 0 for p in deploys)
        if failed:
            row["error"] = "%d of %d first deploys failed" % (failed, agents)
            return row
        subprocess.run([binary, "--home", home, "secret", "init-key"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        subprocess.run([binary, "--home", home, "secret", "set", "d000", "API_TOKEN"],
                       input=b"sk-drill-0123456789\n", stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        archive = os.path.join(root, "drill.tar.gz")
        secs, proc = timed([binary, "--home", home, "backup", archive], timeout=600)
        if proc.returncode != 0:
            row["error"] = "backup failed: " + proc.stderr.decode(errors="replace")[-300:]
            return row
        row["backup_s"] = round(secs, 3)
        row["archive_bytes"] = os.path.getsize(archive)
        key = os.path.join(home, "secrets", "key")
        new_conf = os.path.join(root, "restored.toml")
        started = time.monotonic()
        secs, proc = timed([binary, "--home", new_home, "restore", archive, "--config", new_conf,
                            "--key-file", key], timeout=600)
        if proc.returncode != 0:
            row["error"] = "restore failed: " + proc.stderr.decode(errors="replace")[-300:]
            return row
        row["restore_s"] = round(secs, 3)
        subprocess.run([binary, "--home", new_home, "up", "-f", new_conf],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        deadline = started + 120
        while running(binary, new_home) < agents and time.monotonic() < deadline:
            time.sleep(0.05)
        total = time.monotonic() - started
        row["running"] = running(binary, new_home)
        row.update(summary([total]))
        row["goal_met"] = row["running"] == agents and total < DRILL_GOAL_S
        return row
    finally:
        for h in (new_home, home):
            subprocess.run([binary, "--home", h, "down"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=300)


def run_mode(cls, mode, quick):
    if cls.NAME != "roster":
        return {"skip": True, "note": "diagnose compares roster with sos; run it with --peer roster"}
    if mode != "defaults" and "defaults" in cls.MODES:
        return {"skip": True, "note": "diagnose is measured in the defaults mode only"}
    root = make_tmp("diagnose")
    agents, crashing = (20, 2) if quick else (AGENTS, CRASHING)
    rows = roster_rows(root, agents, crashing, 3 if quick else 10, 2 if quick else 5)
    rows.append(drill_row(root, 10 if quick else DRILL_AGENTS))
    if quick:
        rows.append({"tool": "sos", "what": "sos report --batch", "skip": "not in --quick"})
    else:
        rows.append(sos_row(root))
    return {"rows": rows, "goal_s": GOAL_S, "drill_goal_s": DRILL_GOAL_S}


def describe(r):
    if "rows" not in r:
        return r.get("note") or r.get("error", "?")
    parts = []
    for x in r["rows"]:
        if "median_s" in x:
            parts.append("%s %s: median %.3f s" % (x["tool"], x["what"], x["median_s"]))
        else:
            parts.append("%s %s: %s" % (x["tool"], x["what"], x.get("skip") or x.get("error")))
    return "; ".join(parts)


if __name__ == "__main__":
    measure_main("diagnose", run_mode, describe)
