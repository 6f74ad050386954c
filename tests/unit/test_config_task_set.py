"""`--set tasks.NAME.KEY=VALUE` changes one task, as MQTT's cmd/set does; a `tasks` list still
replaces the whole list."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.sources import load_settings
from edge.core.errors import ConfigError

TWO_TASKS = """
[[tasks]]
name = "caption"
kind = "caption"
trigger = "interval"
interval_s = 10

[[tasks]]
name = "door"
kind = "caption"
trigger = "interval"
interval_s = 60
"""


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "edge.toml"
    cfg.write_text(TWO_TASKS)
    return cfg


def test_set_changes_one_task_by_name(tmp_path: Path) -> None:
    loaded = load_settings(
        config=_config(tmp_path),
        overrides=["tasks.door.publish_image=true", "tasks.door.interval_s=5"],
        environ={},
    )
    caption, door = loaded.settings.tasks
    assert (door.name, door.publish_image, door.interval_s) == ("door", True, 5.0)
    assert (caption.publish_image, caption.interval_s) == (False, 10.0)  # the other task is untouched
    assert loaded.origin(("tasks", "door", "interval_s")) == "--set tasks.door.interval_s"


def test_the_environment_addresses_a_task_the_same_way(tmp_path: Path) -> None:
    loaded = load_settings(config=_config(tmp_path), environ={"EDGE_TASKS__CAPTION__INTERVAL_S": "3"})
    assert [t.interval_s for t in loaded.settings.tasks] == [3.0, 60.0]


def test_the_default_task_can_be_changed(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.toml"
    cfg.write_text("")
    loaded = load_settings(config=cfg, overrides=["tasks.caption.publish_image=true"], environ={})
    [task] = loaded.settings.tasks
    assert task.name == "caption" and task.publish_image


def test_an_unknown_task_is_one_line_naming_the_tasks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(config=_config(tmp_path), overrides=["tasks.garage.interval_s=5"], environ={})
    assert err.value.problems == [
        "tasks.garage (--set tasks.garage.interval_s): no task named 'garage' (tasks: caption, door)"
    ]
