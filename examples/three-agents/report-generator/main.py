#!/usr/bin/env python3
"""report-generator: summarises what the other two agents did.

Every REPORT_INTERVAL seconds it writes reports/report-YYYYmmddTHHMMSS.md
(UTC) from what it finds on disk next to it:

  ../customer-support/  replies in outbox/ (by category), tickets in done/,
                        failed/ and still waiting in inbox/
  ../data-processor/    the summary JSONs in processed/ (rows, groups and
                        totals per file, grand totals per column), CSVs in
                        archive/, failed/ and still waiting in incoming/

and keeps only the newest 20 reports. A missing folder counts as empty and a
corrupt summary is reported and skipped: the agent never stops over them.

Environment:
  PORT             loopback port for GET /health (default 8703)
  REPORT_INTERVAL  seconds between reports (default 10, at least 1)
  SUPPORT_DIR      where customer-support runs (default ../customer-support)
  PROCESSOR_DIR    where data-processor runs (default ../data-processor)

Standard library only (Python 3.11+).
"""

import json
import os
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

AGENT = "report-generator"
DEFAULT_PORT = 8703
DEFAULT_INTERVAL = 10.0
KEEP_REPORTS = 20
LATEST_ROWS = 10  # replies / summaries listed one by one in a report

REPORTS = Path("reports")
SUPPORT_DIR = Path(os.environ.get("SUPPORT_DIR") or "../customer-support")
PROCESSOR_DIR = Path(os.environ.get("PROCESSOR_DIR") or "../data-processor")
CATEGORIES = ("refund", "password", "shipping", "generic")


# --- plumbing shared by the three example agents: ../agentkit.py -----------

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import agentkit  # noqa: E402
from agentkit import (  # noqa: E402
    Stats,
    log,
    sleep_unless_stopped,
    stopping,
    write_atomically,
)

agentkit.configure(AGENT, DEFAULT_PORT)


# --- the agent itself --------------------------------------------------------


def interval_from_env():
    raw = os.environ.get("REPORT_INTERVAL", "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        seconds = float(raw)
        if not 1 <= seconds <= 86400:
            raise ValueError
        return seconds
    except ValueError:
        log(f"error: REPORT_INTERVAL={raw!r} is not a number of seconds between 1 and 86400; using {DEFAULT_INTERVAL:g}")
        return DEFAULT_INTERVAL


def files_in(directory, suffix=""):
    """Visible regular files in directory, newest first; None if it is missing."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return None
    except OSError as error:
        log(f"error: cannot list {directory}: {error}")
        return None
    found = []
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(suffix):
            continue
        try:
            if entry.is_file():
                found.append((entry.stat().st_mtime, entry.name))
        except OSError:
            continue  # removed while we looked
    found.sort(reverse=True)
    return [Path(directory) / name for _, name in found]


def count(directory, suffix=""):
    files = files_in(directory, suffix)
    return "missing" if files is None else str(len(files))


def cell(value, width=60):
    """Text made safe for one Markdown table cell."""
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 3] + "..."


def number(value):
    """A JSON number as an exact Decimal, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def show(value):
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value.normalize():,f}"


def reply_headers(path):
    headers = {}
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for _, line in zip(range(10), handle):
                key, sep, value = line.partition(":")
                if not sep or not line.strip():
                    break
                headers[key.strip().lower()] = value.strip()
    except OSError:
        pass
    return headers


def support_section():
    lines = [f"## customer-support", ""]
    replies = files_in(SUPPORT_DIR / "outbox", ".txt")
    if replies is None:
        lines += [f"No `{SUPPORT_DIR / 'outbox'}` folder yet: the agent has not run here.", ""]
        return lines, 0
    headers = [(path, reply_headers(path)) for path in replies]
    categories = Counter(h.get("category", "unknown") for _, h in headers)
    breakdown = ", ".join(
        f"{name} {categories[name]}" for name in (*CATEGORIES, *sorted(set(categories) - set(CATEGORIES)))
        if categories[name] or name in CATEGORIES
    )
    lines += [
        f"- Replies written (`outbox/`): **{len(replies)}** ({breakdown})",
        f"- Tickets answered (`done/`): {count(SUPPORT_DIR / 'done')}",
        f"- Tickets that failed (`failed/`): {count(SUPPORT_DIR / 'failed')}",
        f"- Tickets waiting (`inbox/`): {count(SUPPORT_DIR / 'inbox', ('.txt', '.json'))}",
        "",
    ]
    if headers:
        lines += [
            f"### Latest replies", "",
            "| Reply | To | Category | Subject |",
            "|---|---|---|---|",
        ]
        for path, h in headers[:LATEST_ROWS]:
            lines.append(
                f"| {cell(path.name, 40)} | {cell(h.get('to', '?'), 40)} "
                f"| {cell(h.get('category', '?'), 12)} | {cell(h.get('subject', ''))} |"
            )
        lines.append("")
    return lines, len(replies)


def processor_section(warned):
    lines = ["## data-processor", ""]
    summaries = files_in(PROCESSOR_DIR / "processed", ".summary.json")
    if summaries is None:
        lines += [f"No `{PROCESSOR_DIR / 'processed'}` folder yet: the agent has not run here.", ""]
        return lines, 0
    readable = []
    unreadable = []
    for path in summaries:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if not isinstance(data.get("totals", {}), dict):
                raise ValueError('"totals" is not an object')
        except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            unreadable.append(path.name)
            if path.name not in warned:
                warned.add(path.name)
                log(f"skipping unreadable summary {path}: {error}")
            continue
        readable.append((path, data))

    rows_used = sum(n for _, d in readable if isinstance(n := d.get("rows_used"), int))
    rows_skipped = sum(n for _, d in readable if isinstance(n := d.get("rows_skipped"), int))
    lines += [
        f"- Summaries (`processed/`): **{len(summaries)}**"
        + (f", of which {len(unreadable)} unreadable ({', '.join(unreadable[:5])})" if unreadable else ""),
        f"- Rows aggregated: {rows_used:,}; bad rows skipped: {rows_skipped:,}",
        f"- CSV files archived (`archive/`): {count(PROCESSOR_DIR / 'archive', '.csv')}",
        f"- CSV files that failed (`failed/`): {count(PROCESSOR_DIR / 'failed', '.csv')}",
        f"- CSV files waiting (`incoming/`): {count(PROCESSOR_DIR / 'incoming', '.csv')}",
        "",
    ]

    grand = {}
    for _, data in readable:
        for column, value in data.get("totals", {}).items():
            if column != "rows" and (amount := number(value)) is not None:
                grand[column] = grand.get(column, Decimal(0)) + amount
    if grand:
        lines += ["### Totals over all summaries", "", "| Column | Total |", "|---|---:|"]
        lines += [f"| {cell(column, 40)} | {show(total)} |" for column, total in sorted(grand.items())]
        lines.append("")

    if readable:
        lines += [
            "### Latest files", "",
            "| File | Grouped by | Groups | Rows used | Skipped | Totals |",
            "|---|---|---:|---:|---:|---|",
        ]
        for path, data in readable[:LATEST_ROWS]:
            totals = ", ".join(
                f"{column} {show(amount)}"
                for column, value in data.get("totals", {}).items()
                if column != "rows" and (amount := number(value)) is not None
            )
            groups = data.get("groups")
            lines.append(
                f"| {cell(data.get('source', path.name), 40)} | {cell(data.get('key_column', '?'), 20)} "
                f"| {len(groups) if isinstance(groups, dict) else '?'} | {data.get('rows_used', '?')} "
                f"| {data.get('rows_skipped', '?')} | {cell(totals or '-', 80)} |"
            )
        lines.append("")
    return lines, len(summaries)


def write_report(interval, warned):
    now = datetime.now(timezone.utc)
    path = REPORTS / f"report-{now.strftime('%Y%m%dT%H%M%S')}.md"
    support_lines, replies = support_section()
    processor_lines, summaries = processor_section(warned)
    text = "\n".join(
        [
            f"# Activity report, {now.strftime('%Y-%m-%d %H:%M:%S')} UTC",
            "",
            f"Written by `{AGENT}` (pid {os.getpid()}) every {interval:g} s; "
            f"the newest {KEEP_REPORTS} reports are kept.",
            "",
            *support_lines,
            *processor_lines,
        ]
    )
    write_atomically(path, text)
    return path, replies, summaries


def prune():
    reports = sorted(REPORTS.glob("report-*.md"))
    old = reports[:-KEEP_REPORTS] if len(reports) > KEEP_REPORTS else []
    for path in old:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return len(old)


def main():
    stats = Stats()
    stats.details.update(last_report=None)
    agentkit.start(stats)
    interval = interval_from_env()
    stats.details.update(interval_secs=interval)

    try:
        REPORTS.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        log(f"error: cannot create {REPORTS}/: {error}")
        return 1
    log(
        f"writing a report every {interval:g}s into {REPORTS.resolve()} about "
        f"{SUPPORT_DIR.resolve()} and {PROCESSOR_DIR.resolve()}"
    )

    warned = set()  # corrupt summaries already logged
    next_report = time.monotonic() + interval
    while not stopping():
        sleep_unless_stopped(next_report - time.monotonic())
        if stopping():
            break
        next_report += interval
        if next_report < time.monotonic():  # fell behind (suspended?): do not burst
            next_report = time.monotonic() + interval
        try:
            REPORTS.mkdir(parents=True, exist_ok=True)
            path, replies, summaries = write_report(interval, warned)
            removed = prune()
        except Exception as error:  # noqa: BLE001 - try again next interval
            stats.count("failed")
            log(f"error: report failed: {type(error).__name__}: {error}")
            continue
        stats.count("handled")
        with stats.lock:
            stats.details["last_report"] = str(path)
        log(
            f"wrote {path} (replies: {replies}, data summaries: {summaries})"
            + (f"; removed {removed} old report{'s' if removed != 1 else ''}" if removed else "")
        )

    agentkit.stop_health_server()
    name = agentkit.stop_signal_name()
    log(f"received {name}: shutting down ({stats.handled} written, {stats.failed} failed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
