"""The diagnose measure's section of RESULTS.md (bench/run adds it to
report.SECTIONS): roster diagnose with 100 agents beside sos report."""

from report import _f, _rows, _table, _verdict

METHOD = (
    "100 agents under one roster (10 crash-looping, so there is something to find), "
    "`roster diagnose --json` 10 times and `roster diagnose --bundle` 5 times once the crash "
    "loops have failed for good; wall time around the command. Beside it, on the same machine "
    "in the same run, one `sos report --batch` (Debian's sosreport, all its default plugins, "
    "into a scratch directory), stopped after 15 minutes. The restore drill: 50 agents shipped "
    "as releases (each deployed once, restart strategy, `verify_for = \"0s\"`) and one secret, "
    "`roster backup` while they run, then `roster restore` into a new home (the config at a new "
    "path) and `roster up -f` there, timed from the restore's start until `status` shows every "
    "agent running.")


def table_diagnose(m):
    header = ["tool", "what", "agents", "runs, s", "median s", "exit", "detail",
              "goal: diagnose under 2 s with 100 agents; restore drill of 50 under 10 s"]
    rows = []
    for peer, mode, r in _rows(m):
        if peer != "roster" or r.get("skip"):
            continue
        if "rows" not in r:
            rows.append([peer, "error: " + str(r.get("error"))] + [""] * (len(header) - 2))
            continue
        for x in r["rows"]:
            if "median_s" not in x:
                rows.append([x.get("tool"), x.get("what"), "", "", "", "",
                             ("skipped: " + x["skip"]) if x.get("skip")
                             else "error: %s" % x.get("error"), ""])
                continue
            detail = []
            if x.get("findings") is not None:
                detail.append("%d findings, %d crash loops" % (x["findings"], x["crash_loops"]))
            if x.get("restore_s") is not None:
                detail.append("backup %.2f s, restore %.2f s, then up; %d running" % (
                    x["backup_s"], x["restore_s"], x["running"]))
            for key, label in (("bundle_bytes", "bundle"), ("archive_bytes", "archive")):
                if x.get(key):
                    detail.append("%s %.1f KiB" % (label, x[key] / 1024))
            goal = _verdict(x["goal_met"]) if x.get("goal_met") is not None else ""
            rows.append([x["tool"], "`%s`" % x["what"], _f(x.get("agents")),
                         ", ".join("%.3f" % s for s in x["runs_s"]), _f(x["median_s"], 3),
                         _f(x.get("exit")), "; ".join(detail) or "—", goal])
    return _table(header, rows)


SECTION = ("diagnose", "14. Diagnosing and restoring a host", table_diagnose, METHOD)
