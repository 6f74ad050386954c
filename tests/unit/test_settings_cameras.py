"""`[[cameras]]`, the `[camera]` shorthand, tasks bound to cameras, and the errors naming key and source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.config.render import render
from edge.config.settings import CameraSettings, Settings, TaskSettings
from edge.config.sources import load_settings
from edge.core.errors import ConfigError

TWO = """
[[cameras]]
name = "gate"
source = "testsrc"
[[cameras]]
name = "yard"
source = "testsrc"
fps = 5
"""


def load(tmp_path: Path, text: str, **kw: object):
    f = tmp_path / "edge.toml"
    f.write_text(text)
    return load_settings(f, environ={}, **kw)  # type: ignore[arg-type]


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    return err.value.problems


def test_shorthand_is_a_list_of_one(tmp_path: Path) -> None:
    s = load(tmp_path, '[camera]\nsource = "testsrc"\nwidth = 320\n').settings
    assert [c.name for c in s.cameras] == ["main"] and s.camera.width == 320
    assert Settings().camera_names == ["main"]  # no camera section at all: one default camera
    shorthand: dict[str, Any] = {"camera": CameraSettings(name="x")}  # turned into cameras by a validator
    assert Settings(**shorthand).camera_names == ["x"]


def test_several_cameras_and_task_binding(tmp_path: Path) -> None:
    s = load(tmp_path, TWO + '[[tasks]]\nname = "c"\ncameras = ["yard"]\n[[tasks]]\nname = "d"\n').settings
    assert s.camera_names == ["gate", "yard"] and s.camera.name == "gate"
    assert s.task_cameras(s.tasks[0]) == ["yard"] and s.task_cameras(s.tasks[1]) == ["gate", "yard"]
    shown = render(load(tmp_path, TWO))
    assert shown.count("[[cameras]]") == 2 and 'name = "yard"' in shown


def test_a_profile_camera_gives_the_defaults_of_each_listed_camera(tmp_path: Path) -> None:
    s = load(tmp_path, 'profile = "rpi5"\n' + TWO).settings
    assert [(c.source, c.width, c.fps) for c in s.cameras] == [("testsrc", 1280, 5.0), ("testsrc", 1280, 5.0)]


def test_errors_name_the_key_and_the_file(tmp_path: Path) -> None:
    where = str(tmp_path / "edge.toml")
    (dup,) = problems(tmp_path, TWO.replace('"yard"', '"gate"'))
    assert dup.startswith("cameras: duplicate camera names: gate") and where in dup
    (unknown,) = problems(tmp_path, TWO + '[[tasks]]\nname = "c"\ncameras = ["shed"]\n')
    assert unknown.startswith("tasks.0.cameras:") and "'shed'" in unknown and where in unknown
    (both,) = problems(tmp_path, '[camera]\nsource = "testsrc"\n' + TWO)
    assert both.startswith("camera:") and "cameras" in both and "both set" in both and where in both
    (bad,) = problems(tmp_path, "[camera]\nwidth = 3\n")
    assert bad.startswith("camera.width:") and where in bad  # the shorthand is reported as written
    (reserved,) = problems(tmp_path, TWO.replace('"yard"', '"cmd"'))
    assert reserved.startswith("cameras.1.name:") and "reserved" in reserved


def test_task_cameras_must_be_a_non_empty_list_of_names() -> None:
    with pytest.raises(ValueError):
        TaskSettings(name="t", cameras=[])
    with pytest.raises(ValueError):
        TaskSettings(name="t", cameras=["a", "a"])
    with pytest.raises(ValueError):
        TaskSettings(name="t", cameras=["a/b"])


def test_a_drop_in_camera_section_applies_to_every_listed_camera(tmp_path: Path) -> None:
    """`edge bench --choose` writes `[camera] max_edge` into conf.d: it must not clash with a list."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "50-bench.toml").write_text("[camera]\nmax_edge = 672\n")
    s = load(tmp_path, TWO).settings
    assert [c.max_edge for c in s.cameras] == [672, 672] and s.camera_names == ["gate", "yard"]
