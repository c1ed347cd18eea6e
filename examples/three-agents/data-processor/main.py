#!/usr/bin/env python3
"""data-processor: aggregates CSV files dropped into incoming/.

Every 0.5 s it looks for *.csv files in incoming/ (relative to its working
directory). The first row is the header; the first column is the key rows
are grouped by (e.g. `customer`) and every other column whose values are
numbers (e.g. `amount`) is summed per key. Columns that are mostly text are
ignored. For sales.csv it writes processed/sales.summary.json:

  {"source": "sales.csv", "key_column": "customer",
   "value_columns": ["amount"], "rows_used": 5, "rows_skipped": 1,
   "groups": {"alice": {"rows": 2, "amount": 30.5}, ...},
   "totals": {"rows": 5, "amount": 120.0}, ...}

and moves the CSV to archive/. A bad row (wrong number of fields, empty key,
text where a number belongs) is logged and skipped; a file that cannot be
read at all, or has no usable row, goes to failed/. The agent itself never
stops over a bad file.

Environment:
  PORT          loopback port for GET /health (default 8702)
  SEED_SAMPLES  "1" drops a sample CSV into incoming/ on the first start

Standard library only (Python 3.11+).
"""

import csv
import json
import os
import re
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

AGENT = "data-processor"
DEFAULT_PORT = 8702
POLL_SECONDS = 0.5
# A file modified more recently than this may still be being written: it is
# picked up on a later poll.
SETTLE_SECONDS = 0.3
MAX_CSV_BYTES = 64 * 1024 * 1024
# After a stop is requested, a file still being read after this long is
# left in incoming/ for the next start (see stop_check).
STOP_GRACE_SECONDS = 1.5
# Bad rows logged one by one per file; the rest are only counted.
MAX_BAD_ROWS_LOGGED = 10

INCOMING = Path("incoming")
PROCESSED = Path("processed")
ARCHIVE = Path("archive")
FAILED = Path("failed")
SEED_MARKER = Path(".seeded")

SAMPLE_CSV = """\
customer,amount,items,note
alice,19.99,1,first order
bob,5.00,2,
alice,42.50,3,gift wrap
carol,12.00,1,
bob,not-a-number,1,this row is skipped
dave,7.25,1,
carol,3.75,2,
"""


# --- plumbing shared by the three example agents: ../agentkit.py -----------

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import agentkit  # noqa: E402
from agentkit import (  # noqa: E402
    Stats,
    log,
    seed_enabled,
    stopping,
    unique_path,
    utc_now,
    write_atomically,
)

agentkit.configure(AGENT, DEFAULT_PORT)


# --- the agent itself --------------------------------------------------------


class BadFile(Exception):
    """The whole file is unusable; it goes to failed/."""


CURRENCY_SIGNS = "$€£¥"


THOUSANDS = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")


def parse_number(raw):
    """A Decimal from e.g. "12", "-3.5", "1e3", "$1,234.50"; None for text,
    NaN, infinities and absurd magnitudes (beyond 1e30 or below 1e-30)."""
    text = raw.strip().replace("_", "")
    if text[:1] in CURRENCY_SIGNS:
        text = text[1:]
    elif text[:1] == "-" and text[1:2] in CURRENCY_SIGNS:
        text = "-" + text[2:]
    if "," in text:
        if not THOUSANDS.fullmatch(text):
            return None  # "12,5" is ambiguous: not guessed at
        text = text.replace(",", "")
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite() or (number and abs(number.adjusted()) > 30):
        return None
    return number


def as_json_number(number):
    """Decimal sums stay exact (no 0.30000000000000004); JSON gets an int
    when the value is whole, else a float."""
    if number == number.to_integral_value():
        return int(number)
    return float(number)


def header_names(row):
    names, seen = [], set()
    for index, cell in enumerate(row):
        name = cell.strip() or f"column_{index + 1}"
        base, n = name, 2
        while name in seen:
            name = f"{base}_{n}"
            n += 1
        seen.add(name)
        names.append(name)
    return names


class Interrupted(Exception):
    """A stop was requested and the file is taking long: it is left in
    incoming/ untouched, for the next start."""


def stop_check():
    """Returns a function to call now and then while processing one file: it
    raises Interrupted once a stop has been pending for STOP_GRACE_SECONDS,
    so that a huge file cannot hold the agent past the supervisor's
    stop_timeout. Small files finish well within the grace period."""
    noticed = None

    def check():
        nonlocal noticed
        if stopping():
            noticed = noticed or time.monotonic()
            if time.monotonic() - noticed > STOP_GRACE_SECONDS:
                raise Interrupted

    return check


def summarise(path, bad_row):
    """Reads one CSV and returns its summary dict; calls bad_row(line, reason)
    for each skipped row. Raises BadFile when nothing useful can be made of it."""
    check = stop_check()
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise BadFile(f"too large ({size} bytes, the limit is {MAX_CSV_BYTES})")
    try:
        rows = []
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for row in reader:
                if any(cell.strip() for cell in row):  # blank lines are not rows
                    rows.append((reader.line_num, row))
                if len(rows) % 10_000 == 0:
                    check()
    except UnicodeDecodeError as error:
        raise BadFile(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise BadFile(f"not readable as CSV: {error}") from None

    if not rows:
        raise BadFile("the file is empty")
    _, header = rows[0]
    columns = header_names(header)
    if len(columns) < 2:
        raise BadFile(f"the header {header!r} has fewer than two columns")
    key_column, other_columns = columns[0], columns[1:]

    # Well-formed rows (right width, non-empty key), each cell parsed once.
    data = []
    filled = [0] * len(columns)  # non-empty cells per column
    numeric = [0] * len(columns)  # of which numbers
    for index, (line, row) in enumerate(rows[1:]):
        if index % 10_000 == 0:
            check()
        if len(row) != len(columns):
            bad_row(line, f"{len(row)} fields, the header has {len(columns)}")
            continue
        if not row[0].strip():
            bad_row(line, f"empty {key_column!r}")
            continue
        numbers = [None] * len(columns)
        for offset in range(1, len(columns)):
            if row[offset].strip():
                filled[offset] += 1
                numbers[offset] = parse_number(row[offset])
                numeric[offset] += numbers[offset] is not None
        data.append((line, row, numbers))
    if not data:
        raise BadFile("no usable data rows")

    # A column holds numbers when most of its non-empty cells are numbers.
    value_columns, ignored_columns = [], []
    for offset, name in enumerate(other_columns, start=1):
        is_numeric = filled[offset] and numeric[offset] * 2 > filled[offset]
        (value_columns if is_numeric else ignored_columns).append((offset, name))

    groups = {}
    used = 0
    for index, (line, row, numbers) in enumerate(data):
        if index % 10_000 == 0:
            check()
        bad = next((offset for offset, _ in value_columns if numbers[offset] is None), None)
        if bad is not None:
            cell = row[bad] if len(row[bad]) <= 40 else row[bad][:37] + "..."
            bad_row(line, f"{columns[bad]} {cell!r} is not a number")
            continue
        key = row[0].strip()
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"rows": 0, **{name: Decimal(0) for _, name in value_columns}}
        group["rows"] += 1
        for offset, name in value_columns:
            group[name] += numbers[offset]
        used += 1
    if used == 0:
        raise BadFile("every data row is bad")

    totals = {"rows": used, **{name: Decimal(0) for _, name in value_columns}}
    for group in groups.values():
        for _, name in value_columns:
            totals[name] += group[name]

    def plain(record):
        return {field: as_json_number(v) if isinstance(v, Decimal) else v for field, v in record.items()}

    return {
        "source": path.name,
        "processed_at": utc_now(),
        "key_column": key_column,
        "value_columns": [name for _, name in value_columns],
        "ignored_columns": [name for _, name in ignored_columns],
        "rows_total": len(rows) - 1,
        "rows_used": used,
        "rows_skipped": len(rows) - 1 - used,
        "group_count": len(groups),
        "groups": {key: plain(group) for key, group in sorted(groups.items())},
        "totals": plain(totals),
    }


def handle(path, stats):
    bad_rows = []

    def log_bad_rows():
        # Found in two passes (shape, then values): logged in line order.
        bad_rows.sort()
        for line, reason in bad_rows[:MAX_BAD_ROWS_LOGGED]:
            log(f"{path.name} line {line}: skipped bad row: {reason}")
        if len(bad_rows) > MAX_BAD_ROWS_LOGGED:
            log(f"{path.name}: ... and {len(bad_rows) - MAX_BAD_ROWS_LOGGED} more bad rows skipped")

    try:
        summary = summarise(path, lambda line, reason: bad_rows.append((line, reason)))
        stem = path.name[: -len(path.suffix)] if path.suffix else path.name
        summary_path = unique_path(PROCESSED, f"{stem}.summary.json")
        write_atomically(summary_path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        archive_path = unique_path(ARCHIVE, path.name)
        os.replace(path, archive_path)
    except FileNotFoundError:
        return  # taken away while we looked at it: nothing to do
    except Interrupted:
        log(f"stop requested: left {path.name} unprocessed in {INCOMING}/ for the next start")
        return
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the agent
        reason = str(error) if isinstance(error, BadFile) else f"{type(error).__name__}: {error}"
        stats.count("failed")
        log_bad_rows()
        try:
            failed_path = unique_path(FAILED, path.name)
            os.replace(path, failed_path)
            log(f"{path.name} failed: {reason}; moved to {failed_path}")
        except OSError as move_error:
            log(f"{path.name} failed: {reason}; and could not be moved to {FAILED}/: {move_error}")
            raise
        return

    log_bad_rows()
    stats.count("handled")
    stats.count_detail("rows_used", summary["rows_used"])
    stats.count_detail("rows_skipped", summary["rows_skipped"])
    totals = ", ".join(
        f"{name}={value}" for name, value in summary["totals"].items() if name != "rows"
    )
    log(
        f"{path.name}: {summary['rows_used']} rows in {summary['group_count']} "
        f"{summary['key_column']} groups, {summary['rows_skipped']} skipped"
        f"{'; totals ' + totals if totals else '; no numeric columns, counted rows only'}"
        f" -> {summary_path}; moved to {archive_path}"
    )


def pending_files(skip):
    now = time.time()
    found = []
    for entry in os.scandir(INCOMING):
        name = entry.name
        if name.startswith(".") or not name.lower().endswith(".csv"):
            continue
        try:
            if not entry.is_file():
                continue
            info = entry.stat()
        except OSError:
            continue
        if (name, info.st_mtime_ns, info.st_size) in skip:
            continue
        if 0 <= now - info.st_mtime < SETTLE_SECONDS:
            continue
        found.append((info.st_mtime, name, info))
    found.sort()
    return found


def ensure_dirs():
    for directory in (INCOMING, PROCESSED, ARCHIVE, FAILED):
        directory.mkdir(parents=True, exist_ok=True)


def seed():
    if not seed_enabled() or SEED_MARKER.exists():
        return
    sample = INCOMING / "sample-sales.csv"
    write_atomically(sample, SAMPLE_CSV)
    SEED_MARKER.write_text(f"seeded {utc_now()}\n", encoding="utf-8")
    log(f"SEED_SAMPLES is set: dropped a sample CSV into {sample}")


def main():
    stats = Stats()
    stats.details.update(rows_used=0, rows_skipped=0)
    agentkit.start(stats)

    try:
        ensure_dirs()
        seed()
    except OSError as error:
        log(f"error: cannot set up {INCOMING}/, {PROCESSED}/, {ARCHIVE}/, {FAILED}/: {error}")
        return 1
    log(f"watching {INCOMING.resolve()} for *.csv files every {POLL_SECONDS}s")

    agentkit.watch(INCOMING, pending_files, handle, ensure_dirs, POLL_SECONDS, stats)

    name = agentkit.stop_signal_name()
    log(f"received {name}: shutting down ({stats.handled} processed, {stats.failed} failed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
