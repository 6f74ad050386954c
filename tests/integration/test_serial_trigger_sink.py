"""Serial trigger and serial sink over real ptys with pyserial on the slave end."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config.settings import SerialSettings
from edge.serial.sink import SerialSink, ascii_safe, parse_line
from edge.serial.trigger import TriggerReader
from tests.plugins.ptys import PtyLink, wait_for


@pytest.fixture
def link(tmp_path: Path) -> Iterator[PtyLink]:
    pty = PtyLink(tmp_path / "ttyS9")
    yield pty
    pty.close()


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)

    def snapshot(self) -> list[str]:
        with self.lock:
            return list(self.lines)


def start_trigger(link: PtyLink, fired: Recorder, pattern: str = "^MOTION") -> TriggerReader:
    reader = TriggerReader(
        SerialSettings(trigger_port=link.path, trigger_pattern=pattern), fired, backoff_max_s=0.5
    )
    reader.start()
    assert reader.wait_connected(5.0)
    return reader


def test_one_matching_line_fires_exactly_one_callback(link: PtyLink) -> None:
    fired = Recorder()
    reader = start_trigger(link, fired)
    try:
        link.write(b"MOTION zone=2 level=71\r\n")
        assert wait_for(lambda: len(fired.snapshot()) == 1)
        # a later non-matching line proves the reader moved past the first one without a repeat
        link.write(b"heartbeat 17\r\n")
        assert wait_for(lambda: reader.counters().lines == 2)
        assert fired.snapshot() == ["MOTION zone=2 level=71"]
        counts = reader.counters()
        assert (counts.lines, counts.matched) == (2, 1)
    finally:
        assert reader.stop(timeout=3.0)


def test_noise_and_near_misses_do_not_fire(link: PtyLink) -> None:
    fired = Recorder()
    reader = start_trigger(link, fired)
    try:
        link.write(
            b"\x00\xffMOTION\xfe\n"  # binary noise around the word: dropped by the port
            + b"  MOTION indented\n"  # does not match ^MOTION
            + b"M" * 300  # over-long, then the end of that line arrives with the word in it
            + b"MOTION\n"
            + b"MOTION 1\nMOTION 2\r\nmotion 3\n"
        )
        assert wait_for(lambda: reader.counters().lines == 4)
        assert fired.snapshot() == ["MOTION 1", "MOTION 2"]
        port = reader.counters().port
        assert (port.binary, port.too_long) == (1, 1)
    finally:
        assert reader.stop(timeout=3.0)


def test_a_failing_callback_does_not_stop_the_reader(link: PtyLink) -> None:
    seen: list[str] = []

    def explode(line: str) -> None:
        seen.append(line)
        raise RuntimeError("consumer bug")

    reader = start_trigger(link, explode)  # type: ignore[arg-type]
    try:
        link.write(b"MOTION a\nMOTION b\n")
        assert wait_for(lambda: len(seen) == 2)
        assert wait_for(lambda: reader.counters().port.callback_errors == 2)
        assert reader.connected
    finally:
        assert reader.stop(timeout=3.0)


class Clock:
    def __init__(self) -> None:
        self.now = 50.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, s: float) -> None:
        with self.lock:
            self.now += s


def start_sink(link: PtyLink, clock: Clock, interval: float, max_bytes: int = 64) -> SerialSink:
    settings = SerialSettings(sink_port=link.path, sink_max_bytes=max_bytes, sink_min_interval_s=interval)
    sink = SerialSink(settings, clock=clock, backoff_max_s=0.5)
    sink.start()
    assert sink.wait_connected(5.0)
    return sink


def test_sink_lines_parse_back(link: PtyLink) -> None:
    sink = start_sink(link, Clock(), interval=0.0, max_bytes=40)
    texts = [
        "A person in a red jacket walks past the gate.",
        "Café – zwei Personen\nam Tor | Lieferung ✓",
        "",
    ]
    try:
        for seq, text in enumerate(texts, start=1):
            sink.write_result(seq, "caption", text)

            def sent_through(n: int = seq) -> bool:
                return sink.counters().sent == n

            assert wait_for(sent_through)
        lines = link.read_lines(3)
    finally:
        assert sink.stop(timeout=3.0)
    assert len(lines) == 3
    for seq, (raw, text) in enumerate(zip(lines, texts, strict=True), start=1):
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1
        assert all(0x20 <= b < 0x7F for b in raw[:-1])
        got_seq, task, got_text = parse_line(raw)
        assert (got_seq, task) == (seq, "caption")
        assert got_text == ascii_safe(text)[:40]
        assert len(got_text.encode()) <= 40
    assert parse_line(lines[1])[2].startswith("Cafe ? zwei Personen am Tor | ")


def test_sink_rate_limit_keeps_the_newest(link: PtyLink) -> None:
    clock = Clock()
    sink = start_sink(link, clock, interval=30.0)
    try:
        sink.write_result(1, "caption", "first")
        assert wait_for(lambda: sink.counters().sent == 1)
        for seq in (2, 3, 4):  # inside the interval: each replaces the pending one
            sink.write_result(seq, "caption", f"burst {seq}")
        counts = sink.counters()
        assert (counts.accepted, counts.dropped) == (4, 2)
        clock.advance(30.0)
        assert wait_for(lambda: sink.counters().sent == 2)
        lines = link.read_lines(2)
    finally:
        assert sink.stop(timeout=3.0)
    assert [parse_line(raw)[:2] for raw in lines] == [(1, "caption"), (4, "caption")]


def test_sink_holds_the_line_while_unplugged(link: PtyLink) -> None:
    sink = start_sink(link, Clock(), interval=0.0)
    try:
        link.unplug(remove_link=True)
        assert wait_for(lambda: not sink.connected)
        sink.write_result(7, "caption", "written while the radio was away")
        link.plug()
        assert sink.wait_connected(5.0)
        assert wait_for(lambda: sink.counters().sent == 1)
        lines = link.read_lines(1)
    finally:
        assert sink.stop(timeout=3.0)
    assert [parse_line(raw) for raw in lines] == [(7, "caption", "written while the radio was away")]
