"""Writes bench/RESULTS.md from the results dict bench/run collects.

Everything above `## Analysis` is regenerated; an existing `## Analysis`
section (written by hand after a run) is kept as it is.
"""

import os
import re

ANALYSIS = "## Analysis"
PEER_ORDER = ["roster", "supervisord", "pm2", "runit"]
MODE_ORDER = ["fastest", "defaults"]

GOALS = {
    "restart": "p90 < 3 ms",
    "footprint": "RSS < 8 MiB with 100 children, < 25 MiB with 1000; idle CPU < 0.05% and PSS < 4 MiB once idle with 100",
    "logs": "≥ supervisord's MB/s and ≥ 70% of the limit, 0 lost/split/doubled",
    "coldstart": "< 300 ms",
    "status": "< 50 ms with 1000 children",
    "stop": "< 5 s for 5000 children, none journaled killed",
    "watch": "rules + http: < 0.5% of a core with 100, < 3% with 1000",
    "metrics": "< 50 ms with 1000 children",
    "deploy": "blue-green + listen (tcp_migrate_req=1): 0 failed requests, naive app too",
    "dashboard": "roster top open with 100 agents: added < 2% of a core",
}


def _rows(measure_results):
    """(peer, mode, result) in a stable order."""
    out = []
    peers = sorted(measure_results, key=lambda p: PEER_ORDER.index(p) if p in PEER_ORDER else 99)
    for peer in peers:
        entry = measure_results[peer]
        if "error" in entry:
            out.append((peer, "—", {"error": entry["error"]}))
            continue
        modes = sorted(entry, key=lambda m: MODE_ORDER.index(m) if m in MODE_ORDER else 99)
        for mode in modes:
            out.append((peer, mode, entry[mode]))
    return out


def _f(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, float):
        return ("%." + str(digits) + "f") % v
    return str(v)


def _verdict(ok):
    return "**met**" if ok else "missed"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |")
    return "\n".join(lines)


def _error_row(peer, mode, res, width):
    return [peer, mode, "error: " + str(res.get("error"))] + [""] * (width - 3)


def table_restart(m):
    header = ["peer", "mode", "kills", "spacing", "median ms", "p90 ms", "min ms", "max ms",
              "pid appears, median ms", "floor median / p90 ms", "goal: " + GOALS["restart"]]
    rows = []
    for peer, mode, r in _rows(m):
        if not r.get("runs"):
            extra = r.get("error") or "; ".join(r.get("failures", [])) or "no run"
            rows.append(_error_row(peer, mode, {"error": extra}, len(header)))
            continue
        goal = _verdict(r["p90_ms"] < 3.0) if peer == "roster" else ""
        if r.get("failures"):
            goal = (goal + " (" + "; ".join(r["failures"]) + ")").strip()
        rows.append([peer, mode, r["runs"], "%.1f s" % r["spacing_s"], _f(r["median_ms"], 2),
                     _f(r["p90_ms"], 2), _f(r["min_ms"], 2), _f(r["max_ms"], 2),
                     _f(r.get("pid_seen", {}).get("median_ms"), 2), _floor(r.get("floor")), goal])
        shim = r.get("shim")
        if shim is not None:
            # The same child with a [listen] socket: started through the exec shim.
            label = mode + ", `[listen]` (exec shim)"
            if not shim.get("runs"):
                extra = shim.get("error") or "; ".join(shim.get("failures", [])) or "no run"
                rows.append(_error_row(peer, label, {"error": extra}, len(header)))
                continue
            goal = _verdict(shim["p90_ms"] < 3.0)
            if shim.get("failures"):
                goal += " (" + "; ".join(shim["failures"]) + ")"
            rows.append([peer, label, shim["runs"], "%.1f s" % shim["spacing_s"],
                         _f(shim["median_ms"], 2), _f(shim["p90_ms"], 2), _f(shim["min_ms"], 2),
                         _f(shim["max_ms"], 2), _f(shim.get("pid_seen", {}).get("median_ms"), 2),
                         _floor(r.get("floor")), goal])
    return _table(header, rows)


def _floor(f):
    if not f or not f.get("runs"):
        return "—"
    return "%.2f / %.2f" % (f["median_ms"], f["p90_ms"])


def table_footprint(m):
    counts = []
    for _, _, r in _rows(m):
        for n in r.get("by_children", {}):
            if n not in counts:
                counts.append(n)
    counts.sort(key=int)
    header = ["peer", "mode"]
    header += ["RSS MiB, %s child%s" % (n, "" if n == "1" else "ren") for n in counts]
    header += ["PSS MiB, %s" % counts[-1] if counts else "PSS", "processes, %s" % (counts[-1] if counts else ""),
               "RSS / PSS MiB, 100, after the idle window",
               "idle CPU % (ticks)", "idle CPU % (schedstat)", "goal: " + GOALS["footprint"]]
    rows = []
    for peer, mode, r in _rows(m):
        by = r.get("by_children")
        if not by:
            rows.append(_error_row(peer, mode, r, len(header)))
            continue
        row = [peer, mode]
        for n in counts:
            v = by.get(n, {})
            row.append(_f(v["rss_kib"] / 1024, 1) if "rss_kib" in v else ("n/a: " + v["error"] if "error" in v else "—"))
        last = by.get(counts[-1], {})
        row.append(_f(last["pss_kib"] / 1024, 1) if "pss_kib" in last else "—")
        row.append(_f(last.get("supervisor_processes")))
        cpu = next((v for v in by.values() if "cpu_percent" in v), None)
        if cpu and "pss_idle_kib" in cpu:
            row.append("%.1f / %.1f" % (cpu["rss_idle_kib"] / 1024, cpu["pss_idle_kib"] / 1024))
        else:
            row.append("—")
        if cpu:
            row.append("%.3f (%d children, %.0f s)" % (cpu["cpu_percent"], cpu["children"], cpu["cpu_window_s"]))
            row.append("%.4f" % cpu.get("cpu_percent_schedstat", float("nan")))
        else:
            row += ["—", "—"]
        goal = ""
        if peer == "roster":
            checks = []
            if "100" in by and "rss_kib" in by["100"]:
                checks.append(by["100"]["rss_kib"] / 1024 < 8)
            if "1000" in by and "rss_kib" in by["1000"]:
                checks.append(by["1000"]["rss_kib"] / 1024 < 25)
            if cpu and cpu["children"] == 100:
                checks.append(cpu["cpu_percent"] < 0.05)
                if "pss_idle_kib" in cpu:
                    checks.append(cpu["pss_idle_kib"] / 1024 < 4)
            if checks:
                goal = _verdict(all(checks)) + " (%d of %d)" % (sum(checks), len(checks))
        row.append(goal)
        rows.append(row)
    return _table(header, rows)


def table_logs(m):
    header = ["peer", "mode", "MB/s", "limit MB/s", "% of limit", "lost", "split", "doubled",
              "files", "lines", "goal: " + GOALS["logs"]]
    sup = {mode: r.get("mb_per_s") for peer, mode, r in _rows(m) if peer == "supervisord"}
    rows = []
    for peer, mode, r in _rows(m):
        if "lost" not in r:
            rows.append(_error_row(peer, mode, r, len(header)))
            continue
        goal = ""
        if peer == "roster" and r.get("mb_per_s") is not None:
            clean = r["lost"] == 0 and r["split"] == 0 and r["doubled"] == 0
            ok = clean and r.get("percent_of_limit", 0) >= 70
            s_mb = sup.get(mode)
            if s_mb is not None:
                ok = ok and r["mb_per_s"] >= s_mb
            goal = _verdict(ok)
            if s_mb is None:
                goal += " (no supervisord figure)"
        rows.append([peer, mode, _f(r.get("mb_per_s")), _f(r.get("limit", {}).get("mb_per_s")),
                     _f(r.get("percent_of_limit")), r["lost"], r["split"], r["doubled"],
                     r["files"], r["lines"], goal or (r.get("error") or "")])
    return _table(header, rows)


def table_coldstart(m):
    header = ["peer", "mode", "runs", "100 running, median ms", "min ms", "max ms",
              "start command returned, median ms", "goal: " + GOALS["coldstart"]]
    rows = []
    for peer, mode, r in _rows(m):
        if "median_ms" not in r:
            rows.append(_error_row(peer, mode, r, len(header)))
            continue
        goal = _verdict(r["median_ms"] < 300) if peer == "roster" else ""
        cmd = r.get("command_median_ms")
        rows.append([peer, mode, r["runs"], _f(r["median_ms"]), _f(r["min_ms"]), _f(r["max_ms"]),
                     _f(cmd) if cmd is not None else "(does not return)", goal])
    return _table(header, rows)


def table_status(m):
    header = ["peer", "mode", "command", "children", "queries", "median ms", "p90 ms", "min ms",
              "max ms", "goal: " + GOALS["status"]]
    rows = []
    for peer, mode, r in _rows(m):
        if "median_ms" not in r:
            rows.append(_error_row(peer, mode, r, len(header)))
            continue
        goal = ""
        if peer == "roster":
            goal = _verdict(r["median_ms"] < 50)
            if r.get("children") != 1000:
                goal += " (at %d children)" % r.get("children")
        rows.append([peer, mode, "`%s`" % r.get("command", "?"), r["children"], r["runs"],
                     _f(r["median_ms"]), _f(r["p90_ms"]), _f(r["min_ms"]), _f(r["max_ms"]), goal])
    return _table(header, rows)


def table_stop(m):
    header = ["peer", "children", "stop, s", "all gone", "journaled killed", "goal: " + GOALS["stop"]]
    rows = []
    for peer, mode, r in _rows(m):
        if r.get("skip"):
            continue
        if "rows" not in r:
            rows.append(_error_row(peer, mode, r, len(header)))
            continue
        for row in r["rows"]:
            if "stop_s" not in row:
                rows.append([peer, row.get("children"), "error: %s" % row.get("error"), "", "", ""])
                continue
            goal = ""
            if peer == "roster" and row["children"] == 5000:
                goal = _verdict(row["stop_s"] < 5 and row.get("journal_killed") == 0)
            rows.append([peer, row["children"], _f(row["stop_s"], 2),
                         "yes" if row.get("all_gone") else "**no**",
                         _f(row.get("journal_killed")) if "journal_killed" in row else "—", goal])
    return _table(header, rows)


def table_metrics(m):
    header = ["peer", "children", "scrapes", "series", "bytes", "median ms", "p90 ms", "min ms",
              "max ms", "goal: " + GOALS["metrics"]]
    rows = []
    for peer, mode, r in _rows(m):
        if r.get("skip"):
            continue
        if "median_ms" not in r:
            rows.append(_error_row(peer, mode, r, len(header)))
            continue
        goal = ""
        if peer == "roster":
            goal = _verdict(r["median_ms"] < 50)
            if r.get("children") != 1000:
                goal += " (at %d children)" % r.get("children")
        rows.append([peer, r["children"], r["runs"], r.get("series", "?"),
                     r.get("output_bytes", "?"), _f(r["median_ms"]), _f(r["p90_ms"]),
                     _f(r["min_ms"]), _f(r["max_ms"]), goal])
    return _table(header, rows)


def table_watch(m):
    header = ["peer", "children", "setting", "window s", "daemon CPU, % of a core",
              "goal: " + GOALS["watch"]]
    rows = []
    for peer, mode, r in _rows(m):
        if r.get("skip"):
            continue
        if "rows" not in r:
            rows.append(_error_row(peer, mode, r, len(header)))
            continue
        for row in r["rows"]:
            goal = ""
            if row["setting"] == "rules + http":
                limit = 0.5 if row["children"] <= 100 else 3.0
                goal = _verdict(row["cpu_percent"] < limit)
            rows.append([peer, row["children"], row["setting"], _f(row["window_s"]),
                         _f(row["cpu_percent"], 3), goal])
    return _table(header, rows)


def table_dashboard(m):
    header = ["peer", "dashboard", "children", "window s", "supervisor alone, %",
              "supervisor with it, %", "dashboard, %", "terminal (tmux), %", "added, %",
              "goal: " + GOALS["dashboard"]]
    rows = []
    for peer, mode, r in _rows(m):
        if r.get("skip"):
            continue
        if "added_percent" not in r:
            rows.append(_error_row(peer, mode, r, len(header)))
            continue
        goal = _verdict(r["added_percent"] < 2.0) if peer == "roster" else ""
        rows.append([peer, "`%s`" % r["dashboard"], r["children"], _f(r["window_s"]),
                     _f(r["supervisor_idle_percent"], 3),
                     _f(r["supervisor_with_dashboard_percent"], 3),
                     _f(r["dashboard_percent"], 3), _f(r["terminal_percent"], 3),
                     _f(r["added_percent"], 3), goal])
    return _table(header, rows)


def table_deploy(m):
    header = ["peer", "deploy", "deploys", "requests", "failed", "failed %", "failures",
              "time without an answer, s", "slowest answer ms", "deploy median s",
              "goal: " + GOALS["deploy"]]
    rows = []
    for peer, mode, r in _rows(m):
        if r.get("skip"):
            continue
        if "rows" not in r:
            rows.append(_error_row(peer, mode, r, len(header)))
            continue
        for row in r["rows"]:
            if "requests" not in row:
                rows.append([peer, row.get("how", mode), "error: %s" % row.get("error")]
                            + [""] * (len(header) - 3))
                continue
            kinds = ", ".join("%s %d" % kv for kv in row.get("failure_kinds", {}).items()) or "—"
            if row.get("deploys_failed"):
                kinds += "; %d deploy(s) failed: %s" % (row["deploys_failed"],
                                                         "; ".join(row.get("errors", [])))
            goal = ""
            if (peer == "roster" and row.get("strategy") == "blue-green" and row.get("listen")
                    and row.get("tcp_migrate_req", "1") == "1"):
                goal = _verdict(row["failed"] == 0 and not row.get("deploys_failed"))
            rows.append([peer, row.get("how", "?"), row["deploys"], row["requests"],
                         "**%d**" % row["failed"] if row["failed"] else "0",
                         _f(row.get("failed_percent"), 2), kinds, _f(row.get("outage_s"), 2),
                         _f(row.get("answered_max_ms"), 0), _f(row.get("deploy_median_s"), 2),
                         goal])
    return _table(header, rows)


def table_flood(m):
    header = ["peer", "rule", "writes", "lines/s asked", "written/s", "captured/s", "lost",
              "drain s", "victim restart median / p90 / max ms (kills)",
              "status median / max ms (failed)", "RSS max MiB", "CPU %, last %s s",
              "alert fired"]
    window = None
    rows = []
    for peer, mode, r in _rows(m):
        if r.get("skip"):
            continue
        if "rows" not in r:
            rows.append(_error_row(peer, mode, r, len(header)))
            continue
        for row in r["rows"]:
            writes = "%s (%s a write)" % (row.get("writes", "?"), _f(row.get("lines_per_write")))
            rule = "`log_matches`" if row.get("setting") == "rule" else "none"
            if "restart" not in row:
                rows.append([peer, rule, writes, "error: %s" % row.get("error")]
                            + [""] * (len(header) - 4))
                continue
            rs = row["restart"]
            restart = "—"
            if rs.get("runs"):
                restart = "%.2f / %.2f / %.2f (%d)" % (rs["median_ms"], rs["p90_ms"], rs["max_ms"],
                                                      rs["runs"])
            if rs.get("failures"):
                restart += " " + "; ".join(rs["failures"])
            st = row.get("status", {})
            status = "—"
            if st.get("answered"):
                status = "%.0f / %.0f" % (st["median_ms"], st["max_ms"])
            bad = st.get("failed", 0) + st.get("timed_out", 0)
            status += " (%s)" % ("**%d**" % bad if bad else "0")
            window = window or row.get("cpu_window_s")
            lost = row.get("lost")
            fired = row.get("alert_fired")
            rows.append([peer, rule, writes, _f(row.get("target_lines_per_s")),
                         _f(row.get("written_per_s")), _f(row.get("captured_per_s")),
                         ("**%d**" % lost if lost else "0") if lost is not None else
                         "error: %s" % row.get("error"),
                         _f(row.get("drain_s"), 2), restart, status,
                         _f(row["rss_max_kib"] / 1024, 1) if row.get("rss_max_kib") else "—",
                         _f(row.get("cpu_percent"), 1),
                         "—" if fired is None else ("yes" if fired else "**no**")])
    header[11] = "CPU %%, last %s s" % (_f(round(window)) if window else "30")
    return _table(header, rows)


def _scale_status(st):
    if not st or not st.get("ran"):
        return "—"
    text = "%d / %s / %s" % (st["ran"], "**%d**" % st["failed"] if st["failed"] else "0",
                             "**%d**" % st["timed_out"] if st["timed_out"] else "0")
    if st.get("answered"):
        text += "; %.0f / %.0f" % (st["median_ms"], st["max_ms"])
    if st.get("excused"):
        text += " (%d after the supervisor exited)" % st["excused"]
    return text


def _scale_cmd(p):
    if "command_s" not in p:
        return "(does not return)"
    if p["command_s"] is None:
        return "still running"
    code = p.get("command_exit")
    return "%.2f (exit %s)" % (p["command_s"], "**%s**" % code if code else code)


def table_scale(m):
    header = ["peer", "children", "up: all running, s", "start command s",
              "status during up: ran / failed / timed out; median / max ms",
              "RSS / PSS MiB, all running",
              "down: none left, s", "stop command s",
              "status during down: ran / failed / timed out; median / max ms",
              "first status failure"]
    rows = []
    for peer, mode, r in _rows(m):
        if r.get("skip"):
            continue
        if "rows" not in r:
            rows.append(_error_row(peer, mode, r, len(header)))
            continue
        limit = r.get("phase_timeout_s", 300)
        for row in r["rows"]:
            if "up" not in row:
                rows.append([peer, row.get("children"),
                             row.get("skipped") or "error: %s" % row.get("error")]
                            + [""] * (len(header) - 3))
                continue
            up, down = row["up"], row["down"]
            if up.get("finished"):
                up_s = _f(up["children_s"], 2)
            elif up.get("stalled_s"):
                up_s = "**did not finish**: %d running, none more for %.0f s" % (
                    up.get("running", 0), up["stalled_s"])
            else:
                up_s = "**did not finish in %.0f s** (%d running)" % (limit, up.get("running", 0))
            if down.get("finished"):
                down_s = _f(down["gone_s"], 2)
            else:
                down_s = "**did not finish in %.0f s** (%d left)" % (limit, down.get("left", 0))
            rows.append([peer, row["children"], up_s, _scale_cmd(up), _scale_status(up.get("status")),
                         "%s / %s" % (_f(row["rss_kib"] / 1024, 1),
                                      _f(row["pss_kib"] / 1024, 1) if "pss_kib" in row else "—")
                         if row.get("rss_kib") else "—",
                         down_s, _scale_cmd(down) if "command_s" in down else "(a signal)",
                         _scale_status(down.get("status")), _scale_failures(up, down)])
    return _table(header, rows)


def _scale_failures(up, down):
    out = []
    for name, p in (("up", up), ("down", down)):
        why = (p.get("status") or {}).get("first_failure")
        if why:
            out.append("%s: %s" % (name, why[:120]))
    return "; ".join(out)


SECTIONS = [
    ("restart", "1. Restart latency", table_restart,
     "SIGKILL to a supervised idle child (`sleep`), until a new pid runs the child's argv; "
     "pids past `ns_last_pid` polled every 0.2 ms. Between kills the new child runs for "
     "`spacing`, the peer's stability threshold in that mode, so no kill counts as a crash "
     "loop. `pid appears`: the new pid first seen at all (fork, before exec). `floor`: the "
     "same method on a minimal supervisor (waitpid, then posix_spawn), measured just before "
     "each row: what the machine and the method cost before any supervisor logic. roster's "
     "`[listen]` rows: the same child with a listen socket, which roster starts through its "
     "exec shim (`roster __roster-exec`, then exec of the child) instead of posix_spawn of the "
     "child; measured right after the direct row, against the same floor."),
    ("footprint", "2. Footprint", table_footprint,
     "The supervisor's own processes (roster's daemon; supervisord; PM2's God daemon; "
     "runsvdir and every runsv), children excluded, with N idle children, 2 s after all run. "
     "RSS: sum of VmRSS; PSS splits shared pages between processes (matters for runit). "
     "Idle CPU: utime+stime of those processes over the window, % of one core. With 100 "
     "children RSS and PSS are read again at the end of that window: roster, quiet for 10 s "
     "after work, drops the pages of code and constants start-up touched from its mappings "
     "(they stay in the page cache; what idle work runs faults back in) and returns freed "
     "heap (`roster_core::trim`)."),
    ("logs", "3. Log capture", table_logs,
     "A child writes 100-byte lines (`bench/lib/flood.py`) as fast as it can; from the "
     "go-signal to its last line (`done`) at the end of the supervisor's log file. MB/s of "
     "payload. The limit: the same writer with stdout straight on a file, best of 3, measured "
     "just before each row. Then every file of the log (rotated, gzipped) is checked: "
     "`split` = lines that are not exactly one written line."),
    ("coldstart", "4. Cold start of 100 children", table_coldstart,
     "From running the start command (config written before; nothing running) to 100 "
     "children running, found by polling new pids every 1 ms. `roster up` itself returns "
     "only after `ready_after` (1 s)."),
    ("status", "5. Status at scale", table_status,
     "Wall time of the status command with N children running, around `subprocess.run` "
     "(so it includes starting the client: a Python interpreter for supervisorctl, node "
     "for pm2)."),
    ("stop", "6. Stopping at scale", table_stop,
     "N idle children (`sleep`, which ends on SIGTERM at once) running; then the peer's stop "
     "command (`roster down`, `supervisorctl shutdown`, `pm2 kill`, SIGHUP to runsvdir) until "
     "every child and the supervisor are gone. Each peer at its defaults. For roster, "
     "`journaled killed` counts `killed` events (SIGKILL after stop_timeout): every child "
     "ended on its SIGTERM, so any would be false."),
    ("metrics", "7. A /metrics scrape at scale", table_metrics,
     "Wall time of one `GET /metrics` (a new loopback connection each time, to the last "
     "byte) with N idle children running, roster at its defaults plus `[metrics]`. The "
     "scrape samples every child's process group in /proc (CPU, memory, threads, open "
     "descriptors, TCP sockets). Only roster: supervisord, PM2 and runit need a separate "
     "exporter for Prometheus."),
    ("watch", "8. The cost of watching", table_watch,
     "The daemon's own CPU (utime+stime) over a 60 s window, after a 12 s warm-up, with N idle "
     "children: `no rules` (`watch = []`, no health check: nothing is sampled), `rules` (the "
     "graded default rules: each agent's process group sampled every 5 s), `rules + http` "
     "(plus an HTTP health check per agent every 5 s, against one loopback server). roster "
     "only: the peers have no built-in rules or HTTP checks."),
    ("deploy", "9. Deploys under load", table_deploy,
     "The example agent `customer-support` (Python, serves `GET /health`, drains on SIGTERM), "
     "and a naive app (`http.server`, 30 ms an answer, Python's default SIGTERM: it dies at "
     "once), replaced by a new "
     "release N times while two load threads send requests back to back, each on a new "
     "loopback connection with 2 s connect and read timeouts; 1 s of load before the first "
     "deploy and after each. `failed`: refused, reset, timed out or not 200. `time without an "
     "answer`: summed, from a failed request's start to the next answered one: the outage "
     "(a refused request returns at once and the load retries at once, so `failed` also "
     "counts how fast it retried). roster: `roster deploy` of a freshly copied source "
     "directory with a new `--version`, `verify_for = \"1s\"`, a health check on the port "
     "every 200 ms, `ready_after = \"300ms\"`; `+ listen`: roster binds the port and "
     "hands it to every process of the agent (LISTEN_FDS; blue-green: a socket of its own "
     "per release, the old one's queue moved to the new one at cutover when "
     "`tcp_migrate_req=1`, else one shared socket); without it the agent binds "
     "`$PORT` itself. The peers run the same app binding `$PORT`, at their defaults, "
     "deployed by hand: the new files copied in place, then the restart command (PM2's "
     "reload of a fork-mode, non-Node app is a restart). `deploy median`: wall time of the "
     "deploy (for the peers, copy plus restart command). Run as root, the measure runs in a "
     "network namespace of its own with `net.ipv4.tcp_migrate_req=1` (0 for the row that "
     "says so)."),
    ("dashboard", "10. A dashboard left open", table_dashboard,
     "100 idle children at the peer's defaults. The supervisor's CPU (threads' schedstat) over "
     "a 60 s window alone, then over another 60 s with the peer's terminal dashboard open in a "
     "tmux session of the measure's own, 120x40, after a 5 s warm-up: `roster top` (status and "
     "alerts every second, the sample history every 5 s, its log pane following the first "
     "agent), `pm2 monit`. `dashboard`: the dashboard's own processes; `terminal`: the tmux "
     "server, which stands for the operator's terminal (it parses and renders what the "
     "dashboard writes); `added`: the supervisor's increase plus the dashboard's own. "
     "supervisord and runit have no terminal dashboard."),
    ("flood", "11. A `log_matches` rule under a flood", table_flood,
     "One agent prints 100-byte lines that match `(?i)\\berror\\b` (`bench/lib/paced.py`) on a "
     "fixed schedule for 60 s: 20,000 lines/s as one write of 2,000 lines every 100 ms "
     "(`batched`), or 3,000 lines/s as one write(2) per line (`per line`); beside it an idle "
     "`sleep` (the victim) is SIGKILLed every 1.5 s. roster with the README's rule on the "
     "flooding agent (`log_matches`, `within = \"5m\"`, `above = 100`, `action = \"alert\"`: "
     "every line is matched) and with `watch = []` (capturing alone); the peers have no such "
     "rule and capture the same flood. Each peer at its defaults, but every rotated log file "
     "is kept so that lines can be counted (roster `[log] keep`; rotation size and gzip as by "
     "default), and roster's victim has `stable_after = \"1s\"` like the peers' 1 s (its "
     "default 10 s would make every kill a quick death). `written/s`: lines the writer got "
     "out (below the asked rate when the pipe was full); `captured/s`: distinct lines found "
     "in the log's files, over the time from the go signal to the writer's last line in the "
     "log; `drain`: how long after the writer's last write that line reached the log. Victim "
     "restart: SIGKILL to a new pid running its argv (new pids polled every 0.2 ms). Status "
     "(`roster status --json`, `supervisorctl status`, `pm2 jlist`) every ~1 s, 10 s "
     "timeout; `failed` counts failures and timeouts. RSS: the supervisor's processes, every "
     "0.5 s; CPU: their utime+stime over the last 30 s of the flood, % of one core. "
     "`alert fired`: the rule's alert is firing after the flood."),
    ("scale", "12. Up and down at scale", table_scale,
     "N idle children (`sleep`), config written before, nothing running. Up: from the start "
     "command (`roster up -f`, `supervisord -c`, `pm2 start ecosystem.config.js`, `runsvdir`) "
     "until all N children run (new pids polled every 20 ms); the start command's own wall "
     "time and exit code beside it (`roster up` returns after `ready_after`, 1 s). Down: from "
     "the stop command (`roster down`, `supervisorctl shutdown`, `pm2 kill`, SIGHUP to "
     "runsvdir) until no child is left. Throughout both, the status command every 250 ms "
     "(at once when one took longer; 10 s timeout each) from the first child running to all "
     "running, and from the stop command to the last child gone; in the down phase a query "
     "that fails after the supervisor itself has exited is not counted. RSS and PSS: the "
     "supervisor's processes once all run (PSS splits shared pages between them). Each phase "
     "has 300 s, and up ends early when no new child appeared for 60 s; a peer that does not "
     "finish is not measured at larger N. Each peer at its defaults."),
]


def render(results):
    out = []
    quick = results.get("quick")
    out.append("# roster benchmarks")
    out.append("")
    out.append("Generated by `bench/run%s` on %s; do not edit above `## Analysis` by hand."
               % (" --quick" if quick else "", results.get("date", "?")))
    if quick:
        out.append("")
        out.append("> **Quick (smoke) mode**: few runs, small counts, short windows. These numbers "
                   "only show that every measure works; run `bench/run` without `--quick` for "
                   "figures to compare.")
    out.append("")
    mach = results.get("machine", {})
    out.append("**Machine**: %s, %s CPUs, %s memory, Linux %s; load average %s at the start, %s at the end."
               % (mach.get("model", "?"), mach.get("cpus", "?"), mach.get("memory", "?"),
                  mach.get("kernel", "?"), mach.get("load_start", "?"), mach.get("load_end", "?")))
    if results.get("duration_s") is not None:
        out.append("")
        out.append("**Run time**: %.0f s." % results["duration_s"])
    out.append("")
    out.append("| peer | version |")
    out.append("|---|---|")
    for p in PEER_ORDER:
        if p in results.get("versions", {}):
            out.append("| %s | %s |" % (p, results["versions"][p] or "not installed"))
    notes = results.get("notes") or []
    if notes:
        out.append("")
        out.append("Notes from this run:")
        out.append("")
        for n in notes:
            out.append("- " + n)
    out.append("")
    out.append("## How to rerun")
    out.append("")
    out.append("```sh")
    out.append("bench/run                     # installs the peers into bench/.peers, builds roster, runs everything")
    out.append("bench/run --quick             # smoke mode: seconds per measure")
    out.append("bench/run --peers roster,pm2 --measures restart,status")
    out.append("bench/measures/restart.py --peer roster            # one measure alone (every mode)")
    out.append("bench/measures/logs.py --peer supervisord --mode fastest --json")
    out.append("```")
    out.append("")
    out.append("Modes: `fastest` is each peer at its fastest restart setting (roster: "
               "`restart_delay = \"0s\"`, `stable_after = \"0s\"`, `crash_loop = 0`; supervisord: "
               "`startsecs=0`, `autorestart=true`, large `startretries`; PM2: `restart_delay: 0`, "
               "`min_uptime: 0`, large `max_restarts`); `defaults` is the peer with only the "
               "command given. runit has no restart settings, so it has one row. For the log "
               "measure, `fastest` also turns rotation off (roster `max_size = \"1GiB\"`, "
               "`compress = false`; supervisord `stdout_logfile_maxbytes=0`; svlogd `s0`); "
               "`defaults` keeps each peer's rotation (roster 10 MiB × 14 gzipped; supervisord "
               "50 MB × 10; PM2 none; svlogd 1 MB × 10, which keeps only the last ~11 MB).")
    measures = results.get("measures", {})
    for key, title, fn, method in SECTIONS:
        if key not in measures:
            continue
        out.append("")
        out.append("## " + title)
        out.append("")
        out.append(method)
        dated = results.get("measure_dates", {}).get(key)
        if dated:
            out.append("")
            out.append("Measured %s." % dated)
        out.append("")
        try:
            out.append(fn(measures[key]))
        except Exception as e:  # never lose the whole report to one table
            out.append("(table failed: %r; see results.json)" % (e,))
        notes = []
        for peer, mode, r in _rows(measures[key]):
            if r.get("note") and not r.get("skip"):
                notes.append("%s %s: %s" % (peer, mode, r["note"]))
        if notes:
            out.append("")
            for n in notes:
                out.append("- " + n)
    out.append("")
    return "\n".join(out)


def write(path, results):
    analysis = ANALYSIS + "\n\n(written by hand after the run)\n"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        # The heading on a line of its own, not the words in the header.
        match = re.search(r"(?m)^" + re.escape(ANALYSIS) + r"[ \t]*$", text)
        i = match.start() if match else -1
        if i >= 0:
            analysis = text[i:].lstrip("\n")
    body = render(results)
    with open(path + ".tmp", "w") as f:
        f.write(body + "\n" + analysis)
    os.replace(path + ".tmp", path)
