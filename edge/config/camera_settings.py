"""The camera sections: `[[cameras]]` (or the `[camera]` shorthand), their named zones, and the
motion gate that decides when a frame is worth a job."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from edge.config.section import MAX_PERIOD_S, Section, topic_name

# A 1920-pixel edge keeps 1080p cameras untouched and bounds a frame to 11 MB (an 8192x8192 source
# otherwise costs ~200 MB per copy, over 1 GB across the daemon and its worker: too much on 4 GB).
DEFAULT_MAX_EDGE = 1920

# An idle camera decoded and gated once a second: a 720p15 MJPEG camera then costs ~0.9 % of a core
# (2 fps: ~1.4 %; benchmarks/idle_cost.py), and motion is seen within a second plus one frame. It is
# also the pre-roll rate an event task asks for by default (frame_interval_s = 1).
DEFAULT_IDLE_FPS = 1.0


class ZoneSettings(Section):
    """A named region of a camera's picture, as fractions of the frame (so it survives a resolution
    change): a task with `zone` gates on motion inside it and describes only it."""

    name: str
    box: list[float] = Field(description="[x, y, w, h] as fractions of the frame's width and height.")

    _name = field_validator("name")(classmethod(lambda cls, v: topic_name(v)))

    @field_validator("box")
    @classmethod
    def _box(cls, v: list[float]) -> list[float]:
        if len(v) != 4:
            raise ValueError(f"{v}: expected [x, y, w, h] (four fractions of the frame)")
        x, y, w, h = v
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > 1.0 + 1e-9 or y + h > 1.0 + 1e-9:
            raise ValueError(f"{v}: x, y >= 0, w, h > 0 and x + w, y + h <= 1 (fractions of the frame)")
        return v

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The zone in a frame of this size: (x, y, w, h) pixels, at least one pixel, inside the frame."""
        x, y, w, h = self.box
        x0, y0 = min(width - 1, round(x * width)), min(height - 1, round(y * height))
        x1, y1 = (
            min(width, max(x0 + 1, round((x + w) * width))),
            min(height, max(y0 + 1, round((y + h) * height))),
        )
        return x0, y0, x1 - x0, y1 - y0


class CameraSettings(Section):
    name: str = Field(
        "main",
        description="Camera name: results carry it and publish on {prefix}/{device}/{name}/{task}/result.",
    )
    source: int | str = Field(
        "testsrc",
        description="Index, /dev/videoN, rtsp://, http(s):// MJPEG, video file, image dir or glob, "
        "'gst:<pipeline>', 'picamera2' or 'testsrc'.",
    )
    width: int | None = Field(640, ge=16, le=8192, description="Requested width (None: the device's).")
    height: int | None = Field(480, ge=16, le=8192, description="Requested height (None: the device's).")
    fps: float = Field(15.0, gt=0, le=240, description="Requested frame rate; files are paced to theirs.")
    reconnect_s: float = Field(30.0, gt=0, description="Cap of the exponential reconnect backoff.")
    stall_s: float = Field(10.0, gt=0, description="No frame for this long: the camera counts as lost.")
    max_edge: int | None = Field(
        DEFAULT_MAX_EDGE,
        ge=64,
        description="Downscale frames whose longer edge exceeds this (bounds the memory a large source costs).",
    )
    pace: Literal["realtime", "asap"] = Field(
        "realtime", description="Video files: play at their own frame rate, or as fast as consumed."
    )
    loop: bool = Field(True, description="Video files and image dirs: start again at the end.")
    zones: list[ZoneSettings] = Field(
        default_factory=list, description="Named regions ([[cameras.zones]]) a task may look at alone."
    )

    _name = field_validator("name")(classmethod(lambda cls, v: topic_name(v)))

    @field_validator("zones")
    @classmethod
    def _zones(cls, v: list[ZoneSettings]) -> list[ZoneSettings]:
        names = [z.name for z in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate zone names: {', '.join(dupes)}")
        return v

    def zone(self, name: str) -> ZoneSettings | None:
        return next((z for z in self.zones if z.name == name), None)

    @field_validator("source", mode="before")
    @classmethod
    def _index(cls, v: Any) -> Any:
        # From the environment or --set every value is a string: "0" means camera index 0.
        return int(v) if isinstance(v, str) and v.strip().isdigit() else v


class GateSettings(Section):
    motion_threshold: float = Field(
        0.02, ge=0, le=1, description="Share of changed pixels (0..1) that counts as motion."
    )
    min_interval_s: float = Field(
        2.0, ge=0, le=MAX_PERIOD_S, description="Never run a motion task more often."
    )
    max_interval_s: float = Field(
        300.0, gt=0, le=MAX_PERIOD_S, description="Run at least this often, even without motion."
    )
    cooldown_s: float = Field(0.0, ge=0, le=MAX_PERIOD_S, description="Quiet time after a triggered job.")
    idle_fps: float | None = Field(
        DEFAULT_IDLE_FPS,
        ge=0,
        le=240,
        description="While nothing moved for idle_after_s, decode and gate only this many frames a "
        "second (raised to an event task's pre-roll rate); motion is seen within 1/idle_fps. 0: every frame.",
    )
    idle_after_s: float = Field(
        10.0, gt=0, le=MAX_PERIOD_S, description="Seconds without motion before a camera goes to idle_fps."
    )

    @model_validator(mode="after")
    def _order(self) -> GateSettings:
        if self.max_interval_s < self.min_interval_s:
            raise ValueError("gate.max_interval_s must be >= gate.min_interval_s")
        return self
