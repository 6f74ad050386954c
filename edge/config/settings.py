"""Settings models: every section of the design's contract, strict (`extra="forbid"`).

Validation here has no side effects: nothing is opened, created or connected. Loading the layered
sources (profile < file < env < CLI) and remembering where each value came from is in
`edge.config.sources`; these models only say what is valid.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from edge.config.camera_settings import DEFAULT_MAX_EDGE as DEFAULT_MAX_EDGE
from edge.config.camera_settings import CameraSettings as CameraSettings
from edge.config.camera_settings import GateSettings as GateSettings
from edge.config.camera_settings import ZoneSettings as ZoneSettings
from edge.config.field_settings import AlertSettings as AlertSettings
from edge.config.field_settings import LinkSettings as LinkSettings
from edge.config.field_settings import PowerSettings as PowerSettings
from edge.config.model_settings import HttpModelSettings as HttpModelSettings
from edge.config.model_settings import LocalModelSettings as LocalModelSettings
from edge.config.model_settings import ModelBase as ModelBase
from edge.config.model_settings import ModelSettings as ModelSettings
from edge.config.model_settings import OpenVINOModelSettings as OpenVINOModelSettings
from edge.config.model_settings import OrtGenAIModelSettings as OrtGenAIModelSettings
from edge.config.model_settings import is_loopback_host as is_loopback_host
from edge.config.model_settings import model_settings as model_settings
from edge.config.model_settings import url_host as url_host
from edge.config.section import MAX_PERIOD_S as MAX_PERIOD_S
from edge.config.section import Section as Section
from edge.config.section import TLSSettings as TLSSettings
from edge.config.section import topic_name
from edge.core.kinds import RoiKind, TaskKind, TriggerKind
from edge.core.names import check_name, sanitize

KEYED_ERROR = "edge_keyed"
"""Error type of a cross-field check that knows which key is wrong (`ctx["loc"]`): the loader reports
that key and its source instead of the whole settings."""


def keyed_error(loc: tuple[str | int, ...], message: str) -> PydanticCustomError:
    return PydanticCustomError(KEYED_ERROR, "{message}", {"message": message, "loc": ".".join(map(str, loc))})


def _topic_level(value: str) -> str:
    """The prefix sits above the device's tree, so only the name rule applies, not the reserved words."""
    return check_name(value, reserved=False)


MIN_EVENT_FRAMES, MAX_EVENT_FRAMES, DEFAULT_EVENT_FRAMES = 2, 6, 3
"""Frames of an event task: at least a before and an after; at most what one prompt and one frame slot hold."""
MQTT_MAX_STRING_BYTES = 65535
"""MQTT encodes strings (client id, topics) with a 16-bit length: paho's thread dies on a longer one."""


def _mqtt_string(value: str, what: str) -> str:
    size = len(value.encode("utf-8"))
    if size > MQTT_MAX_STRING_BYTES:
        raise ValueError(f"{what} is {size} bytes in UTF-8; MQTT allows at most {MQTT_MAX_STRING_BYTES}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{what} contains a control character")
    return value


def default_device_id() -> str:
    """The hostname, made topic-safe (dots and other characters become '-')."""
    return sanitize(socket.gethostname().split(".")[0], fallback="edge")


DEFAULT_CAPTION_PROMPT = "Describe what you see in one sentence."
"""A caption task's prompt when none is configured (also `edge caption` without a caption task)."""


class TaskSettings(Section):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        validate_assignment=True,
        coerce_numbers_to_str=True,
        allow_inf_nan=False,
    )

    name: str
    kind: TaskKind = "caption"
    prompt: str = DEFAULT_CAPTION_PROMPT
    json_schema: dict[str, Any] | None = Field(None, alias="schema", description="JSON schema (structured).")
    trigger: TriggerKind = "motion"
    interval_s: float | None = Field(None, gt=0, le=MAX_PERIOD_S, description="Interval trigger period.")
    publish_image: bool = False
    topic: str | None = Field(None, description="Topic override (relative to the device's root).")
    source_task: str | None = Field(None, description="Summarize: the task whose results to digest.")
    window_s: float = Field(3600.0, gt=0, le=MAX_PERIOD_S, description="Summarize: how far back to look.")
    max_items: int = Field(20, ge=1, le=200, description="Summarize: at most this many results.")
    # ---- kind "event": several frames of one motion event in one multi-image prompt
    frames: int | None = Field(
        None,
        ge=MIN_EVENT_FRAMES,
        le=MAX_EVENT_FRAMES,
        description="Event: frames per event (2..6, default 3).",
    )
    max_event_s: float = Field(10.0, gt=0, le=3600, description="Event: the longest event collected.")
    frame_interval_s: float = Field(
        1.0, ge=0, le=3600, description="Event: at least this long between two frames of an event."
    )
    preroll: int = Field(1, ge=0, le=MAX_EVENT_FRAMES - 1, description="Event: frames from before motion.")
    quiet_s: float = Field(2.0, gt=0, le=3600, description="Event: motion below threshold this long ends it.")
    roi: RoiKind = Field("full", description="full: the whole frame; motion: the box around the motion.")
    num_crops: int | None = Field(
        None, ge=1, le=16, description="Phi-3.5-vision HD crops for this task (default: model.num_crops)."
    )
    cameras: list[str] | None = Field(
        None, description="Names of the cameras this task runs on (default: all of them)."
    )
    zone: str | None = Field(
        None, description="Look only at this zone of each camera: its motion gates, the model sees its crop."
    )

    _name = field_validator("name")(classmethod(lambda cls, v: topic_name(v)))

    @field_validator("cameras")
    @classmethod
    def _cameras(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("empty: leave cameras unset to run the task on every camera")
        for name in v:
            topic_name(name)
        if len(set(v)) != len(v):
            raise ValueError(f"a camera is named twice: {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TaskSettings:
        if self.kind == "structured" and not self.json_schema:
            raise ValueError(f"task {self.name!r}: kind 'structured' needs a schema")
        if self.json_schema is not None and self.kind != "structured":
            raise ValueError(f"task {self.name!r}: schema is only for kind 'structured'")
        if self.trigger == "interval" and self.interval_s is None:
            raise ValueError(f"task {self.name!r}: trigger 'interval' needs interval_s")
        if self.kind == "summarize" and not self.source_task:
            raise ValueError(f"task {self.name!r}: kind 'summarize' needs source_task")
        if self.frames is not None and self.kind != "event":
            raise ValueError(f"task {self.name!r}: frames is only for kind 'event'")
        if self.kind == "event":
            if self.trigger != "motion":
                raise ValueError(f"task {self.name!r}: kind 'event' is started by motion (trigger 'motion')")
            if self.roi != "full":
                raise ValueError(f"task {self.name!r}: roi 'motion' is not supported for kind 'event'")
            if self.preroll >= self.event_frames:
                raise ValueError(
                    f"task {self.name!r}: preroll must be less than frames ({self.event_frames})"
                )
        if self.roi == "motion" and (self.trigger != "motion" or self.kind not in ("caption", "structured")):
            raise ValueError(
                f"task {self.name!r}: roi 'motion' needs trigger 'motion' and kind caption or structured"
            )
        if self.zone is not None:
            if self.kind not in ("caption", "structured", "ask"):
                raise ValueError(f"task {self.name!r}: zone is for kinds caption, structured and ask")
            if self.roi != "full":
                raise ValueError(
                    f"task {self.name!r}: zone and roi 'motion' both set: a zone task describes its zone"
                )
        if self.topic is not None:
            # Each level follows the name rule: an override of "cmd/ask" would land in the commands.
            for level in self.topic.split("/"):
                try:
                    check_name(level)
                except ValueError as err:
                    raise ValueError(f"task {self.name!r}: topic {self.topic!r}: {err}") from None
        return self

    @property
    def event_frames(self) -> int:
        """Frames per event (kind event): `frames`, or the default."""
        return self.frames if self.frames is not None else DEFAULT_EVENT_FRAMES


def _default_tasks() -> list[TaskSettings]:
    return [TaskSettings(name="caption")]


class WatchdogSettings(Section):
    first_token_s: float = Field(120.0, gt=0, description="Prefill (incl. image) hard limit.")
    token_s: float = Field(10.0, gt=0, description="Hard limit between two tokens.")
    generation_s: float = Field(
        240.0, gt=0, description="Soft limit: the worker stops and returns a partial result."
    )
    total_s: float = Field(300.0, gt=0, description="Hard limit for a whole job (above generation_s).")
    max_restarts: int = Field(5, ge=1, description="Restarts within restart_window_s before 'degraded'.")
    restart_window_s: float = Field(600.0, gt=0)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    recycle_after_jobs: int = Field(1000, ge=0, description="Recycle the worker after N jobs (0: never).")
    max_rss_mb: float = Field(0, ge=0, description="Recycle the worker above this RSS (0: never).")
    load_timeout_s: float = Field(600.0, gt=0, description="Model load limit (minutes from an SD card).")

    @model_validator(mode="after")
    def _order(self) -> WatchdogSettings:
        if self.total_s <= self.generation_s:
            raise ValueError("watchdog.total_s must be greater than watchdog.generation_s")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("watchdog.backoff_max_s must be >= watchdog.backoff_initial_s")
        return self


class MqttSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    transport: Literal["tcp", "websockets"] = "tcp"
    ws_path: str = "/mqtt"
    tls: TLSSettings | None = None
    username: str | None = None
    password: SecretStr | None = Field(None, description="Or $CREDENTIALS_DIRECTORY/mqtt_password.")
    client_id: str | None = Field(None, description="Default: edge-{device_id}.")
    prefix: str = "edge"
    qos: int = Field(
        1,
        ge=0,
        le=1,
        description="Results, images, events: 1 = at-least-once (deleted on PUBACK); 0 = sent once.",
    )
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        "auto",
        description="auto: MQTT 5, falling back to 3.1.1 once if the broker does not speak 5."
        " '5' or '3.1.1' pins it: a broker refusing a pinned protocol is a config error.",
    )
    keepalive_s: int = Field(30, ge=5, le=3600)
    message_expiry_s: int = Field(86400, ge=0, description="0: results never expire.")
    outbox_path: Path | None = Field(None, description="Default: $STATE_DIRECTORY or ~/.local/state.")
    outbox_max_mb: float = Field(64.0, gt=0)
    max_command_bytes: int = Field(65536, ge=256, description="Larger commands are refused.")
    image_max_kb: int = Field(256, ge=8, description="JPEGs on {camera}/{task}/image are capped at this.")
    discovery: bool = False
    discovery_prefix: str = "homeassistant"

    _prefix = field_validator("prefix")(classmethod(lambda cls, v: _topic_level(v)))

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v:
            raise ValueError("empty: leave client_id unset for the default edge-{device_id}")
        return _mqtt_string(v, "client_id")

    @field_validator("discovery_prefix")
    @classmethod
    def _discovery_prefix(cls, v: str) -> str:
        if not v:
            raise ValueError("empty: Home Assistant listens on 'homeassistant'")
        if "+" in v or "#" in v:
            raise ValueError(f"{v!r} contains an MQTT wildcard ('+' or '#'): it is a topic to publish to")
        if any(not level for level in v.split("/")):
            raise ValueError(f"{v!r} has an empty topic level (a leading, trailing or double '/')")
        return _mqtt_string(v, "discovery_prefix")

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, float)) else v

    @model_validator(mode="after")
    def _auth(self) -> MqttSettings:
        if self.password is not None and not self.username:
            raise ValueError("mqtt.password is set but mqtt.username is not")
        return self


class SerialSettings(Section):
    gnss_port: str | None = None
    gnss_baud: int = 9600
    gnss_stale_s: float = Field(10.0, gt=0, description="A fix older than this is not reported.")
    trigger_port: str | None = None
    trigger_baud: int = 9600
    trigger_pattern: str = Field("^MOTION", description="Regex a line must match to fire.")
    trigger_task: str | None = Field(None, description="Task to fire (default: tasks with trigger 'serial').")
    sink_port: str | None = None
    sink_baud: int = 9600
    sink_max_bytes: int = Field(64, ge=8, le=1024, description="Text is cut to this many bytes.")
    sink_min_interval_s: float = Field(10.0, ge=0, description="Radio duty-cycle limit.")

    @field_validator("trigger_pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as err:
            raise ValueError(f"not a valid regular expression: {err}") from None
        return v


class HealthSettings(Section):
    interval_s: float = Field(60.0, gt=0, le=MAX_PERIOD_S)


class MetricsSettings(Section):
    """The optional Prometheus endpoint (the `metrics` extra): off unless `port` is set."""

    port: int | None = Field(None, ge=1, le=65535, description="Serve /metrics here; unset = off.")
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Listen address; anything but loopback exposes the (unauthenticated) endpoint.",
    )

    @property
    def loopback(self) -> bool:
        return is_loopback_host(self.host)


class Settings(BaseModel):
    """The whole configuration. Built by `edge.config.sources.load_settings`, which merges the layers.

    A plain model, not pydantic-settings' BaseSettings: the loader reads the environment itself (with
    provenance), so BaseSettings' own sources were switched off anyway, and importing it cost the
    daemon about 5 MB of RSS (asyncio, dotenv, its sources) for nothing. `validate_default` is what
    BaseSettings set: defaults (the hostname as device_id) go through the same checks as given values.
    """

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, coerce_numbers_to_str=True, validate_default=True
    )

    device_id: str = Field(default_factory=default_device_id)
    device_name: str | None = Field(
        None,
        description="The device's friendly name in Home Assistant (its device registry and discovery); "
        "default: the device_id. Only a label: topics and entity ids keep the device_id.",
    )
    profile: str | None = None
    cameras: list[CameraSettings] = Field(
        default_factory=lambda: [CameraSettings()],
        min_length=1,
        description="The cameras ([[cameras]]); [camera] is the one-camera shorthand for a list of one.",
    )
    gate: GateSettings = Field(default_factory=GateSettings)
    model: ModelSettings = Field(default_factory=OrtGenAIModelSettings)
    text_model: ModelSettings | None = None
    tasks: list[TaskSettings] = Field(default_factory=_default_tasks)
    watchdog: WatchdogSettings = Field(default_factory=WatchdogSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    serial: SerialSettings = Field(default_factory=SerialSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    link: LinkSettings = Field(default_factory=LinkSettings)
    power: PowerSettings = Field(default_factory=PowerSettings)
    alerts: list[AlertSettings] = Field(
        default_factory=list, description="[[alerts]] over structured answers."
    )

    _device = field_validator("device_id")(classmethod(lambda cls, v: topic_name(v)))

    @field_validator("device_name")
    @classmethod
    def _device_name(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not v.strip():
            raise ValueError("empty: leave device_name unset to use the device_id")
        if len(v) > 100:
            raise ValueError(f"{len(v)} characters; at most 100 (a label shown in Home Assistant)")
        return _mqtt_string(v, "device_name")

    @property
    def display_name(self) -> str:
        """`device_name`, or the device_id when none is set."""
        return self.device_name or self.device_id

    @model_validator(mode="before")
    @classmethod
    def _camera_shorthand(cls, data: Any) -> Any:
        """`[camera]` is `[[cameras]]` with one entry; giving both is an error naming both."""
        if isinstance(data, dict) and "camera" in data:
            if "cameras" in data:
                raise keyed_error(
                    ("camera",),
                    "camera and cameras are both set: use [[cameras]] for several cameras, "
                    "or [camera] alone as the one-camera shorthand",
                )
            data = {k: v for k, v in data.items() if k != "camera"} | {"cameras": [data["camera"]]}
        return data

    @model_validator(mode="after")
    def _tasks(self) -> Settings:
        cams = [c.name for c in self.cameras]
        dupes = sorted({n for n in cams if cams.count(n) > 1})
        if dupes:
            raise keyed_error(("cameras",), f"duplicate camera names: {', '.join(dupes)}")
        names = [t.name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate task names: {', '.join(dupes)}")
        for i, t in enumerate(self.tasks):
            if t.kind == "summarize" and t.source_task not in names:
                raise ValueError(f"task {t.name!r}: source_task {t.source_task!r} is not a task")
            if t.zone is not None:
                lacking = [
                    c.name for c in self.cameras if c.name in self.task_cameras(t) and c.zone(t.zone) is None
                ]
                if lacking:
                    raise keyed_error(
                        ("tasks", i, "zone"),
                        f"task {t.name!r}: no zone {t.zone!r} on camera {', '.join(map(repr, lacking))}",
                    )
            unknown = [c for c in t.cameras or () if c not in cams]
            if unknown:
                raise keyed_error(
                    ("tasks", i, "cameras"),
                    f"task {t.name!r}: no camera named {', '.join(map(repr, unknown))} "
                    f"(cameras: {', '.join(cams)})",
                )
        alert_names = [a.name for a in self.alerts]
        dupes = sorted({n for n in alert_names if alert_names.count(n) > 1})
        if dupes:
            raise keyed_error(("alerts",), f"duplicate alert names: {', '.join(dupes)}")
        for j, a in enumerate(self.alerts):
            task = self.task(a.task)
            if task is None or task.kind != "structured":
                raise keyed_error(
                    ("alerts", j, "task"),
                    f"alert {a.name!r}: {a.task!r} is not a structured task (alerts read JSON answers)",
                )
        return self

    @property
    def camera(self) -> CameraSettings:
        """The first camera: the default of cmd/capture and cmd/ask, and what one-shot tools open."""
        return self.cameras[0]

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def camera_settings(self, name: str) -> CameraSettings | None:
        return next((c for c in self.cameras if c.name == name), None)

    def task_cameras(self, task: TaskSettings) -> list[str]:
        """The cameras a task runs on, in the order of [[cameras]]."""
        names = self.camera_names
        return [n for n in names if n in task.cameras] if task.cameras else names

    def task(self, name: str) -> TaskSettings | None:
        return next((t for t in self.tasks if t.name == name), None)
