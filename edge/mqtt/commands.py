"""Inbound commands on `{prefix}/{device}/cmd/{verb}`: parse, validate, dispatch, reply.

Everything here runs in paho's network thread, so nothing may block and nothing may raise: every bad
input (malformed JSON, unknown verb, unknown key, wrong type, oversized or retained payload) becomes
an error reply and one log line. Valid commands go to a `CommandHandler` that the runtime
implements; it queues work (a model job, a settings change) and answers later through the `Reply`
it was given, from any thread.

Replies go to the MQTT 5 response topic with the request's correlation data when there is one, else
to `reply/{verb}`, as a `CommandReply` {ok, error?, result?}. A response topic the device must not
publish to (inside its own `{prefix}/{device_id}/#`: status, results, `cmd/#`...; Home Assistant's
discovery topics; another device's commands; any wildcard: `Topics.refuse_response_topic`) is refused
with one log line, and the command is still carried out and answered on `reply/{verb}`, with its
correlation data: the requester learns of the outcome in the documented place, and nothing a consumer
trusts, nor anything the daemon reads as a command, ever carries a reply.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import paho.mqtt.client as paho
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from edge.config.settings import GateSettings, TaskSettings
from edge.core.messages import CommandReply
from edge.core.names import is_topic_safe
from edge.mqtt.client import MqttClient
from edge.mqtt.topics import COMMAND_VERBS, Topics

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 4000


# --------------------------------------------------------------------------- validated commands


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class AskCommand(_Body):
    """cmd/ask: a question about the current frame (`image`, the default) or text only."""

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    task: str | None = None
    image: bool = True
    camera: str | None = None  # default: the first camera


class CaptureCommand(_Body):
    """cmd/capture: run a task (default: the first caption task) on the current frame now."""

    task: str | None = None
    camera: str | None = None  # default: the first camera the task runs on


class _Empty(_Body):
    """pause, resume, reload take no arguments (an empty payload or {})."""


@dataclass(frozen=True)
class SetCommand:
    """cmd/set: validated runtime keys and values, e.g. {"gate.cooldown_s": 5.0}."""

    values: dict[str, Any]


def _field_type(model: type[BaseModel], name: str, base: type) -> TypeAdapter[Any]:
    """The settings field's own constraints (ge, le, gt, ...), in strict mode: one source of truth."""
    info = model.model_fields[name]
    params = (base, *info.metadata)
    return TypeAdapter(Annotated[params], config=ConfigDict(strict=True))  # type: ignore[arg-type]


_PROMPT = TypeAdapter(
    Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)], config=ConfigDict(strict=True)
)
GATE_SETTABLE = ("motion_threshold", "min_interval_s", "max_interval_s", "cooldown_s")
_GATE_KEYS = {k: _field_type(GateSettings, k, float) for k in GATE_SETTABLE}
_TASK_KEYS = {"prompt": _PROMPT, "interval_s": _field_type(TaskSettings, "interval_s", float)}
_TASK_KEY = re.compile(r"tasks\.([^.]+)\.([a-z_]+)")
SETTABLE_KEYS = (
    *(f"gate.{k}" for k in _GATE_KEYS),
    *(f"tasks.<name>.{k}" for k in _TASK_KEYS),
    "paused",
)


# --------------------------------------------------------------------------- replies


@dataclass
class Reply:
    """Answers one command, once, from any thread."""

    verb: str
    topic: str
    correlation_data: bytes | None
    _send: Callable[[Reply, CommandReply], None]
    _sent: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, result: dict[str, Any] | None = None) -> None:
        self._deliver(CommandReply(ok=True, result=result))

    def error(self, message: str) -> None:
        self._deliver(CommandReply(ok=False, error=message))

    def _deliver(self, reply: CommandReply) -> None:
        with self._lock:
            if self._sent:
                log.warning("command %s answered twice; second reply ignored", self.verb)
                return
            self._sent = True
        self._send(self, reply)


class CommandHandler(Protocol):
    """Implemented by the runtime. Must return quickly: queue the work, reply when it is done."""

    def on_ask(self, cmd: AskCommand, reply: Reply) -> None: ...
    def on_capture(self, cmd: CaptureCommand, reply: Reply) -> None: ...
    def on_pause(self, reply: Reply) -> None: ...
    def on_resume(self, reply: Reply) -> None: ...
    def on_set(self, cmd: SetCommand, reply: Reply) -> None: ...
    def on_reload(self, reply: Reply) -> None: ...


class CommandError(ValueError):
    """A command that is refused; the message is the reply's `error`."""


# --------------------------------------------------------------------------- parsing


def parse_json_object(payload: bytes) -> dict[str, Any]:
    if not payload.strip():
        return {}
    try:
        value = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise CommandError("payload is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise CommandError(f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:  # e.g. 32k nested brackets, well within the size limit
        raise CommandError("malformed JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise CommandError(f"payload must be a JSON object, not {type(value).__name__}")
    return value


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if e["type"] == "missing":
        return f"missing key {where!r}"
    return f"{where}: {e['msg']}" if where else str(e["msg"])


def parse_set(body: dict[str, Any], task_names: Collection[str] | None) -> SetCommand:
    if not body:
        raise CommandError('set needs at least one key, e.g. {"gate.cooldown_s": 5}')
    values: dict[str, Any] = {}
    for key, raw in body.items():
        adapter: TypeAdapter[Any] | None = None
        if key == "paused":
            adapter = TypeAdapter(bool, config=ConfigDict(strict=True))
        elif key.startswith("gate."):
            adapter = _GATE_KEYS.get(key[5:])
        elif (m := _TASK_KEY.fullmatch(key)) and is_topic_safe(m.group(1)):
            name, attr = m.groups()
            adapter = _TASK_KEYS.get(attr)
            if adapter is not None and task_names is not None and name not in task_names:
                raise CommandError(f"unknown task {name!r} in {key!r}")
        if adapter is None:
            raise CommandError(f"unknown key {key!r}; settable: {', '.join(SETTABLE_KEYS)}")
        try:
            values[key] = adapter.validate_python(raw)
        except ValidationError as err:
            raise CommandError(f"{key}: {err.errors()[0]['msg']}") from None
    if "paused" in values and len(values) > 1:
        raise CommandError("'paused' cannot be combined with other keys")
    return SetCommand(values)


# --------------------------------------------------------------------------- the router


class CommandRouter:
    """Subscribes to `cmd/#` through the client and turns messages into handler calls."""

    def __init__(
        self,
        client: MqttClient,
        topics: Topics,
        handler: CommandHandler,
        *,
        max_bytes: int = 65536,
        task_names: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self.client = client
        self.topics = topics
        self.handler = handler
        self.max_bytes = max_bytes
        self.task_names = task_names
        self.received = 0
        self.rejected = 0
        self.refused_response_topics = 0
        client.subscribe(topics.command_filter, self.handle)

    def handle(self, msg: paho.MQTTMessage) -> None:
        """paho's thread. Never raises."""
        verb = self.topics.parse_command(msg.topic)
        if verb is None:
            return  # deeper than cmd/{verb}: not a command
        if not is_topic_safe(verb):  # e.g. cmd/a b: no reply/{verb} topic can name it
            self.rejected += 1
            log.warning("command refused: %r is not a command verb; no reply", verb[:100])
            return
        props = msg.properties
        response_topic = getattr(props, "ResponseTopic", None)
        if response_topic and (why := self.topics.refuse_response_topic(verb, response_topic)):
            self.refused_response_topics += 1
            log.warning(
                "command %s: response topic %r refused (%s); replying on %s",
                verb,
                response_topic[:200],
                why,
                self.topics.reply(verb),
            )
        reply = Reply(
            verb=verb,
            topic=self.topics.reply_to(verb, response_topic),
            correlation_data=getattr(props, "CorrelationData", None),
            _send=self._send_reply,
        )
        self.received += 1
        try:
            self._dispatch(verb, msg, reply)
        except CommandError as err:
            self.rejected += 1
            log.warning("command %s refused: %s", verb, err)
            reply.error(str(err))
        except Exception as err:
            self.rejected += 1
            log.exception("command %s failed in its handler", verb)
            reply.error(f"internal error: {type(err).__name__}")

    def _dispatch(self, verb: str, msg: paho.MQTTMessage, reply: Reply) -> None:
        if msg.retain:
            raise CommandError("retained commands are ignored (publish commands without the retain flag)")
        if len(msg.payload) > self.max_bytes:
            raise CommandError(f"payload too large: {len(msg.payload)} bytes (limit {self.max_bytes})")
        if verb not in COMMAND_VERBS:
            raise CommandError(f"unknown command {verb!r}; known: {', '.join(COMMAND_VERBS)}")
        body = parse_json_object(bytes(msg.payload))
        names = self.task_names() if self.task_names else None
        try:
            if verb == "ask":
                ask = AskCommand.model_validate(body)
                self._check_task(ask.task, names)
                self.handler.on_ask(ask, reply)
            elif verb == "capture":
                cap = CaptureCommand.model_validate(body)
                self._check_task(cap.task, names)
                self.handler.on_capture(cap, reply)
            elif verb == "set":
                cmd = parse_set(body, names)
                if "paused" in cmd.values:
                    (self.handler.on_pause if cmd.values["paused"] else self.handler.on_resume)(reply)
                else:
                    self.handler.on_set(cmd, reply)
            else:
                _Empty.model_validate(body)
                if verb == "pause":
                    self.handler.on_pause(reply)
                elif verb == "resume":
                    self.handler.on_resume(reply)
                else:
                    self.handler.on_reload(reply)
        except ValidationError as err:
            raise CommandError(_first_error(err)) from None

    @staticmethod
    def _check_task(task: str | None, names: Collection[str] | None) -> None:
        if task is not None and names is not None and task not in names:
            raise CommandError(f"unknown task {task!r}; tasks: {', '.join(sorted(names))}")

    def _send_reply(self, reply: Reply, payload: CommandReply) -> None:
        props = self.client.properties(
            content_type="application/json", correlation_data=reply.correlation_data
        )
        try:
            self.client.publish(
                reply.topic, payload.model_dump_json(exclude_none=True), qos=1, properties=props
            )
        except ValueError as err:  # e.g. a response topic with wildcards
            log.warning("cannot reply to %s on %r: %s", reply.verb, reply.topic, err)
