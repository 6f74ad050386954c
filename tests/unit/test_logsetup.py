"""Logging formats: journald lines carry the priority on every line of a traceback; thread crashes
go through logging."""

from __future__ import annotations

import logging
import threading

import pytest

from edge.cli.logsetup import JournalFormatter, log_thread_crashes


def test_journal_traceback_has_the_priority_on_every_line() -> None:
    try:
        raise ValueError("bad")
    except ValueError as err:
        record = logging.LogRecord(
            "edge", logging.ERROR, __file__, 1, "crashed", None, (ValueError, err, err.__traceback__)
        )
    lines = JournalFormatter().format(record).splitlines()
    assert len(lines) > 3 and all(line.startswith("<3>edge: ") for line in lines)
    assert lines[-1] == "<3>edge: ValueError: bad"


def test_plain_multiline_messages_stay_one_journal_line() -> None:
    record = logging.LogRecord("edge", logging.INFO, __file__, 1, "a\nb", None, None)
    assert JournalFormatter().format(record) == "<6>edge: a | b"


def test_a_thread_that_dies_is_logged_with_its_stack(caplog: pytest.LogCaptureFixture) -> None:
    previous = threading.excepthook
    log_thread_crashes()
    try:

        def die() -> None:
            raise RuntimeError("thread fault")

        t = threading.Thread(target=die, name="edge-test-dies")
        t.start()
        t.join()
    finally:
        threading.excepthook = previous
    (rec,) = [r for r in caplog.records if "edge-test-dies" in r.getMessage()]
    assert rec.levelno == logging.CRITICAL and rec.exc_info is not None
