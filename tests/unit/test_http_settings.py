"""[model] backend = "http": the keys, the privacy rule, the key never in settings, the chain shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.settings import HttpModelSettings, is_loopback_host
from edge.config.sources import load_settings
from edge.core.errors import ConfigError
from tests.helpers.model_sections import http, local


def _load(tmp_path: Path, body: str) -> HttpModelSettings:
    cfg = tmp_path / "edge.toml"
    cfg.write_text(body)
    return http(load_settings(config=cfg, environ={}).settings.model)


def test_a_loopback_endpoint_needs_no_opt_in(tmp_path: Path) -> None:
    m = _load(tmp_path, '[model]\nbackend = "http"\nurl = "http://127.0.0.1:8080/v1"\nname = "phi"\n')
    assert (m.backend, m.url, m.name, m.allow_remote) == ("http", "http://127.0.0.1:8080/v1", "phi", False)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('url = "http://jetson.lan:11434/v1"\nname = "m"\n', "set allow_remote = true"),
        ('name = "m"\n', "needs url"),
        ('url = "http://127.0.0.1/v1"\n', "needs name"),
        ('url = "ftp://127.0.0.1/v1"\nname = "m"\n', "not an http:// or https://"),
        ('url = "http://u:p@127.0.0.1/v1"\nname = "m"\n', "must not carry credentials"),
        ('url = "http://127.0.0.1/v1"\nname = "m"\napi_key = "sk-SECRET"\n', "never read from settings"),
        ('url = "http://127.0.0.1/v1"\nname = "m"\napi_key_env = "EDGE_KEY"\n', "EDGE_* variables"),
        ('url = "http://127.0.0.1/v1"\nname = "m"\n[model.tls]\ninsecure = true\n', "not https://"),
    ],
)
def test_bad_http_settings_name_the_key_and_the_file(tmp_path: Path, extra: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, '[model]\nbackend = "http"\n' + extra)
    text = str(err.value)
    assert needle in text and "model" in text and str(tmp_path / "edge.toml") in text
    assert "SECRET" not in text


def test_a_chain_is_a_flat_list_of_endpoints(tmp_path: Path) -> None:
    m = _load(
        tmp_path,
        '[model]\nbackend = "http"\nurl = "https://gpu.lan/v1"\nname = "phi"\nallow_remote = true\n'
        '[[model.fallback]]\nbackend = "ort-genai"\npath = "models/phi"\n',
    )
    assert [e.backend for e in m.fallback] == ["ort-genai"]
    assert local(m.fallback[0]).path == tmp_path / "models/phi"
    with pytest.raises(ConfigError, match="not nested"):
        _load(tmp_path, "[model]\n[[model.fallback]]\n[[model.fallback.fallback]]\n")


@pytest.mark.parametrize(
    ("host", "ok"),
    [("localhost", True), ("127.0.0.2", True), ("::1", True), ("10.0.0.1", False), ("a.lan", False)],
)
def test_loopback(host: str, ok: bool) -> None:
    assert is_loopback_host(host) is ok
