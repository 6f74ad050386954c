"""The sink's line format: ASCII-safe, one line, text cut to N bytes, parseable back."""

from __future__ import annotations

from edge.serial.sink import ascii_safe, format_line, parse_line


def test_ascii_folding_and_one_line() -> None:
    assert ascii_safe("Ärger über\tdie\r\nStraße  ") == "Arger uber die Stra?e"
    assert ascii_safe("a\x00b\x1bc") == "a b c"
    assert ascii_safe("🙂 ok") == "? ok"


def test_format_cuts_text_not_header() -> None:
    line = format_line(123456, "caption", "x" * 500, max_bytes=16)
    assert line == b"123456|caption|" + b"x" * 16 + b"\n"
    assert parse_line(line) == (123456, "caption", "x" * 16)


def test_pipes_in_text_survive_the_round_trip() -> None:
    line = format_line(3, "ask", "a|b|c", max_bytes=64)
    assert parse_line(line) == (3, "ask", "a|b|c")
