#!/usr/bin/env python3
"""Log capture: a child writes 1,000,000 lines of 100 bytes as fast as it can
(bench/lib/flood.py); how fast do they reach the supervisor's log file, and
are any lost, split or doubled? Beside it the limit: the same writer with its
stdout straight on a file in the same directory (best of 3).

    logs.py --peer P [--mode fastest|defaults] [--quick] [--json]

t0 is the creation of the go-file the writer waits for (it has prepared
every line before); t1 is when the `done` line it writes last is at the end
of the log (polled every 1 ms). MB/s counts the payload (100 bytes a line),
not a timestamp the supervisor adds. Then every file of that log, rotated
and compressed ones too, is read oldest first: a line that is not exactly one
written line is `split`; a sequence number missing is `lost`, one seen twice
`doubled`. --quick: 100,000 lines.
"""

import gzip
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from common import BENCH, log, make_tmp, measure_main, sweep, wait_until  # noqa: E402

FLOOD = os.path.join(BENCH, "lib", "flood.py")
PAD = b"x" * 91


def lines_for(quick):
    return 100_000 if quick else 1_000_000


def _ends_with_done(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            if size < 5:
                return False
            f.seek(max(0, size - 64))
            return f.read().endswith(b"done\n")
    except OSError:
        return False


def _timed_flood(files_fn, go, timeout):
    """Create the go-file and wait for `done` at the end of the log: seconds."""
    t0 = time.perf_counter()
    open(go, "w").close()
    while True:
        files = files_fn()
        if any(_ends_with_done(f) for f in files[-2:]):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            return None
        time.sleep(0.001)


def verify(files, n, prefix):
    seen = bytearray(n)
    split = doubled = disorder = done = other = 0
    last = -1
    for path in files:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            for line in f:
                if prefix:
                    if len(line) > prefix and line[prefix - 1:prefix] == b" ":
                        line = line[prefix:]
                    else:
                        split += 1
                        continue
                if line == b"done\n":
                    done += 1
                    continue
                if len(line) == 100 and line[8:99] == PAD and line[-1:] == b"\n" and line[:8].isdigit():
                    seq = int(line[:8])
                    if seq >= n:
                        other += 1
                        continue
                    if seen[seq]:
                        doubled += 1
                    elif seq < last:
                        disorder += 1
                    if seen[seq] < 255:
                        seen[seq] += 1
                    last = seq
                else:
                    split += 1
    lost = seen.count(0)
    return {"lost": lost, "split": split, "doubled": doubled, "out_of_order": disorder,
            "done_lines": done, "unexpected": other}


def _files_settled(files_fn, quiet=1.0, timeout=60):
    """Wait until the log's files (names and sizes) stop changing: rotation
    and compression may still run after the last line is written."""
    def snap():
        out = []
        for f in files_fn():
            try:
                out.append((f, os.path.getsize(f)))
            except OSError:
                pass
        return out
    deadline = time.monotonic() + timeout
    prev, since = snap(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        cur = snap()
        if cur != prev:
            prev, since = cur, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False


def limit(n, timeout, tries=3):
    """The best of a few runs of the writer straight into a file."""
    runs = [limit_once(n, timeout) for _ in range(tries)]
    good = [r for r in runs if "mb_per_s" in r]
    if not good:
        return runs[0]
    best = dict(max(good, key=lambda r: r["mb_per_s"]))
    best["runs_mb_per_s"] = [r["mb_per_s"] for r in good]
    return best


def limit_once(n, timeout):
    d = make_tmp("limit")
    go = os.path.join(d, "go")
    out = os.path.join(d, "out.log")
    proc = None
    try:
        with open(out, "wb") as f:
            proc = subprocess.Popen([sys.executable, FLOOD, str(n), go], stdout=f,
                                    stdin=subprocess.DEVNULL, cwd=d, start_new_session=True)
        if not wait_until(lambda: os.path.exists(go + ".ready"), 60, 0.01):
            return {"error": "the writer did not get ready"}
        secs = _timed_flood(lambda: [out], go, timeout)
        if secs is None:
            return {"error": "no done line within %ss" % timeout}
        return {"seconds": round(secs, 4), "mb_per_s": round(n * 100 / 1e6 / secs, 1)}
    finally:
        if proc:
            proc.kill()
            proc.wait()
        sweep(d)
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def run_mode(cls, mode, quick):
    n = lines_for(quick)
    timeout = 60.0 if quick else 600.0
    lim = limit(n, timeout)
    log("logs limit: %s" % lim)
    peer = cls(mode)
    try:
        go = os.path.join(peer.dir, "go")
        peer.setup(1, command=[sys.executable, FLOOD, str(n), go], log=True)
        peer.start(timeout=60)
        if not wait_until(lambda: os.path.exists(go + ".ready"), 60, 0.01):
            return {"error": "the writer did not get ready under %s" % cls.NAME, "limit": lim}
        secs = _timed_flood(lambda: peer.log_files("flood"), go, timeout)
        if secs is None:
            res = {"error": "no done line in the log within %ss" % timeout}
        else:
            res = {"seconds": round(secs, 4), "mb_per_s": round(n * 100 / 1e6 / secs, 1)}
        _files_settled(lambda: peer.log_files("flood"))
        files = peer.log_files("flood")
        res["lines"] = n
        res["files"] = len(files)
        res["bytes_on_disk"] = sum(os.path.getsize(f) for f in files if os.path.exists(f))
        res.update(verify(files, n, cls.LOG_PREFIX))
        res["limit"] = lim
        if "mb_per_s" in res and "mb_per_s" in lim:
            res["percent_of_limit"] = round(100.0 * res["mb_per_s"] / lim["mb_per_s"], 1)
        return res
    finally:
        peer.stop()


def describe(r):
    if "mb_per_s" not in r:
        return r.get("error", "?")
    return ("%.1f MB/s (%.0f%% of the %.1f MB/s limit); lost %d, split %d, doubled %d in %d file(s)"
            % (r["mb_per_s"], r.get("percent_of_limit", 0), r["limit"].get("mb_per_s", 0),
               r["lost"], r["split"], r["doubled"], r["files"]))


if __name__ == "__main__":
    measure_main("logs", run_mode, describe)
