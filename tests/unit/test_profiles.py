"""Every shipped device profile is a valid, complete starting point.

The profiles are written once, in the checkout's top-level devices/; edge/config/profiles is a symlink
to it, so they are package data (found with importlib.resources) from a checkout, an editable install
and a wheel (the build copies the files the link points at)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from edge.assets import package_file
from edge.cli.main import main
from edge.config.settings import Settings
from edge.config.sources import ADMIN_PROFILES, load_settings, profile_dirs
from tests.helpers.model_sections import local

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEVICES = Path(__file__).resolve().parents[2] / "devices"
PACKAGED = package_file("config/profiles")
MODELS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "models"
BOARDS = ["rpi5", "jetson-orin", "intel-core-ultra-npu", "qualcomm-qcs", "x86-cpu"]
PROFILES = [*BOARDS, "demo", "demo-openvino"]


def test_the_profile_set_is_complete() -> None:
    assert sorted(p.stem for p in DEVICES.glob("*.toml")) == sorted(PROFILES)
    assert sorted(p.stem for p in PACKAGED.glob("*.toml")) == sorted(PROFILES)


def test_devices_is_the_one_source_of_the_packaged_profiles() -> None:
    """Editing devices/NAME.toml is editing what the package reads: one file, not two copies."""
    assert PACKAGED.is_symlink() and PACKAGED.resolve() == DEVICES.resolve()


def test_profiles_are_looked_up_in_etc_then_the_package() -> None:
    assert profile_dirs() == [ADMIN_PROFILES, PACKAGED]
    assert PACKAGED.parent == Path(__file__).resolve().parents[2] / "edge" / "config"


@pytest.mark.parametrize("name", PROFILES)
def test_profile_validates_as_settings(name: str) -> None:
    data = tomllib.loads((DEVICES / f"{name}.toml").read_text(encoding="utf-8"))
    settings = Settings.model_validate(data)
    assert local(settings.model).path is not None, "a profile names its model folder"
    assert settings.tasks, "a profile has at least one task"


@pytest.mark.parametrize("name", PROFILES)
def test_config_check_passes_for_profile(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in [v for v in os.environ if v.startswith("EDGE_")]:
        monkeypatch.delenv(var)
    # `config check` also asks whether the model folder and the camera exist here: a board
    # profile's do not on a test machine, so they are pointed at the committed stand-ins.
    here: list[str] = []
    if name in BOARDS:
        data = tomllib.loads((DEVICES / f"{name}.toml").read_text(encoding="utf-8"))
        backend = data["model"].get("backend", "ort-genai")
        stand_in = MODELS / ("ov-phi3v" if backend == "openvino" else "ort-phi3v-fp32")
        here = ["--set", f'model.path="{stand_in}"', "--set", 'camera.source="testsrc"']
    assert main(["config", "check", "--profile", name, *here]) == 0
    assert load_settings(profile=name, environ={}).settings.profile == name


@pytest.mark.parametrize("name", BOARDS)
def test_board_profile_says_what_to_install_and_expect(name: str) -> None:
    """The header is the profile's documentation: install extra, model download, expected speed."""
    text = (DEVICES / f"{name}.toml").read_text(encoding="utf-8")
    header = text.split("\n[", 1)[0]
    for needle in ("Install:", "Model:", "edge-vlm-agent[", "Speed:", "ORDER OF MAGNITUDE"):
        assert needle in header, f"{name}.toml header lacks {needle!r}"
    data = tomllib.loads(text)
    assert Path(data["model"]["path"]).is_absolute()


def test_demo_runs_on_the_packaged_demo_model() -> None:
    settings = load_settings(profile="demo", environ={}).settings
    path = local(settings.model).path
    assert path == package_file("assets/models/demo-ort")
    assert path.is_dir()
    assert (path / "genai_config.json").is_file()
    assert settings.camera.source == "testsrc"
    assert (settings.model.backend, local(settings.model).providers, local(settings.model).num_crops) == (
        "ort-genai",
        ["cpu"],
        1,
    )
    assert [(t.trigger, t.interval_s) for t in settings.tasks] == [("interval", 5)]


def test_demo_openvino_runs_the_packaged_openvino_demo_model() -> None:
    settings = load_settings(profile="demo-openvino", environ={}).settings
    path = local(settings.model).path
    assert path == package_file("assets/models/demo-ov")
    assert (path / "openvino_language_model.xml").is_file()
    assert (settings.model.backend, local(settings.model).providers) == ("openvino", ["CPU"])
    demo = load_settings(profile="demo", environ={}).settings
    # The same demo otherwise: camera, gate, tasks, broker.
    for part in ("camera", "gate", "tasks", "mqtt", "health"):
        assert getattr(settings, part) == getattr(demo, part), part
    assert (local(settings.model).num_crops, settings.model.max_new_tokens) == (
        local(demo.model).num_crops,
        demo.model.max_new_tokens,
    )
