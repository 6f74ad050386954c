"""`edge view`'s refusals and its HTTP server at the seam: a password beyond loopback, Basic auth
checked, one-line errors for bad options, pages and pictures served from a real SQLite store."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge.cli.view import ViewOptions, check_options, parse_listen
from edge.core.errors import ConfigError
from edge.core.messages import ModelPayload, ResultPayload, StatsPayload
from edge.view.server import ViewServer
from edge.view.store import SqliteViewStore


def _result(seq: int, text: str) -> ResultPayload:
    return ResultPayload(
        id=f"gate-1-{seq}", device="gate", camera="main", task="caption", seq=seq,
        captured_at="2026-12-01T10:00:00Z", published_at="2026-12-01T10:00:00Z", trigger="interval", text=text,
        model=ModelPayload(name="m", backend="ort-genai", provider="cpu"),
        stats=StatsPayload(prompt_tokens=1, image_tokens=0, new_tokens=1, ttft_ms=1, decode_tok_s=1, total_ms=1,
                           stop_reason="eos"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("opts", "words"),
    [
        (ViewOptions(listen="0.0.0.0:8080"), "needs --password-file"),
        (ViewOptions(listen="8080"), "is not HOST:PORT"),
        (ViewOptions(listen="127.0.0.1:99999"), "is not HOST:PORT"),
        (ViewOptions(tls_cert=Path("/x.pem")), "go together"),
        (ViewOptions(keep_days=0), "--keep-days"),
        (ViewOptions(password_file=Path("/nonexistent/pw")), "cannot read"),
    ],
)
def test_bad_options_are_one_line_errors(
    opts: ViewOptions, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGE_VIEW_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as err:
        check_options(opts)
    (line,) = err.value.problems
    assert words in line and "\n" not in line


def test_beyond_loopback_with_a_password_is_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_VIEW_PASSWORD", raising=False)
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    assert check_options(ViewOptions(listen="0.0.0.0:8080", password_file=pw))[2] == "s3cret"
    monkeypatch.setenv("EDGE_VIEW_PASSWORD", "from-env")
    assert check_options(ViewOptions(listen="[::]:8080"))[2] == "from-env"
    assert parse_listen("[::1]:80") == ("::1", 80)


def _get(url: str, password: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if password is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"edge:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_pages_pictures_and_the_password(tmp_path: Path) -> None:
    store = SqliteViewStore(tmp_path / "v.db")
    store.add_result(_result(1, "A red circle <script>alert(1)</script>"))
    store.add_image("gate-1-1", b"\xff\xd8picture")
    server = ViewServer(store, "127.0.0.1", 0, password="pw").start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert _get(base + "/")[0] == 401
        assert _get(base + "/", "wrong")[0] == 401
        code, body = _get(base + "/", "pw")
        assert code == 200 and b"A red circle &lt;script&gt;" in body and b"<script>alert" not in body
        assert _get(base + "/image/gate-1-1/0", "pw") == (200, b"\xff\xd8picture")
        assert _get(base + "/image/gate-1-9/0", "pw")[0] == 404
        code, body = _get(base + "/search?q=circle", "pw")
        assert code == 200 and b'data-result="gate-1-1"' in body
        assert _get(base + "/result/gate-1-1", "pw")[0] == 200
        assert _get(base + "/result/nope", "pw")[0] == 404
        assert _get(base + "/nowhere", "pw")[0] == 404
        code, body = _get(base + "/timeline?page=abc&since=garbage", "pw")
        assert code == 200 and b'data-result="gate-1-1"' in body  # bad parameters are ignored, not a 500
    finally:
        server.stop()
        store.close()
