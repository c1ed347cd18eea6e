"""The web measure's section of RESULTS.md (bench/run adds it to
report.SECTIONS): roster's web dashboard beside supervisord's web page and
`pm2 monit`."""

from report import _f, _rows, _table, _verdict

METHOD = (
    "200 idle children (`sleep`) at each peer's defaults. roster: `[web]` on a loopback port "
    "and an admin token; `show ms` runs from the login form's submit to all 200 rows "
    "(`tr[data-agent]`) in headless Chromium through selenium (5 logins). A page open is its "
    "event stream (`/web/api/stream`, one snapshot a second) read to the last byte. "
    "supervisord: `[inet_http_server]` on loopback; `show ms` from asking for its page to its "
    "200 program rows; its page is not live, so an open page asks for `/` once a second (what "
    "a browser's auto-refresh does to see changes as often as roster's page shows them). "
    "PM2: its web dashboard is a hosted service, not part of pm2; its watching tool is "
    "`pm2 monit`, so a page is one `pm2 monit` in a tmux session of its own, and the CPU is "
    "PM2's daemon plus the monit processes. CPU is % of one core over 60 s after a 5 s "
    "warm-up (threads' schedstat), with no page, 1 and 10 pages open.")


def table_web(m):
    header = ["peer", "what", "children", "show ms (median / max)", "idle %", "1 page %",
              "10 pages %", "refreshes/s with 10",
              "goal: 200 shown within 2 s; under 1% of a core with a page open"]
    rows = []
    for peer, mode, r in _rows(m):
        if r.get("skip"):
            continue
        if "error" in r:
            rows.append([peer, "error: " + str(r["error"])] + [""] * (len(header) - 2))
            continue
        if "show_ms_median" in r:
            shown = "%.0f / %.0f" % (r["show_ms_median"], r["show_ms_max"])
        else:
            shown = r.get("show_note", "—")
        goal = ""
        if peer == "roster" and "show_ms_median" in r:
            goal = "show %s, 1 page %s" % (_verdict(r["show_ms_max"] < 2000),
                                          _verdict(r["pages_1_percent"] < 1.0))
        rows.append([peer, r.get("page", "roster's web dashboard"), _f(r.get("children")), shown,
                     _f(r.get("idle_percent"), 3), _f(r.get("pages_1_percent"), 3),
                     _f(r.get("pages_10_percent"), 3),
                     _f(r.get("pages_10_snapshots_per_s"), 2), goal])
    return _table(header, rows)


SECTION = ("web", "15. The web dashboard", table_web, METHOD)
