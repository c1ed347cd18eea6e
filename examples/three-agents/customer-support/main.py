#!/usr/bin/env python3
"""customer-support: answers support tickets dropped into inbox/.

Every 0.5 s it looks for ticket files in inbox/ (relative to its working
directory):

  *.txt   optional "From:", "Subject:" and "Id:" header lines, a blank line,
          then the message. Without headers the whole file is the message.
  *.json  an object such as
          {"id": "T-1", "from": "ana@example.com", "subject": "...", "body": "..."}

For each ticket it picks a canned answer by keyword (refund, password,
shipping, otherwise a generic one), writes outbox/NAME.reply.txt and moves
the ticket to done/. A ticket that cannot be read or understood goes to
failed/ instead; the agent itself never stops over a bad file.

Environment:
  PORT          loopback port for GET /health (default 8701)
  SEED_SAMPLES  "1" drops a sample ticket into inbox/ on the first start

Standard library only (Python 3.11+).
"""

import json
import os
import sys
import time
from pathlib import Path

AGENT = "customer-support"
DEFAULT_PORT = 8701
POLL_SECONDS = 0.5
# A file modified more recently than this may still be being written: it is
# picked up on a later poll.
SETTLE_SECONDS = 0.3
MAX_TICKET_BYTES = 1024 * 1024

INBOX = Path("inbox")
OUTBOX = Path("outbox")
DONE = Path("done")
FAILED = Path("failed")
SEED_MARKER = Path(".seeded")

# Category -> keywords looked for (lower case) in the subject and the body.
# The category with the most hits wins; ties go to the earlier one.
KEYWORDS = {
    "refund": ("refund", "money back", "reimburse", "charged twice", "chargeback", "cancel my order"),
    "password": ("password", "log in", "login", "sign in", "locked out", "reset", "2fa", "two-factor"),
    "shipping": ("shipping", "delivery", "deliver", "tracking", "parcel", "package", "shipped", "courier"),
}

TEMPLATES = {
    "refund": (
        "Thank you for getting in touch about a refund.\n\n"
        "We have opened a refund request for your order. Refunds go back to the\n"
        "original payment method within 5 to 10 business days; you will receive an\n"
        "e-mail as soon as it has been issued. If you were charged twice, only the\n"
        "duplicate charge is refunded and nothing else needs doing on your side."
    ),
    "password": (
        "Sorry to hear you are having trouble signing in.\n\n"
        "You can reset your password at any time from the sign-in page with\n"
        "\"Forgot password?\". The reset link is valid for 30 minutes. If your account\n"
        "is locked after too many attempts, it unlocks by itself after 15 minutes.\n"
        "We will never ask you for your password by e-mail."
    ),
    "shipping": (
        "Thanks for asking about your delivery.\n\n"
        "Orders ship within 2 business days and the tracking link is in your\n"
        "shipping confirmation e-mail. Most parcels arrive within 3 to 5 business\n"
        "days. If the tracking has not moved for 5 days, reply to this message and\n"
        "we will open an investigation with the courier."
    ),
    "generic": (
        "Thank you for contacting us.\n\n"
        "We have received your message and a member of the team will get back to\n"
        "you within one business day. Please keep the ticket number below in any\n"
        "reply so that we can find your request quickly."
    ),
}

SAMPLE_TICKET = """\
From: ana@example.com
Subject: Refund for order 1042

Hello, I was charged twice for order 1042. Can I get my money back for the
second charge? Thanks, Ana
"""


# --- plumbing shared by the three example agents: ../agentkit.py -----------

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import agentkit  # noqa: E402
from agentkit import (  # noqa: E402
    Stats,
    log,
    seed_enabled,
    unique_path,
    utc_now,
    write_atomically,
)

agentkit.configure(AGENT, DEFAULT_PORT)


# --- the agent itself --------------------------------------------------------


class BadTicket(Exception):
    """The ticket cannot be answered; it goes to failed/."""


def parse_ticket(path):
    """Returns {"id", "from", "subject", "body"} or raises BadTicket."""
    size = path.stat().st_size
    if size > MAX_TICKET_BYTES:
        raise BadTicket(f"too large ({size} bytes, the limit is {MAX_TICKET_BYTES})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadTicket(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not text.strip():
        raise BadTicket("the ticket is empty")

    ticket = {"id": path.stem, "from": "", "subject": "", "body": ""}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise BadTicket(f"invalid JSON: {error.msg} at line {error.lineno}") from None
        if not isinstance(data, dict):
            raise BadTicket("the JSON is not an object")

        def field(*names):
            for name in names:
                value = data.get(name)
                if isinstance(value, (str, int, float)) and str(value).strip():
                    return str(value).strip()
            return ""

        ticket["id"] = field("id", "ticket", "ticket_id") or ticket["id"]
        ticket["from"] = field("from", "email", "customer", "name")
        ticket["subject"] = field("subject", "title")
        ticket["body"] = field("body", "message", "text", "description")
        if not ticket["subject"] and not ticket["body"]:
            raise BadTicket('no "subject" or "body" to answer')
    else:
        lines = text.splitlines()
        headers = {"from": "from", "subject": "subject", "id": "id", "ticket": "id", "email": "from"}
        index = 0
        while index < len(lines):
            key, sep, value = lines[index].partition(":")
            if not sep or key.strip().lower() not in headers:
                break
            ticket[headers[key.strip().lower()]] = value.strip()
            index += 1
        if index > 0 and index < len(lines) and not lines[index].strip():
            index += 1  # the blank line after the headers
        ticket["body"] = "\n".join(lines[index:]).strip()
        if not ticket["subject"]:
            first = next((line.strip() for line in lines[index:] if line.strip()), "")
            ticket["subject"] = first[:80]
        if not ticket["body"] and not ticket["subject"]:
            raise BadTicket("headers but no message")
    return ticket


def categorise(ticket):
    text = f"{ticket['subject']}\n{ticket['body']}".lower()
    best, best_hits = "generic", 0
    for category, words in KEYWORDS.items():
        hits = sum(text.count(word) for word in words)
        if hits > best_hits:
            best, best_hits = category, hits
    return best


def compose_reply(ticket, category):
    subject = ticket["subject"] or "your request"
    return (
        f"To: {ticket['from'] or '(unknown sender)'}\n"
        f"Subject: Re: {subject}\n"
        f"Ticket: {ticket['id']}\n"
        f"Category: {category}\n"
        f"Replied-At: {utc_now()}\n"
        f"\n"
        f"Hello,\n\n"
        f"{TEMPLATES[category]}\n\n"
        f"Ticket number: {ticket['id']}\n\n"
        f"-- \n"
        f"Customer Support (automatic reply from the {AGENT} agent)\n"
    )


def handle(path, stats):
    try:
        ticket = parse_ticket(path)
        category = categorise(ticket)
        reply_path = unique_path(OUTBOX, f"{path.stem}.reply.txt")
        write_atomically(reply_path, compose_reply(ticket, category))
        done_path = unique_path(DONE, path.name)
        os.replace(path, done_path)
    except FileNotFoundError:
        return  # taken away while we looked at it: nothing to do
    except Exception as error:  # noqa: BLE001 - one bad ticket must not stop the agent
        reason = str(error) if isinstance(error, BadTicket) else f"{type(error).__name__}: {error}"
        stats.count("failed")
        try:
            failed_path = unique_path(FAILED, path.name)
            os.replace(path, failed_path)
            log(f"ticket {path.name} failed: {reason}; moved to {failed_path}")
        except OSError as move_error:
            log(f"ticket {path.name} failed: {reason}; and could not be moved to {FAILED}/: {move_error}")
            raise
        return
    stats.count("handled")
    log(
        f"ticket {path.name} (id {ticket['id']}, from {ticket['from'] or 'unknown'}) "
        f"-> {category} reply {reply_path}; ticket moved to {done_path}"
    )


def pending_tickets(skip):
    now = time.time()
    found = []
    for entry in os.scandir(INBOX):
        name = entry.name
        if name.startswith(".") or not name.lower().endswith((".txt", ".json")):
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
    for directory in (INBOX, OUTBOX, DONE, FAILED):
        directory.mkdir(parents=True, exist_ok=True)


def seed():
    if not seed_enabled() or SEED_MARKER.exists():
        return
    sample = INBOX / "sample-refund.txt"
    write_atomically(sample, SAMPLE_TICKET)
    SEED_MARKER.write_text(f"seeded {utc_now()}\n", encoding="utf-8")
    log(f"SEED_SAMPLES is set: dropped a sample ticket into {sample}")


def self_test():
    """`main.py --self-test`: the smoke test a deploy runs in the new
    release before it goes live: the sample ticket must parse, be
    categorised and get a reply. Exit 0 when it does."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        ticket = Path(scratch) / "sample.txt"
        ticket.write_text(SAMPLE_TICKET, encoding="utf-8")
        parsed = parse_ticket(ticket)
        reply = compose_reply(parsed, categorise(parsed))
    if not reply.strip():
        log("self-test failed: empty reply to the sample ticket")
        return 1
    log("self-test passed")
    return 0


def main():
    if "--self-test" in sys.argv[1:]:
        return self_test()
    stats = Stats()
    agentkit.start(stats)

    try:
        ensure_dirs()
        seed()
    except OSError as error:
        log(f"error: cannot set up {INBOX}/, {OUTBOX}/, {DONE}/, {FAILED}/: {error}")
        return 1
    log(f"watching {INBOX.resolve()} for *.txt and *.json tickets every {POLL_SECONDS}s")

    agentkit.watch(INBOX, pending_tickets, handle, ensure_dirs, POLL_SECONDS, stats)

    name = agentkit.stop_signal_name()
    log(f"received {name}: shutting down ({stats.handled} answered, {stats.failed} failed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
