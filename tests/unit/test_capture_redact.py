"""Credentials in camera sources never survive redaction; everything else does."""

from __future__ import annotations

import pytest

from edge.capture import redact_source
from edge.capture.http_mjpeg import split_credentials


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
        ("rtsps://admin:p@ss@cam.local/live", "rtsps://admin:***@cam.local/live"),
        ("http://tok3n@cam/mjpg", "http://***@cam/mjpg"),
        ("http://cam/videostream.cgi?user=admin&pwd=s3cret", "http://cam/videostream.cgi?user=admin&pwd=***"),
        ("https://cam/mjpeg?token=abc.def&fps=5", "https://cam/mjpeg?token=***&fps=5"),
        ("http://cam/x?Password=s3cret", "http://cam/x?Password=***"),
        (
            "gst:rtspsrc location=rtsp://u:s3cret@cam/s user-id=u user-pw=s3cret ! decodebin ! appsink",
            "gst:rtspsrc location=rtsp://u:***@cam/s user-id=u user-pw=*** ! decodebin ! appsink",
        ),
        ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
        ("/data/clips/front door.mp4", "/data/clips/front door.mp4"),
        ("testsrc", "testsrc"),
        (0, "0"),
        ("http://cam/mjpg?keyframe=1&monkey=2", "http://cam/mjpg?keyframe=1&monkey=2"),
    ],
)
def test_redact_source(source: object, expected: str) -> None:
    assert redact_source(source) == expected


def test_redaction_inside_a_message() -> None:
    msg = "camera rtsp://admin:s3cret@cam/1: could not open; retry rtsp://admin:s3cret@cam/2"
    out = redact_source(msg)
    assert "s3cret" not in out
    assert out.count("admin:***@") == 2


def test_split_credentials_for_http_auth() -> None:
    assert split_credentials("http://admin:p%40ss@127.0.0.1:8080/stream?x=1") == (
        "http://127.0.0.1:8080/stream?x=1",
        "admin",
        "p@ss",
    )
    assert split_credentials("http://[::1]:81/s") == ("http://[::1]:81/s", None, None)
    assert split_credentials("http://u:p@[::1]:81/s") == ("http://[::1]:81/s", "u", "p")
