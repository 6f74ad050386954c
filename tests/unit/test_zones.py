"""Zones: settings that name the key, the zone in pixels, and a zone's own gate that looks only at
the zone's pixels (motion elsewhere in the frame does not wake a zone task)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from edge.config.settings import CameraSettings, GateSettings, Settings, TaskSettings, ZoneSettings
from edge.core.messages import Frame
from edge.pipeline.jobs import Scheduler

LEFT = ZoneSettings(name="gate", box=[0.0, 0.0, 1 / 3, 1.0])


def test_zone_pixels_follow_the_frame_size() -> None:
    assert LEFT.pixels(640, 480) == (0, 0, 213, 480)
    assert LEFT.pixels(1920, 480) == (0, 0, 640, 480)
    tiny = ZoneSettings(name="dot", box=[0.999, 0.999, 0.001, 0.001])
    assert tiny.pixels(100, 100) == (99, 99, 1, 1)  # at least one pixel, inside the frame


@pytest.mark.parametrize(
    "box", [[0, 0, 1.2, 1], [0.5, 0, 0.6, 1], [0, 0, 0, 1], [-0.1, 0, 0.5, 0.5], [0, 0, 1]]
)
def test_bad_zone_boxes(box: list[float]) -> None:
    with pytest.raises(ValidationError, match="box"):
        ZoneSettings(name="z", box=box)


def test_task_zone_must_exist_on_each_of_its_cameras() -> None:
    cams = [
        CameraSettings(name="front", zones=[LEFT]),
        CameraSettings(name="back"),
    ]
    Settings(cameras=cams, tasks=[TaskSettings(name="t", zone="gate", cameras=["front"])])
    with pytest.raises(ValidationError, match=r"tasks\.0\.zone|no zone 'gate' on camera 'back'"):
        Settings(cameras=cams, tasks=[TaskSettings(name="t", zone="gate")])
    with pytest.raises(ValidationError, match="duplicate zone names"):
        CameraSettings(zones=[LEFT, LEFT])
    with pytest.raises(ValidationError, match="zone and roi"):
        TaskSettings(name="t", zone="gate", roi="motion")
    with pytest.raises(ValidationError, match="zone is for kinds"):
        TaskSettings(name="t", kind="event", zone="gate")


def frame(seq: int, image: np.ndarray) -> Frame:
    return Frame(image, float(seq), float(seq), seq, "main")


def test_a_zone_gate_sees_only_the_zone() -> None:
    zoned = TaskSettings(name="at_gate", trigger="motion", zone="gate")
    whole = TaskSettings(name="anywhere", trigger="motion")
    s = Scheduler(
        [zoned, whole],
        GateSettings(min_interval_s=0, max_interval_s=600),
        zone=lambda camera, name: LEFT if (camera, name) == ("main", "gate") else None,
    )
    still = np.full((60, 90, 3), 100, np.uint8)
    first = s.on_frame(frame(1, still), 1.0)  # first frames: both gates run once
    assert {j.task.name for j in first} == {"at_gate", "anywhere"}
    assert [j.roi for j in first if j.task.name == "at_gate"] == [(0, 0, 30, 60)]
    assert s.on_frame(frame(2, still), 2.0) == []
    right = still.copy()
    right[:, 60:] = 255  # motion in the right third only
    assert [j.task.name for j in s.on_frame(frame(3, right), 3.0)] == ["anywhere"]
    left = right.copy()
    left[:, :30] = 0  # now the left third changes
    got = s.on_frame(frame(4, left), 4.0)
    assert [j.task.name for j in got] == ["at_gate", "anywhere"]
    assert got[0].roi == (0, 0, 30, 60) and got[0].frames[0].seq == 4
    assert s.gated_by_camera()["main"] >= 2
