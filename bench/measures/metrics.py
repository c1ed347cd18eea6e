#!/usr/bin/env python3
"""Metrics at scale: the wall time of one `GET /metrics` scrape with 1000
children running, from connecting to the last byte of the answer, on a
fresh connection each time (as Prometheus scrapes).

    metrics.py --peer P [--mode fastest|defaults] [--quick] [--json]

roster only: supervisord, PM2 and runit serve no Prometheus metrics of
their own (each needs a separate exporter), so they have no row. Measured
in the defaults mode only (restart settings do not matter here). One
untimed scrape first, then 30 (--quick: 100 children, 5 scrapes).
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import (free_port, http_request, http_status_body, log, measure_main,  # noqa: E402
                    summary_ms)

START_TIMEOUT = 180.0



def scrape(port):
    """One scrape: (seconds, status, body bytes)."""
    t0 = time.perf_counter()
    answer = http_request(
        port, b"GET /metrics HTTP/1.1\r\nHost: roster\r\nConnection: close\r\n\r\n", 30)
    secs = time.perf_counter() - t0
    status, body = http_status_body(answer)
    return secs, status, body


def run_mode(cls, mode, quick):
    if cls.NAME != "roster":
        return {"error": "%s serves no Prometheus metrics of its own (an exporter would)" % cls.NAME}
    if mode != "defaults":
        return {"skip": True, "note": "metrics is measured in the defaults mode only"}
    n = 100 if quick else 1000
    scrapes = 5 if quick else 30
    peer = cls(mode)
    port = free_port()
    try:
        peer.setup(n)
        with open(peer.conf) as f:
            config = f.read()
        with open(peer.conf, "w") as f:
            f.write('[metrics]\nlisten = "127.0.0.1:%d"\n\n' % port + config)
        error = peer.start_children(n, START_TIMEOUT)
        if error:
            return {"children": n, "error": error}
        time.sleep(1.0)
        _, status, body = scrape(port)
        if status != 200:
            return {"children": n, "error": "GET /metrics answered %d" % status}
        times = []
        for _ in range(scrapes):
            secs, status, body = scrape(port)
            if status != 200:
                return {"children": n, "error": "GET /metrics answered %d" % status}
            times.append(int(secs * 1e9))
        res = summary_ms(times)
        lines = body.split(b"\n")
        series = sum(1 for line in lines if line and not line.startswith(b"#"))
        up = sum(1 for line in lines if line.startswith(b"roster_agent_up{") and line.endswith(b" 1"))
        res.update({"children": n, "agents_up": up, "series": series,
                    "output_bytes": len(body)})
        log("metrics %s %s: %s" % (cls.NAME, mode, res))
        return res
    finally:
        peer.stop()


def describe(r):
    if r.get("skip"):
        return r["note"]
    if "median_ms" not in r:
        return r.get("error", "?")
    return ("one scrape with %d children: median %.1f ms, p90 %.1f ms (%d scrapes, %d series, %d bytes)"
            % (r["children"], r["median_ms"], r["p90_ms"], r["runs"], r["series"],
               r["output_bytes"]))


if __name__ == "__main__":
    measure_main("metrics", run_mode, describe)
