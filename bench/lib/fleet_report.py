"""The fleet measure's section of RESULTS.md (bench/run adds it to
report.SECTIONS): one table row per fleet row, roster beside Ansible and
plain ssh."""

from report import _f, _rows, _table, _verdict

GOAL = ("status warm < 0.5 s (17 hosts), < 2 s (100); cold ≤ the ssh floor; black-holed host: "
        "connect_timeout + < 1 s; deploy < 30 s")

METHOD = (
    "N network-namespace hosts on a bridge (`bench/lib/netns_hosts.py`, the integration tests' "
    "approach): each runs Debian's sshd (key only) with its own hostname, its own /etc (a "
    "hard-linked copy of the real one with its own host key), /usr/local/bin, "
    "/var/lib/roster and (since the first run) an empty /root; every command runs in a client namespace of its own. Instances: tenants "
    "`c01`… of one template (a python3 HTTP server with a /health), pinned round-robin, "
    "capacity 3 per host; connect_timeout 5 s, max_parallel = the number of hosts, Ansible's "
    "forks the same. `cold`: no SSH master (a fresh runtime dir for roster, a fresh "
    "`ANSIBLE_SSH_CONTROL_PATH_DIR` for Ansible); `warm`: the masters the cold run left. "
    "`floor`: every host's `ssh HOST true` at once, no master. Black-holed: the host's link "
    "down while the client keeps its MAC (packets dropped, nothing refused). Ansible's apply: a "
    "playbook that uploads the roster binary, the app and the host's roster.toml, then runs "
    "`roster up`; its deploy: uploads the release over the app's directory, then "
    "`roster restart all` (no health check, no verification). roster's deploys are blue-green "
    "with the default `verify_for = \"30s\"` (the new release must stay healthy that long "
    "before the old one goes), so a rollout takes at least 30 s per wave of hosts: the default "
    "is two waves (a canary host, then the rest), `--canary 0` one; the detail column says how "
    "far above that floor a deploy was. Wall times around the command, `ip netns exec` "
    "included.")


def table_fleet(m):
    header = ["tool", "what", "hosts", "instances", "runs, s", "best s", "median s", "exit",
              "detail", "goal: " + GOAL]
    rows = []
    ansible = None
    for peer, mode, r in _rows(m):
        if peer != "roster" or r.get("skip"):
            continue
        ansible = r.get("ansible") or ansible
        if "rows" not in r:
            rows.append([peer, "error: " + str(r.get("error"))] + [""] * (len(header) - 2))
            continue
        for x in r["rows"]:
            if "best_s" not in x:
                rows.append([x.get("tool", "?"), x.get("what", "?"), x.get("hosts", ""), "", "", "",
                             "", "", ("skipped: " + x["skip"]) if x.get("skip")
                             else "error: %s" % x.get("error"), ""])
                continue
            detail = []
            if x.get("running") is not None:
                detail.append("%d running" % x["running"])
            if x.get("unreachable"):
                detail.append("; ".join("%s: %s" % kv for kv in x["unreachable"].items()))
            if x.get("nothing_to_change") is not None:
                detail.append("said nothing to change" if x["nothing_to_change"]
                              else "did not say nothing to change")
            if x.get("all_running_after_s") is not None:
                detail.append("all running %.1f s after" % x["all_running_after_s"])
            if x.get("verify_floor_s") is not None:
                detail.append("%.1f s above its %d s of verify_for" % (
                    x["above_floor_s"], x["verify_floor_s"]))
            if x.get("unreachable_hosts"):
                detail.append("%d hosts unreachable" % x["unreachable_hosts"])
            goal = ""
            incomplete = (x.get("running") is not None and x.get("instances")
                          and x["running"] < x["instances"] and not x.get("unreachable"))
            if x.get("goal") and incomplete:
                goal = "%s: not measured (%d of %d instances seen running)" % (
                    x["goal"], x["running"], x["instances"])
            elif x.get("goal"):
                goal = "%s: %s" % (x["goal"], _verdict(x.get("goal_met")))
            rows.append([x["tool"], x["what"], x["hosts"], _f(x.get("instances")),
                         ", ".join("%.2f" % s for s in x["runs_s"]), _f(x["best_s"], 2),
                         _f(x["median_s"], 2), ", ".join(str(c) for c in x["exit_codes"]),
                         "; ".join(detail) or "—", goal])
    return _table(header, rows) + "\n\nAnsible: %s." % (ansible or "not installed")


SECTION = ("fleet", "13. A fleet: roster beside Ansible over SSH", table_fleet, METHOD)
