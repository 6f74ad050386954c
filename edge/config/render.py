"""`edge config show`: the effective settings as TOML, each value annotated with where it came from."""

from __future__ import annotations

from typing import Any

import tomli_w

from edge.config.sources import LoadedSettings

REDACTED = "**********"
SECRET_KEYS = {("mqtt", "password"), ("mqtt", "tls", "key_password")}


def _value(v: Any) -> str:
    """One-line TOML for a value (inline arrays and tables, so the source comment fits after it)."""
    if isinstance(v, dict):  # TOML has no null: an unset key inside (a fallback entry's) is left out
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return tomli_w.dumps({"v": v}).strip()[len("v = ") :]


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else tomli_w.dumps({k: 0}).split(" = ")[0]


def _emit_table(out: list[str], loaded: LoadedSettings, path: tuple[str, ...], table: dict[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) or k == "provider_options"}
    for k, v in scalars.items():
        key = (*path, k)
        origin = loaded.origin(key)
        if key in SECRET_KEYS and v is not None:
            v = REDACTED
        if v is None:
            out.append(f"# {k} = (unset)  # {origin}")
        else:
            out.append(f"{k} = {_value(v)}  # {origin}")
    for k, v in table.items():
        if isinstance(v, dict) and k != "provider_options":
            out.append("")
            out.append(f"[{'.'.join((*path, k))}]")
            _emit_table(out, loaded, (*path, k), v)


def render(loaded: LoadedSettings) -> str:
    data = loaded.settings.model_dump(mode="json", by_alias=True)
    tasks = data.pop("tasks")
    cameras = data.pop("cameras")
    out = [f"# effective settings; config file: {loaded.config_file or '(none)'}"]
    _emit_table(out, loaded, (), data)
    # [camera] (the one-camera shorthand) is shown as the list of one it stands for, each key with
    # its own source; a [[cameras]] list has one source.
    shorthand = ("cameras",) not in loaded.origins
    for camera in cameras:
        out.append("")
        out.append("[[cameras]]" + ("" if shorthand else f"  # {loaded.origin(('cameras',))}"))
        for k, v in camera.items():
            note = f"  # {loaded.origin(('camera', k))}" if shorthand else ""
            out.append(f"# {k} = (unset){note}" if v is None else f"{k} = {_value(v)}{note}")
    origin = loaded.origin(("tasks",))
    for task in tasks:
        out.append("")
        out.append(f"[[tasks]]  # {origin}")
        for k, v in task.items():
            if v is None:
                continue
            out.append(f"{k} = {_value(v)}")
    return "\n".join(out) + "\n"
