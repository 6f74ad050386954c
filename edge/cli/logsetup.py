"""Logging for a daemon read through journald, a terminal, or a log shipper.

Under systemd (JOURNAL_STREAM set) journald adds timestamps itself and reads `<N>` syslog priority
prefixes, so lines carry the priority and no time. JSON lines are for shippers that parse them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6)
        text = _one_line(super().format(record))
        # journald reads each line as its own entry: every line of a traceback carries the priority,
        # so `journalctl -p err` shows the whole stack, not only its first line.
        return "\n".join(f"<{prio}>{record.name}: {line}" for line in text.split("\n"))


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def _one_line(text: str) -> str:
    # Tracebacks (a crash of `edge run`, or --debug) stay multi-line on purpose; plain messages never
    # break a line.
    return text if "Traceback" in text else text.replace("\n", " | ")


def log_thread_crashes() -> None:
    """An exception that ends a thread goes through logging (the journal), not raw to stderr."""
    log = logging.getLogger("edge")

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "?"
        log.critical("thread %s crashed: %r", name, args.exc_value, exc_info=args.exc_value)

    threading.excepthook = hook


def setup_logging(level: str = "INFO", fmt: str = "auto", debug: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif fmt == "journal" or (fmt == "auto" and os.environ.get("JOURNAL_STREAM")):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO))
    # paho logs every packet at DEBUG; keep it at INFO unless asked explicitly.
    logging.getLogger("paho").setLevel(logging.INFO)
