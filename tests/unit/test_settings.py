"""Settings: every source, the precedence between them, secrets, and each validation error path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.assets import package_file
from edge.config.sources import load_settings
from edge.core.errors import ConfigError
from tests.helpers.model_sections import local

EMPTY_ENV: dict[str, str] = {}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def problems(**kwargs) -> list[str]:
    kwargs.setdefault("environ", EMPTY_ENV)
    with pytest.raises(ConfigError) as exc:
        load_settings(**kwargs)
    return exc.value.problems


def test_defaults_without_any_source(tmp_path: Path) -> None:
    loaded = load_settings(config=write(tmp_path / "e.toml", ""), environ=EMPTY_ENV)
    s = loaded.settings
    assert s.mqtt.port == 1883 and s.mqtt.prefix == "edge" and local(s.model).providers == ["cpu"]
    assert [t.name for t in s.tasks] == ["caption"]
    assert loaded.origin(("mqtt", "port")) == "default"


def test_precedence_cli_over_env_over_file_over_profile(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "edge.toml", 'profile = "demo"\n[mqtt]\nhost = "file-host"\nport = 1000\nqos = 0\n'
    )
    env = {"EDGE_MQTT__PORT": "2000", "EDGE_MQTT__QOS": "1"}
    loaded = load_settings(config=cfg, overrides=["mqtt.port=3000"], environ=env)
    s = loaded.settings
    assert s.mqtt.port == 3000 and loaded.origin(("mqtt", "port")) == "--set mqtt.port"
    assert s.mqtt.qos == 1 and loaded.origin(("mqtt", "qos")) == "env EDGE_MQTT__QOS"
    assert s.mqtt.host == "file-host" and loaded.origin(("mqtt", "host")) == str(cfg)
    # the demo profile sets the camera; nothing above it does
    assert s.camera.source == "testsrc"
    assert loaded.origin(("camera", "source")).startswith("profile ")


def test_file_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    text = '[model]\npath = "../models/m"\n[mqtt]\noutbox_path = "state/outbox.sqlite"\n'
    cfg = write(tmp_path / "conf" / "edge.toml", text)
    s = load_settings(config=cfg, environ=EMPTY_ENV).settings
    assert local(s.model).path == tmp_path / "models" / "m"
    assert s.mqtt.outbox_path == tmp_path / "conf" / "state" / "outbox.sqlite"


def test_package_paths_resolve_inside_the_installed_package(tmp_path: Path) -> None:
    """A "package:REL" path names package data wherever edge is installed, from any layer."""
    demo = package_file("assets/models/demo-ort")
    assert local(load_settings(profile="demo", environ=EMPTY_ENV).settings.model).path == demo
    cfg = write(tmp_path / "edge.toml", '[model]\npath = "package:assets/models/demo-ort"\n')
    assert local(load_settings(config=cfg, environ=EMPTY_ENV).settings.model).path == demo
    env = {"EDGE_MODEL__PATH": "package:assets/models/demo-ort"}
    assert local(load_settings(config=cfg, environ=env).settings.model).path == demo
    over = ["model.path='package:assets/models/demo-ort/'"]
    assert local(load_settings(config=cfg, overrides=over, environ=EMPTY_ENV).settings.model).path == demo


def test_missing_package_path_names_key_and_source(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", "")
    [line] = problems(config=cfg, overrides=["model.path=package:assets/models/nope"])
    assert line.startswith("model.path: 'package:assets/models/nope' (from --set model.path): no ")
    assert line.endswith("assets/models/nope in the installed edge package")
    [line] = problems(config=cfg, environ={"EDGE_TEXT_MODEL__PATH": "package:"})
    assert "(from env EDGE_TEXT_MODEL__PATH)" in line


def test_config_file_from_env_variable(tmp_path: Path) -> None:
    cfg = write(tmp_path / "x.toml", 'device_id = "cam-07"\n')
    assert load_settings(environ={"EDGE_CONFIG": str(cfg)}).settings.device_id == "cam-07"


def test_env_nesting_and_json_lists(tmp_path: Path) -> None:
    env = {
        "EDGE_MODEL__PROVIDERS": '["qnn","cpu"]',
        "EDGE_TASKS": '[{"name":"gate","kind":"caption","prompt":"p","trigger":"interval","interval_s":5}]',
        "EDGE_MQTT__TLS__INSECURE": "true",
    }
    loaded = load_settings(config=write(tmp_path / "e.toml", ""), environ=env)
    s = loaded.settings
    assert local(s.model).providers == ["qnn", "cpu"]
    assert s.tasks[0].name == "gate" and s.tasks[0].interval_s == 5
    assert s.mqtt.tls is not None and s.mqtt.tls.insecure is True
    assert loaded.origin(("tasks",)) == "env EDGE_TASKS"


def test_cli_values_are_toml_typed(tmp_path: Path) -> None:
    s = load_settings(
        config=write(tmp_path / "e.toml", ""),
        overrides=[
            'model.providers=["NPU","CPU"]',
            "mqtt.host=broker.lan",
            "gate.cooldown_s=2.5",
            "device_id=123",
        ],
        environ=EMPTY_ENV,
    ).settings
    assert local(s.model).providers == ["NPU", "CPU"] and s.mqtt.host == "broker.lan"
    assert s.gate.cooldown_s == 2.5 and s.device_id == "123"


def test_password_from_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text("s3cret\n")
    cfg = write(tmp_path / "e.toml", '[mqtt]\nusername = "edge"\npassword = "from-file"\n')
    loaded = load_settings(config=cfg, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert loaded.settings.mqtt.password is not None
    assert loaded.settings.mqtt.password.get_secret_value() == "s3cret"
    assert loaded.origin(("mqtt", "password")) == f"credential {creds / 'mqtt_password'}"


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", '[mqtt]\nhots = "x"\n')
    assert problems(config=cfg) == [f"mqtt.hots: unknown key (from {cfg})"]


def test_unknown_key_in_env_names_the_variable(tmp_path: Path) -> None:
    cfg = write(tmp_path / "e.toml", "")
    assert problems(config=cfg, environ={"EDGE_GATE__BOGUS": "1"}) == [
        "gate.bogus: unknown key (from env EDGE_GATE__BOGUS)"
    ]


def test_wrong_type_names_value_and_source(tmp_path: Path) -> None:
    cfg = write(tmp_path / "e.toml", "")
    assert problems(config=cfg, environ={"EDGE_MQTT__PORT": "abc"}) == [
        "mqtt.port: Input should be a valid integer, unable to parse string as an integer "
        "(got 'abc') (from env EDGE_MQTT__PORT)"
    ]


def test_cross_field_password_without_username(tmp_path: Path) -> None:
    cfg = write(tmp_path / "e.toml", '[mqtt]\npassword = "p"\n')
    assert problems(config=cfg) == [f"mqtt: mqtt.password is set but mqtt.username is not (from {cfg})"]


def test_cross_field_tls_key_without_cert(tmp_path: Path) -> None:
    cfg = write(tmp_path / "e.toml", '[mqtt.tls]\nkey = "/k.pem"\n')
    assert problems(config=cfg) == [f"mqtt.tls: mqtt.tls.key is set but mqtt.tls.cert is not (from {cfg})"]


@pytest.mark.parametrize("bad", ["a/b", "a+b", "#", "", "x y"])
def test_topic_levels_must_be_topic_safe(tmp_path: Path, bad: str) -> None:
    cfg = write(tmp_path / "e.toml", "")
    (line,) = problems(config=cfg, overrides=[f'device_id="{bad}"'])
    assert line.startswith("device_id: ") and "not topic-safe" in line and "(from --set device_id)" in line


def test_trailing_newline_is_not_topic_safe(tmp_path: Path) -> None:
    """`$` matches before a final newline; the name rule must not: "ab\n" would end a topic level."""
    cfg = write(tmp_path / "e.toml", 'device_id = "ab\\n"\n')
    (line,) = problems(config=cfg)
    assert line.startswith("device_id: ") and "not topic-safe" in line and f"(from {cfg})" in line


@pytest.mark.parametrize("word", ["status", "state", "health", "event", "cmd", "reply"])
def test_reserved_topic_words_are_refused_naming_key_and_source(tmp_path: Path, word: str) -> None:
    cfg = write(
        tmp_path / "e.toml",
        f'device_id = "{word}"\n[camera]\nname = "{word}"\n[[tasks]]\nname = "{word}"\n'
        f'[[tasks]]\nname = "ok"\ntopic = "x/{word}"\n',
    )
    found = problems(config=cfg)
    assert [line.split(":")[0] for line in found] == ["device_id", "camera.name", "tasks.0.name", "tasks.1"]
    assert all("reserved topic word" in line and f"(from {cfg})" in line for line in found), found


def test_reserved_words_are_fine_where_they_cannot_collide(tmp_path: Path) -> None:
    cfg = write(tmp_path / "e.toml", '[mqtt]\nprefix = "state"\n[[tasks]]\nname = "ask"\n')
    s = load_settings(config=cfg, environ=EMPTY_ENV).settings
    assert s.mqtt.prefix == "state" and s.tasks[0].name == "ask"  # a task named like a verb is fine


def test_structured_task_needs_schema(tmp_path: Path) -> None:
    cfg = write(tmp_path / "e.toml", '[[tasks]]\nname = "s"\nkind = "structured"\n')
    assert problems(config=cfg) == [f"tasks.0: task 's': kind 'structured' needs a schema (from {cfg})"]


def test_duplicate_task_names_and_summarize_source(tmp_path: Path) -> None:
    cfg = write(tmp_path / "e.toml", '[[tasks]]\nname = "a"\n[[tasks]]\nname = "a"\n')
    assert problems(config=cfg) == [f"settings: duplicate task names: a (from {cfg})"]
    cfg2 = write(tmp_path / "f.toml", '[[tasks]]\nname = "d"\nkind = "summarize"\nsource_task = "nope"\n')
    assert problems(config=cfg2) == [f"settings: task 'd': source_task 'nope' is not a task (from {cfg2})"]


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "e.toml", "[mqtt\n")
    (line,) = problems(config=cfg)
    assert line.startswith(f"config file {cfg}: invalid TOML:")
    assert problems(config=tmp_path / "nope.toml") == [f"config file {tmp_path / 'nope.toml'}: not found"]


def test_unknown_profile_lists_known_ones(tmp_path: Path) -> None:
    (line,) = problems(config=write(tmp_path / "e.toml", ""), profile="nope")
    assert line.startswith("profile: no profile 'nope' in ") and "demo" in line


def test_importing_settings_has_no_side_effects(tmp_path: Path) -> None:
    code = "import edge.config.settings, edge.config.sources, edge.core.messages, os; print(os.listdir('.'))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_config_check_exit_codes(tmp_path: Path) -> None:
    vision = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "models" / "ort-phi3v-fp32"
    good = write(tmp_path / "good.toml", f'device_id = "cam-1"\n[model]\npath = "{vision}"\n')
    bad = write(tmp_path / "bad.toml", '[mqtt]\nhots = "x"\nport = "abc"\n')
    ok = run_cli("config", "check", "--config", str(good), env={"PATH": "/usr/bin"})
    assert ok.returncode == 0, ok.stderr
    res = run_cli("config", "check", "--config", str(bad), env={"PATH": "/usr/bin"})
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2 and all(str(bad) in line for line in lines)
    assert any("mqtt.hots: unknown key" in line for line in lines)
    assert "Traceback" not in res.stderr


def test_config_show_redacts_secrets_and_names_sources(tmp_path: Path) -> None:
    cfg = write(tmp_path / "e.toml", '[mqtt]\nusername = "u"\npassword = "hunter2"\n')
    res = run_cli("config", "show", "--config", str(cfg), env={"PATH": "/usr/bin"})
    assert res.returncode == 0, res.stderr
    assert "hunter2" not in res.stdout
    assert f'password = "**********"  # {cfg}' in res.stdout
    assert 'host = "127.0.0.1"  # default' in res.stdout
