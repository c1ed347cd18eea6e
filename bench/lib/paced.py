#!/usr/bin/env python3
"""The paced log writer of the `flood` measure:

    paced.py GOFILE SECONDS LINES_PER_WRITE WRITES_PER_S TAG

Waits until GOFILE exists, then for SECONDS writes LINES_PER_WRITE lines in
one write(2), WRITES_PER_S times a second, on a fixed schedule (a write
that is late, because the pipe was full, goes at once, so the writer
catches up if it can), then `done N` (N lines written) and sleeps, so a
supervisor does not restart it. Each line is 100 bytes: an 8-digit
sequence number, ` error `, 84 'x', a newline, so it matches
`(?i)\\berror\\b`. TAG only marks the argv.
"""

import os
import sys
import time

PAD = b"x" * 84


def main():
    go, seconds, per_write, per_s = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    while not os.path.exists(go):
        time.sleep(0.005)
    fd = sys.stdout.fileno()
    interval = 1.0 / per_s
    t0 = time.monotonic()
    end = t0 + seconds
    seq = 0
    k = 0
    while True:
        due = t0 + k * interval
        now = time.monotonic()
        if due >= end or now >= end:
            break
        if due > now:
            time.sleep(due - now)
        chunk = b"".join(b"%08d error %s\n" % (i, PAD) for i in range(seq, seq + per_write))
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        seq += per_write
        k += 1
    os.write(fd, b"done %d\n" % seq)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        pass
