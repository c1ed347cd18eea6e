#!/usr/bin/env python3
"""The web dashboard's cost (issue #18): 200 idle children (`sleep`) at
roster's defaults plus `[web]` on a loopback port.

    web.py --peer roster [--mode defaults] [--quick] [--json]

Reported:
- `show_ms`: from the login form's submit to the page showing all 200
  rows (`tr[data-agent]`), in headless Chromium through selenium (Debian's
  chromium and chromium-driver, selenium from PyPI); 5 logins (--quick: 2),
  median and max. Skipped, with the reason, when one of them is missing.
- the daemon's CPU, as % of one core over a window (threads' schedstat):
  with no page open, then with 1 and with 10 pages open. A page here is
  what an open dashboard costs the daemon: its event stream
  (`/web/api/stream`, a snapshot a second), read to the last byte by a
  client thread; the 10 share one snapshot per tick. The window is 60 s
  after a 5 s warm-up (--quick: 15 s).

Beside it, what the peers offer for the same job:
- supervisord's web page (`[inet_http_server]` on loopback): `show_ms`
  from asking for the page to its 200 program rows; its page is not live,
  so an open page here asks for `/` once a second (what a browser's
  auto-refresh does to see changes as often as roster's page shows them);
  supervisord's CPU with no page, 1 and 10 such pages.
- PM2: its web dashboard is a hosted service, not part of pm2; what it
  ships for watching is `pm2 monit` (a terminal dashboard), so a "page"
  is one `pm2 monit` in a tmux session of the measure's own (120x40); the
  CPU reported is PM2's daemon plus the monit processes (tmux excluded).
Defaults mode only.
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import log, measure_main, thread_cpu_ns  # noqa: E402
import peers as peers_mod  # noqa: E402

CHILDREN = 200
START_TIMEOUT = 180.0
WARM_UP = 5.0
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_percent(pids, window):
    def ns():
        out = {}
        for pid in pids:
            out.update(thread_cpu_ns(pid))
        return out
    before = ns()
    t0 = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - t0
    after = ns()
    used = sum(v - before.get(t, 0) for t, v in after.items())
    return round(100.0 * used / 1e9 / elapsed, 3)


class Stream(threading.Thread):
    """One open page's event stream, read until stopped."""

    def __init__(self, port, token):
        super().__init__(daemon=True)
        self.port, self.token = port, token
        self.events = 0
        self.stopping = False
        self.sock = None

    def run(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.sock.sendall(("GET /web/api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Authorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n"
                           % self.token).encode())
        while not self.stopping:
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            self.events += data.count(b"event: snapshot")

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except (OSError, AttributeError):
            pass


def chromium():
    """(driver, profile dir, None) of a headless Chromium, or (None, None, why)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, None, "selenium is not installed (pip install selenium)"
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return None, None, "chromium or chromium-driver is not installed"
    os.environ["SE_OFFLINE"] = "true"
    profile = tempfile.mkdtemp(prefix="rbench-chromium-", dir="/tmp")
    options = Options()
    for flag in FLAGS + ["--user-data-dir=" + profile]:
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options), profile, None


def wait_rows(driver, count_script, t0):
    """Waits until `count_script` counts all the children's rows on the
    page, at most 30 s after t0; None, or why not."""
    deadline = t0 + 30
    while True:
        count = driver.execute_script(count_script)
        if count >= CHILDREN:
            return None
        if time.monotonic() > deadline:
            return "the page showed %d of %d rows after 30 s" % (count, CHILDREN)
        time.sleep(0.005)


def show_times(port, token, runs):
    driver, profile, why = chromium()
    if driver is None:
        return None, why
    from selenium.webdriver.common.by import By
    times = []
    try:
        for _ in range(runs):
            driver.delete_all_cookies()
            driver.get("http://127.0.0.1:%d/" % port)
            driver.find_element(By.CSS_SELECTOR, 'input[name="token"]').send_keys(token)
            t0 = time.monotonic()
            driver.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
            why = wait_rows(driver, "return document.querySelectorAll('tr[data-agent]').length;",
                            t0)
            if why:
                return None, why
            times.append((time.monotonic() - t0) * 1000)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return times, None


def run_mode(cls, mode, quick):
    if mode != "defaults":
        return {"skip": True, "note": "the web dashboard is measured in the defaults mode only"}
    if cls.NAME == "supervisord":
        return run_supervisord(cls, mode, quick)
    if cls.NAME == "pm2":
        return run_pm2(cls, mode, quick)
    if cls.NAME != "roster":
        return {"skip": True, "note": "%s has no web dashboard measured here" % cls.NAME}
    window = 15.0 if quick else 60.0
    peer = cls(mode)
    streams = []
    try:
        peer.setup(CHILDREN)
        port = free_port()
        with open(peer.conf, "a") as f:
            f.write('\n[web]\nlisten = "127.0.0.1:%d"\n' % port)
        error = peer.start_children(CHILDREN, START_TIMEOUT)
        if error:
            return {"error": error}
        token = subprocess.run(
            [peers_mod.roster_bin(), "--home", peer.home, "web", "token", "add", "bench",
             "--admin"], capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip().splitlines()[-1]
        time.sleep(WARM_UP)
        out = {"children": CHILDREN, "window_s": window}
        out["idle_percent"] = cpu_percent(peer.supervisor_pids(), window)
        times, why = show_times(port, token, 2 if quick else 5)
        if times:
            out["show_ms_median"] = round(statistics.median(times), 1)
            out["show_ms_max"] = round(max(times), 1)
        else:
            out["show_note"] = why
        # The browser's stream is gone; the ticker stops within a tick.
        time.sleep(WARM_UP)
        for pages in (1, 10):
            while len(streams) < pages:
                stream = Stream(port, token)
                stream.start()
                streams.append(stream)
            time.sleep(WARM_UP)
            before = sum(s.events for s in streams)
            out["pages_%d_percent" % pages] = cpu_percent(peer.supervisor_pids(), window)
            got = sum(s.events for s in streams) - before
            out["pages_%d_snapshots_per_s" % pages] = round(got / window, 2)
        log("web roster: %s" % out)
        return out
    finally:
        for stream in streams:
            stream.stop()
        peer.stop()


class Refresher(threading.Thread):
    """One open supervisord page: `/` asked for once a second."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.pages = 0
        self.stopping = threading.Event()

    def run(self):
        import urllib.request
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/" % self.port, timeout=5) as r:
                    r.read()
                self.pages += 1
            except OSError:
                pass
            self.stopping.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def stop(self):
        self.stopping.set()


def supervisord_show_times(port, runs):
    """From asking for supervisord's page to its 200 program rows."""
    driver, profile, why = chromium()
    if driver is None:
        return None, why
    times = []
    count_rows = ("return Array.from(document.querySelectorAll('td a'))"
                  ".filter(a => /^c\\d+$/.test(a.textContent.trim())).length;")
    try:
        for _ in range(runs):
            driver.get("about:blank")
            t0 = time.monotonic()
            driver.get("http://127.0.0.1:%d/" % port)
            why = wait_rows(driver, count_rows, t0)
            if why:
                return None, why
            times.append((time.monotonic() - t0) * 1000)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return times, None


def run_supervisord(cls, mode, quick):
    window = 15.0 if quick else 60.0
    peer = cls(mode)
    pages = []
    try:
        peer.setup(CHILDREN)
        port = free_port()
        with open(peer.conf, "a") as f:
            f.write("\n[inet_http_server]\nport=127.0.0.1:%d\n" % port)
        error = peer.start_children(CHILDREN, START_TIMEOUT)
        if error:
            return {"error": error}
        time.sleep(WARM_UP)
        out = {"children": CHILDREN, "window_s": window, "page": "supervisord's web page"}
        out["idle_percent"] = cpu_percent(peer.supervisor_pids(), window)
        times, why = supervisord_show_times(port, 2 if quick else 5)
        if times:
            out["show_ms_median"] = round(statistics.median(times), 1)
            out["show_ms_max"] = round(max(times), 1)
        else:
            out["show_note"] = why
        time.sleep(WARM_UP)
        for count in (1, 10):
            while len(pages) < count:
                page = Refresher(port)
                page.start()
                pages.append(page)
            time.sleep(WARM_UP)
            before = sum(p.pages for p in pages)
            out["pages_%d_percent" % count] = cpu_percent(peer.supervisor_pids(), window)
            out["pages_%d_snapshots_per_s" % count] = round(
                (sum(p.pages for p in pages) - before) / window, 2)
        log("web supervisord: %s" % out)
        return out
    finally:
        for page in pages:
            page.stop()
        peer.stop()


def run_pm2(cls, mode, quick):
    if not shutil.which("tmux"):
        return {"error": "tmux is not installed"}
    from dashboard import Tmux  # the terminal dashboard measure's tmux server
    from common import descendants
    window = 15.0 if quick else 60.0
    peer = cls(mode)
    servers = []
    try:
        peer.setup(CHILDREN)
        error = peer.start_children(CHILDREN, START_TIMEOUT)
        if error:
            return {"error": error}
        time.sleep(WARM_UP)
        out = {"children": CHILDREN, "window_s": window, "page": "pm2 monit"}
        out["idle_percent"] = cpu_percent(peer.supervisor_pids(), window)
        out["show_note"] = "pm2 has no web page of its own (its web dashboard is hosted)"
        for count in (1, 10):
            while len(servers) < count:
                tmux = Tmux()
                servers.append(tmux)
                tmux.open([peers_mod.pm2_bin(), "monit"], peer.status_env())
            time.sleep(WARM_UP)
            panes = [t.pane_pid() for t in servers]
            pids = peer.supervisor_pids() + panes + descendants(panes)
            out["pages_%d_percent" % count] = cpu_percent(pids, window)
        log("web pm2: %s" % out)
        return out
    finally:
        for tmux in servers:
            tmux.close()
        peer.stop()


def describe(r):
    if r.get("skip"):
        return r["note"]
    if "error" in r:
        return r["error"]
    shown = ("200 agents shown %.0f ms after asking (median; max %.0f)"
             % (r["show_ms_median"], r["show_ms_max"])
             if "show_ms_median" in r else "not shown: %s" % r.get("show_note"))
    return ("%s; supervisor %.3f%% idle, %.3f%% with 1 page, %.3f%% with 10 pages"
            % (shown, r["idle_percent"], r["pages_1_percent"], r["pages_10_percent"]))


if __name__ == "__main__":
    measure_main("web", run_mode, describe)
