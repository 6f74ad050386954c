"""conf.d drop-ins: merged after the config file in name order, before credentials, env and --set."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.sources import dropin_dir, load_settings
from edge.core.errors import ConfigError
from tests.helpers.model_sections import local

EMPTY_ENV: dict[str, str] = {}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_dropin_overrides_the_file_and_env_overrides_the_dropin(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", '[mqtt]\nport = 1000\nhost = "file"\n[model]\nnum_crops = 4\n')
    d = write(
        tmp_path / "conf.d" / "50-bench.toml", "[model]\nnum_crops = 2\nthreads = 3\n[mqtt]\nport = 2000\n"
    )
    loaded = load_settings(config=cfg, environ={"EDGE_MQTT__PORT": "3000"})
    s = loaded.settings
    assert (local(s.model).num_crops, local(s.model).threads, s.mqtt.port, s.mqtt.host) == (
        2,
        3,
        3000,
        "file",
    )
    assert loaded.origin(("model", "num_crops")) == f"drop-in {d}"
    assert loaded.origin(("mqtt", "port")) == "env EDGE_MQTT__PORT"
    assert loaded.origin(("mqtt", "host")) == str(cfg)
    over = load_settings(config=cfg, overrides=["model.num_crops=1"], environ=EMPTY_ENV)
    assert local(over.settings.model).num_crops == 1


def test_dropins_merge_in_name_order_and_only_toml(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", "")
    write(tmp_path / "conf.d" / "10-a.toml", "[model]\nnum_crops = 2\nmax_new_tokens = 10\n")
    write(tmp_path / "conf.d" / "90-z.toml", "[model]\nnum_crops = 3\n")
    write(tmp_path / "conf.d" / "99-ignored.toml~", "[model]\nnum_crops = 9\n")
    write(tmp_path / "conf.d" / ".hidden.toml", "[model]\nnum_crops = 9\n")
    s = load_settings(config=cfg, environ=EMPTY_ENV).settings
    assert (local(s.model).num_crops, s.model.max_new_tokens) == (3, 10)
    assert dropin_dir(cfg) == tmp_path / "conf.d"


def test_paths_in_a_dropin_resolve_against_the_dropin(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", "")
    write(tmp_path / "conf.d" / "50-m.toml", '[model]\npath = "../models/m"\n')
    assert (
        local(load_settings(config=cfg, environ=EMPTY_ENV).settings.model).path == tmp_path / "models" / "m"
    )


@pytest.mark.parametrize(
    "text, words",
    [
        ("[model\n", "invalid TOML"),
        ("[model]\nnum_crop = 2\n", "model.num_crop: unknown key"),
        ("[model]\nthreads = 0\n", "model.threads"),
    ],
)
def test_errors_name_the_dropin_file(tmp_path: Path, text: str, words: str) -> None:
    cfg = write(tmp_path / "edge.toml", "")
    d = write(tmp_path / "conf.d" / "50-bad.toml", text)
    with pytest.raises(ConfigError) as err:
        load_settings(config=cfg, environ=EMPTY_ENV)
    msg = str(err.value)
    assert words in msg and str(d) in msg, msg
