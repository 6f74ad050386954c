"""Structured output: a JSON schema in, parsed `data` or a one-line `schema_error` out.

Constrained decoding (ORT GenAI guidance, OpenVINO StructuredOutputConfig) is used where the runtime
has it, but the answer is always extracted and validated here afterwards: a constrained run can still
stop inside the JSON when max_new_tokens or the deadline hits, and an unconstrained one (a provider
without guidance) returns prose around the JSON. A consumer gets the same guarantee either way.

The validator covers the JSON-schema subset edge tasks use (type, properties, required,
additionalProperties, items, enum, const, min/max bounds, lengths, pattern, anyOf/oneOf/allOf); other
keywords are ignored, not rejected, as the spec allows.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_DECODER = json.JSONDecoder()
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def schema_text(schema: dict[str, Any]) -> str:
    """The schema as compact JSON: what guidance APIs and prompts take."""
    return json.dumps(schema, separators=(",", ":"), sort_keys=False)


class Guidance:
    """Constrained decoding per schema: a schema the runtime refuses is remembered and run
    unconstrained from then on (validated afterwards, as always), while every other schema keeps its
    guidance. One bad schema must not turn guidance off for the life of the worker.

    Schemas come from the configured tasks, so the set of refused ones stays small.
    """

    def __init__(self, what: str = "JSON guidance") -> None:
        self._what = what
        self._refused: set[str] = set()
        self._lock = threading.Lock()

    def apply(self, schema: dict[str, Any], set_guidance: Callable[[str], None]) -> bool:
        """Call `set_guidance(schema_text)`; False (logged once per schema) when the runtime refuses it."""
        text = schema_text(schema)
        with self._lock:
            if text in self._refused:
                return False
        try:
            set_guidance(text)
        except Exception as err:  # older builds, or a schema this runtime's grammar cannot take
            with self._lock:
                self._refused.add(text)
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            log.warning(
                "%s refused for schema %.80s; validating after generation: %s", self._what, text, reason
            )
            return False
        return True


def schema_prompt(prompt: str, schema: dict[str, Any]) -> str:
    """The task prompt plus the schema, so a model that is not constrained still knows the shape."""
    return f"{prompt}\nAnswer with only a JSON value that matches this JSON schema:\n{schema_text(schema)}"


def extract_json(text: str) -> Any:
    """The first complete JSON object or array in `text` (fenced block preferred); ValueError if none."""
    for block in _FENCE.findall(text):
        try:
            return _first_value(block)
        except ValueError:
            continue
    return _first_value(text)


def _first_value(text: str) -> Any:
    start = 0
    saw_open = False
    while True:
        positions = [p for p in (text.find("{", start), text.find("[", start)) if p >= 0]
        if not positions:
            break
        pos = min(positions)
        saw_open = True
        try:
            value, _end = _DECODER.raw_decode(text, pos)
            return value
        except json.JSONDecodeError:
            start = pos + 1
    if saw_open:
        raise ValueError("no complete JSON value in the output (cut off by the token budget?)")
    raise ValueError("no JSON object or array in the output")


def _type_ok(value: Any, name: str) -> bool:
    if name == "integer":
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            or (isinstance(value, float) and value.is_integer())
        )
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = _TYPES.get(name)
    return expected is not None and isinstance(value, expected)


def _where(path: str) -> str:
    return path or "$"


def validate(value: Any, schema: Any, path: str = "") -> list[str]:
    """Errors of `value` against `schema` (empty list: valid). Each error names its JSON path."""
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{_where(path)}: not allowed"]
    if not isinstance(schema, dict):
        return []
    errors: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        names = kind if isinstance(kind, list) else [kind]
        if not any(_type_ok(value, n) for n in names):
            return [f"{_where(path)}: expected {' or '.join(names)}, got {_json_type(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{_where(path)}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{_where(path)}: must be {schema['const']!r}")
    if isinstance(value, dict):
        errors += _object(value, schema, path)
    elif isinstance(value, list):
        errors += _array(value, schema, path)
    elif isinstance(value, str):
        errors += _string(value, schema, path)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        errors += _number(value, schema, path)
    for sub in schema.get("allOf", []):
        errors += validate(value, sub, path)
    if "anyOf" in schema and not any(not validate(value, s, path) for s in schema["anyOf"]):
        errors.append(f"{_where(path)}: matches none of anyOf")
    if "oneOf" in schema:
        matches = sum(1 for s in schema["oneOf"] if not validate(value, s, path))
        if matches != 1:
            errors.append(f"{_where(path)}: matches {matches} of oneOf, expected exactly 1")
    return errors


def _json_type(value: Any) -> str:
    for name, typ in _TYPES.items():
        if isinstance(value, typ):
            return name
    if isinstance(value, bool):
        return "boolean"
    return "integer" if isinstance(value, int) else "number"


def _object(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    props = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in value:
            errors.append(f"{_where(path)}: missing required property {key!r}")
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        sub = f"{path}.{key}" if path else key
        if key in props:
            errors += validate(item, props[key], sub)
        elif extra is False:
            errors.append(f"{_where(path)}: unexpected property {key!r}")
        elif isinstance(extra, dict):
            errors += validate(item, extra, sub)
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(f"{_where(path)}: fewer than {schema['minProperties']} properties")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(f"{_where(path)}: more than {schema['maxProperties']} properties")
    return errors


def _array(value: list[Any], schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{_where(path)}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{_where(path)}: more than {schema['maxItems']} items")
    items = schema.get("items")
    if isinstance(items, (dict, bool)):
        for i, item in enumerate(value):
            errors += validate(item, items, f"{path}[{i}]")
    if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
        errors.append(f"{_where(path)}: items are not unique")
    return errors


def _string(value: str, schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{_where(path)}: shorter than {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{_where(path)}: longer than {schema['maxLength']} characters")
    if "pattern" in schema:
        try:
            if not re.search(schema["pattern"], value):
                errors.append(f"{_where(path)}: does not match pattern {schema['pattern']!r}")
        except re.error:
            pass  # an unsupported regex dialect is the schema's problem, not the answer's
    return errors


def _number(value: float, schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{_where(path)}: {value} is below minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{_where(path)}: {value} is above maximum {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        errors.append(f"{_where(path)}: {value} is not above {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        errors.append(f"{_where(path)}: {value} is not below {schema['exclusiveMaximum']}")
    return errors


def parse(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | list[Any] | None, str | None]:
    """(data, None) when `text` holds a JSON object/array valid against `schema`, else (None, why).

    The error is one line: the first few validation errors, joined.
    """
    try:
        value = extract_json(text)
    except ValueError as err:
        return None, str(err)
    errors = validate(value, schema)
    if errors:
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        return None, "; ".join(errors[:3]) + more
    return value, None
