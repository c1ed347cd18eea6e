#!/usr/bin/env python3
"""The log-capture writer: flood.py N GOFILE [TAG]

Prepares N lines of exactly 100 bytes (an 8-digit sequence number, 91 'x',
a newline), creates GOFILE.ready, waits until GOFILE exists, writes them to stdout as fast as it
can in large writes, then writes `done` and sleeps (so a supervisor does not
restart it and write everything again). TAG only marks the argv.
"""

import os
import sys
import time

PAD = b"x" * 91
CHUNK_LINES = 2000  # 200 KB per write


def main():
    n = int(sys.argv[1])
    go = sys.argv[2]
    chunks = []
    for start in range(0, n, CHUNK_LINES):
        end = min(n, start + CHUNK_LINES)
        chunks.append(b"".join(b"%08d%s\n" % (i, PAD) for i in range(start, end)))
    open(go + ".ready", "w").close()
    while not os.path.exists(go):
        time.sleep(0.0005)
    fd = sys.stdout.fileno()
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    os.write(fd, b"done\n")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        pass
