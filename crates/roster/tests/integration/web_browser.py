"""The web dashboard in headless Chromium, driven by selenium.

Run by `web::the_dashboard_in_a_real_browser` (web.rs), which starts the
daemon with agents `a` (tenant acme, a line every 0.3 s), `b` (tenant
other) and `c` (no tenant, prints `<script>alert(1)</script>`), makes the
tokens and passes them here as one JSON argument:
{"port", "admin", "tenant", "reader", "roster", "home", "shots"}.

Every check raises on failure; the last line printed is `ok`.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ARGS = json.loads(sys.argv[1])
BASE = "http://127.0.0.1:%d" % ARGS["port"]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,900",
]


def step(text):
    print("step: " + text, flush=True)


def wait(what, probe, timeout=20.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as error:  # the page may be between two renders
            last = error
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def browser(profile):
    options = Options()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument("--user-data-dir=" + profile)
    options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def roster(*args):
    return subprocess.run(
        [ARGS["roster"], "--home", ARGS["home"], *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def fetch(driver, method, path, csrf=True):
    """fetch() from the page itself, with its cookie and (if csrf) its token."""
    return driver.execute_async_script(
        """
        const [method, path, csrf, done] = arguments;
        const headers = {};
        if (csrf) headers["X-CSRF-Token"] =
            document.querySelector('meta[name="csrf-token"]').content;
        fetch(path, {method, headers, credentials: "same-origin"})
          .then(async (r) => done({status: r.status, body: await r.text(),
                                   csp: r.headers.get("content-security-policy")}))
          .catch((e) => done({status: 0, body: String(e)}));
        """,
        method,
        path,
        csrf,
    )


def rows(driver):
    return sorted(
        tr.get_attribute("data-agent")
        for tr in driver.find_elements(By.CSS_SELECTOR, "tr[data-agent]")
    )


def login(driver, token):
    driver.get(BASE + "/")
    field = driver.find_element(By.CSS_SELECTOR, 'input[name="token"]')
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    wait("the dashboard", lambda: driver.find_elements(By.CSS_SELECTOR, "meta[name=csrf-token]"))


def no_alert(driver):
    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        return
    raise AssertionError("an alert opened: %r" % text)


def snapshots(driver):
    return int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-snapshots") or 0)


def later_snapshots(driver, count=2):
    """Waits until the page has shown `count` more snapshots."""
    start = snapshots(driver)
    wait("%d more snapshots" % count, lambda: snapshots(driver) >= start + count)


def table_order(driver):
    """The table's rows top to bottom: agents by name, groups as group:NAME."""
    try:
        return [
            "group:" + tr.get_attribute("data-group")
            if tr.get_attribute("data-group")
            else tr.get_attribute("data-agent")
            for tr in driver.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]
    except StaleElementReferenceException:
        return None


def text_of(driver, css):
    """The text of the element `css` finds now (rows are redrawn each second)."""
    try:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def state_of(driver, name):
    cells = driver.find_elements(By.CSS_SELECTOR, 'tr[data-agent="%s"] td.state' % name)
    return cells[0].text if cells else None


def main():
    os.makedirs(ARGS["shots"], exist_ok=True)
    profile = tempfile.mkdtemp(prefix="roster-chromium-")
    driver = browser(profile)
    driver.set_script_timeout(20)
    try:
        step("a page without a token shows no agent data")
        driver.get(BASE + "/")
        assert driver.find_elements(By.CSS_SELECTOR, 'input[name="token"]')
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-agent]")
        assert "is alive" not in driver.page_source
        answer = fetch(driver, "GET", "/web/api/snapshot", csrf=False)
        assert answer["status"] == 401, answer

        step("the admin logs in and sees every agent")
        login(driver, ARGS["admin"])
        wait("rows a, b, c", lambda: rows(driver) == ["a", "b", "c"])
        driver.execute_script("window.rosterMarker = 'same page';")

        step("nothing is loaded from elsewhere, and the policy says so")
        origin = driver.execute_script("return location.origin;")
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name);"
        )
        assert resources, "the page loads its assets"
        outside = [name for name in resources if not name.startswith(origin + "/")]
        assert not outside, outside
        page = fetch(driver, "GET", "/")
        assert "script-src 'self'" in (page["csp"] or ""), page["csp"]
        assert "default-src 'none'" in (page["csp"] or ""), page["csp"]

        step("an agent printing <script> shows it as text")
        driver.find_element(By.CSS_SELECTOR, 'tr[data-agent="c"] td.name').click()
        log = driver.find_element(By.CSS_SELECTOR, "[data-log]")
        wait("c's line in the log pane", lambda: "<script>alert(1)</script>" in log.text)
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-log] script")
        later_snapshots(driver)  # an alert would have opened by now
        no_alert(driver)

        step("the log pane follows an agent live")
        driver.find_element(By.CSS_SELECTOR, 'tr[data-agent="a"] td.name').click()
        wait("a's lines", lambda: "a says" in log.text)
        seen = set(line for line in log.text.splitlines() if "a says" in line)
        wait(
            "a line printed after the pane opened",
            lambda: [l for l in log.text.splitlines() if "a says" in l and l not in seen],
        )

        step("a restart from the page, confirmed in the page, is journaled with the token")
        driver.find_element(
            By.CSS_SELECTOR, 'tr[data-agent="a"] button[data-action="restart"]'
        ).click()
        confirm = driver.find_element(By.CSS_SELECTOR, "[data-confirm]")
        wait("the confirmation", confirm.is_displayed)
        confirm.click()
        wait(
            "the web_action event",
            lambda: "restart by web token ops" in roster("events", "a"),
        )

        step("a state change shows without a reload")
        roster("stop", "b")
        wait("b stopped on the page", lambda: state_of(driver, "b") == "stopped")
        assert driver.execute_script("return window.rosterMarker;") == "same page"

        step("filter by state or name, sort by a column")
        box = driver.find_element(By.CSS_SELECTOR, "[data-filter]")
        box.send_keys("stopped")
        wait("only b", lambda: rows(driver) == ["b"])
        box.clear()
        box.send_keys("c")
        wait("only c", lambda: rows(driver) == ["c"])
        box.clear()
        driver.execute_script(
            "arguments[0].dispatchEvent(new Event('input'));", box
        )
        wait("every row again", lambda: rows(driver) == ["a", "b", "c"])
        order = lambda: [tr.get_attribute("data-agent")
                         for tr in driver.find_elements(By.CSS_SELECTOR, "tr[data-agent]")]
        driver.find_element(By.CSS_SELECTOR, 'th[data-sort="name"]').click()
        wait("names descending", lambda: order() == ["c", "b", "a"])
        driver.find_element(By.CSS_SELECTOR, 'th[data-sort="name"]').click()
        wait("names ascending", lambda: order() == ["a", "b", "c"])

        step("copies of one agent sit together under a line that sums them up")
        roster("add", "w", "-f", ARGS["config"], "--", "sleep", "300")
        roster("scale", "w", "3", "-f", ARGS["config"])
        wait(
            "w's copies grouped, in number order",
            lambda: table_order(driver) == ["a", "b", "c", "group:w", "w.1", "w.2", "w.3"],
        )
        wait(
            "the group's line",
            lambda: "3/3 running" in text_of(driver, 'tr[data-group="w"]'),
        )
        assert not driver.find_elements(By.CSS_SELECTOR, 'tr[data-group] [data-action]')
        driver.save_screenshot(os.path.join(ARGS["shots"], "copies.png"))
        roster("remove", "w", "-f", ARGS["config"])
        wait("w gone", lambda: table_order(driver) == ["a", "b", "c"])

        step("a POST without the CSRF token gets 403")
        answer = fetch(driver, "POST", "/web/api/agents/c/restart", csrf=False)
        assert answer["status"] == 403, answer
        no_alert(driver)
        wait(
            "sparklines with a few points",
            lambda: driver.find_elements(By.CSS_SELECTOR, 'tr[data-agent="c"] svg.spark polyline'),
        )
        driver.save_screenshot(os.path.join(ARGS["shots"], "admin.png"))

        step("the tenant sees only its agents")
        driver.find_element(By.CSS_SELECTOR, "[data-logout]").click()
        wait("the login form", lambda: driver.find_elements(By.CSS_SELECTOR, 'input[name="token"]'))
        login(driver, ARGS["tenant"])
        wait("row a", lambda: rows(driver) == ["a"])
        later_snapshots(driver)
        assert rows(driver) == ["a"], rows(driver)
        text = driver.find_element(By.CSS_SELECTOR, "main").text
        assert "alert(1)" not in text and "other" not in text, text

        step("the tenant's session reaches no other agent through any endpoint")
        for method, path in [
            ("POST", "/web/api/agents/b/restart"),
            ("POST", "/web/api/agents/b/start"),
            ("POST", "/web/api/agents/c/stop"),
            ("GET", "/web/api/logs/b"),
            ("GET", "/web/api/logs/c"),
        ]:
            answer = fetch(driver, method, path)
            assert answer["status"] in (403, 404), (method, path, answer)
        snapshot = json.loads(fetch(driver, "GET", "/web/api/snapshot")["body"])
        assert [agent["name"] for agent in snapshot["agents"]] == ["a"], snapshot
        answer = fetch(driver, "POST", "/web/api/agents/a/restart", csrf=False)
        assert answer["status"] == 403, answer
        driver.find_element(By.CSS_SELECTOR, 'tr[data-agent="a"] td.name').click()
        log = driver.find_element(By.CSS_SELECTOR, "[data-log]")
        wait("a's lines for the tenant", lambda: "a says" in log.text)
        driver.save_screenshot(os.path.join(ARGS["shots"], "tenant.png"))

        step("a read-only token's page has no action buttons")
        driver.find_element(By.CSS_SELECTOR, "[data-logout]").click()
        wait("the login form", lambda: driver.find_elements(By.CSS_SELECTOR, 'input[name="token"]'))
        login(driver, ARGS["reader"])
        wait("row a", lambda: rows(driver) == ["a"])
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-action]")
        answer = fetch(driver, "POST", "/web/api/agents/a/stop")
        assert answer["status"] == 403, answer

        step("a removed token sends its open page back to the login form")
        roster("web", "token", "rm", "acme-ro")
        wait(
            "the login form",
            lambda: driver.find_elements(By.CSS_SELECTOR, 'input[name="token"]'),
        )
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-agent]")
        print("screenshots: " + ARGS["shots"], flush=True)
        print("ok", flush=True)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
