"""Layered settings loading with provenance:
defaults < profile < file < drop-ins (conf.d/*.toml) < credentials < env < CLI.

Every leaf value remembers the layer it came from, so `edge config show` can print it and every
validation error can name the key and the file or variable that set it. Reading files and the
environment happens here, explicitly, never at import or inside validation.

Layers merge key by key, with one exception: a layer that changes a model section's `backend`
(`model`, `text_model`) starts that section over for the new runtime. The earlier layers' keys the
new backend does not have are dropped (a profile's `providers` and `path` under a config file's
`backend = "http"`); the keys it has stay (the shared ones such as max_new_tokens and fallback, and
between the two local runtimes also path, providers, threads and num_crops). A key of another backend
set in the same layer as `backend`, or in a later one, is still an error that names it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from edge.assets import PACKAGE_PREFIX, package_file
from edge.config.model_settings import DEFAULT_BACKEND, SECTIONS, backends_with
from edge.config.settings import KEYED_ERROR, Settings
from edge.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

ENV_PREFIX = "EDGE_"
# Variables that steer loading, logging or `edge bench`'s per-token log (token_clock.py), not settings keys.
ENV_RESERVED = {"EDGE_CONFIG", "EDGE_LOG_LEVEL", "EDGE_LOG_FORMAT", "EDGE_BENCH_TOKEN_TIMES"}
DEFAULT_CONFIG = Path("/etc/edge/edge.toml")
DROPIN_DIR = "conf.d"  # beside the config file (/etc/edge/conf.d without one): *.toml in name order
# Paths given in a TOML file are relative to that file, so a profile or config can ship beside its model.
# In any layer a path may instead start with "package:" to name a file shipped inside the installed
# edge package (e.g. the demo model: "package:assets/models/demo-ort"), wherever it is installed.
PATH_KEYS = {
    ("model", "path"),
    ("model", "cache_dir"),
    ("text_model", "path"),
    ("text_model", "cache_dir"),
    ("mqtt", "tls", "ca"),
    ("mqtt", "tls", "cert"),
    ("mqtt", "tls", "key"),
    ("mqtt", "outbox_path"),
    *((sec, "tls", k) for sec in ("model", "text_model") for k in ("ca", "cert", "key")),
}
MODEL_SECTIONS = ("model", "text_model")
CREDENTIALS = {
    "mqtt_password": ("mqtt", "password"),
    "mqtt_tls_key_password": ("mqtt", "tls", "key_password"),
}


ADMIN_PROFILES = Path("/etc/edge/devices")


def profile_dirs() -> list[Path]:
    """Where `profile = NAME` is looked up: /etc/edge/devices first (the admin's), then the shipped
    ones (package data, edge/config/profiles: in a checkout a symlink to the top-level devices/, the
    one place a profile is written; a wheel carries the files)."""
    return [ADMIN_PROFILES, package_file("config/profiles")]


@dataclass(frozen=True)
class Layer:
    """One source's values as a nested dict, and the label each of its values is reported under."""

    label: str
    values: dict[str, Any]
    origins: dict[tuple[str, ...], str] = field(default_factory=dict)  # per-key label override


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    origins: dict[tuple[str, ...], str]  # key path -> where its value came from
    config_file: Path | None

    def origin(self, path: tuple[str, ...]) -> str:
        for n in range(len(path), 0, -1):
            if path[:n] in self.origins:
                return self.origins[path[:n]]
        return "default"


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"{what} {path}: invalid TOML: {err}"]) from None
    except UnicodeDecodeError as err:  # TOML is UTF-8 (a file saved as Latin-1 or UTF-16)
        raise ConfigError([f"{what} {path}: not UTF-8 text (byte {err.start}: {err.reason})"]) from None
    except RecursionError:
        raise ConfigError([f"{what} {path}: invalid TOML: nested too deeply"]) from None
    except OSError as err:
        raise ConfigError([f"{what} {path}: cannot read: {err.strerror}"]) from None
    _resolve_paths(data, path.parent, f"{what} {path}")
    return data


def _resolve_paths(
    data: dict[str, Any], base: Path | None, label: str, origins: Mapping[tuple[str, ...], str] | None = None
) -> None:
    """Make the path keys absolute: "package:..." inside the installed package; else relative to
    `base` (a TOML file's folder; None for the environment and --set, which stay as given)."""
    for keys in PATH_KEYS:
        node: Any = data
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if not (isinstance(node, dict) and isinstance(node.get(keys[-1]), str)):
            continue
        value: str = node[keys[-1]]
        if value.startswith(PACKAGE_PREFIX):
            where = (origins or {}).get(keys, label)
            node[keys[-1]] = str(_package_path(value, ".".join(keys), where))
            continue
        p = Path(value).expanduser()
        if base is not None and not p.is_absolute():
            node[keys[-1]] = str((base / p).resolve())
    for section in ("model", "text_model"):  # a chain's endpoints have the same path keys
        chain = data.get(section, {}).get("fallback") if isinstance(data.get(section), dict) else None
        for entry in chain if isinstance(chain, list) else []:
            if isinstance(entry, dict):
                _resolve_paths({"model": entry}, base, label)


def _package_path(value: str, key: str, label: str) -> Path:
    relative = value[len(PACKAGE_PREFIX) :]
    try:
        path = package_file(relative)
    except FileNotFoundError as err:
        raise ConfigError([f"{key}: {value!r} (from {label}): {err}"]) from None
    if not relative.strip("/") or not path.exists():
        raise ConfigError([f"{key}: {value!r} (from {label}): no {path} in the installed edge package"])
    return path


def _parse_scalar(raw: str) -> Any:
    """`--set` values are TOML (numbers, booleans, quoted strings, arrays, inline tables); else a bare string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _put(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for k in path[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            nxt = node[k] = {}
        node = nxt
    node[path[-1]] = value


def env_layer(environ: Mapping[str, str]) -> Layer:
    values: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in ENV_RESERVED:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if not all(path):
            raise ConfigError([f"{name}: malformed variable name (use EDGE_SECTION__KEY)"])
        raw = environ[name]
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as err:
                raise ConfigError([f"{'.'.join(path)}: invalid JSON in env {name}: {err.msg}"]) from None
        _put(values, path, value)
        origins[path] = f"env {name}"
    return Layer("env", values, origins)


def cli_layer(assignments: list[str]) -> Layer:
    values: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        path = tuple(key.strip().split("."))
        if not sep or not all(path):
            raise ConfigError([f"--set {item!r}: expected key=value, e.g. --set mqtt.host=broker.lan"])
        _put(values, path, _parse_scalar(raw.strip()))
        origins[path] = f"--set {key.strip()}"
    return Layer("cli", values, origins)


def credentials_layer(environ: Mapping[str, str]) -> Layer:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    values: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    if not directory:
        return Layer("credentials", values, origins)
    for filename, path in CREDENTIALS.items():
        f = Path(directory) / filename
        if f.is_file():
            try:
                secret = f.read_text(encoding="utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise ConfigError([f"{'.'.join(path)}: credential {f} is not UTF-8 text"]) from None
            except OSError as err:
                raise ConfigError([f"{'.'.join(path)}: cannot read credential {f}: {err.strerror}"]) from None
            _put(values, path, secret)
            origins[path] = f"credential {f}"
    return Layer("credentials", values, origins)


def _leaf_paths(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(tree, dict) and (tree or not prefix):
        out: list[tuple[str, ...]] = []
        for k, v in tree.items():
            out.extend(_leaf_paths(v, (*prefix, str(k))))
        return out
    return [prefix]


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict) and k != "provider_options":
            _merge(dst[k], v)
        else:
            dst[k] = v


def _split_task_changes(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`tasks.NAME.KEY` (--set, EDGE_TASKS__NAME__KEY) changes one task of the list; a `tasks`
    list replaces the whole list as before. The same addressing as MQTT's cmd/set."""
    tasks = values.get("tasks")
    if not isinstance(tasks, dict):
        return values, None
    return {k: v for k, v in values.items() if k != "tasks"}, tasks


def _change_tasks(
    merged: dict[str, Any], changes: dict[str, Any], layer: Layer, origins: dict[tuple[str, ...], str]
) -> None:
    from edge.config.settings import Settings

    current = merged.get("tasks")
    if current is None:  # the default task list, as plain dicts so that the change merges in
        default: list[Any] = Settings.model_fields["tasks"].get_default(call_default_factory=True)
        current = [t.model_dump(exclude_defaults=True) | {"name": t.name} for t in default]
    names = [t.get("name") for t in current if isinstance(t, dict)]
    updated = [dict(t) if isinstance(t, dict) else t for t in current]
    for name, change in changes.items():
        where = next((o for p, o in layer.origins.items() if p[:2] == ("tasks", name)), layer.label)
        if name not in names:
            raise ConfigError(
                [f"tasks.{name} ({where}): no task named {name!r} (tasks: {', '.join(map(str, names))})"]
            )
        if not isinstance(change, dict):
            raise ConfigError(
                [f"tasks.{name} ({where}): set one key of the task, e.g. tasks.{name}.interval_s=30"]
            )
        task = updated[names.index(name)]
        _merge(task, change)
        for path in _leaf_paths(change):
            key = ("tasks", name, *path)
            origins[key] = layer.origins.get(key, where)
    merged["tasks"] = updated


def _switch_backend(
    merged: dict[str, Any], values: dict[str, Any], origins: dict[tuple[str, ...], str]
) -> None:
    """Before `values` merge in: where they change a model section's backend, drop from the merged
    earlier layers the keys that the new backend's section does not have, and their origins."""
    for section in MODEL_SECTIONS:
        before, after = merged.get(section), values.get(section)
        if not (isinstance(before, dict) and isinstance(after, dict)) or "backend" not in after:
            continue
        new = after["backend"]
        cls = SECTIONS.get(new) if isinstance(new, str) else None
        if cls is None or before.get("backend", DEFAULT_BACKEND) == new:
            continue  # an unknown backend is reported by validation, with every key still in place
        for key in [k for k in before if k not in cls.model_fields]:
            del before[key]
            for path in [p for p in origins if p[:2] == (section, key)]:
                del origins[path]


def _lookup(tree: dict[str, Any], key: str) -> Any:
    return tree.get(key) if isinstance(tree, dict) else None


def load_settings(
    config: Path | None = None,
    profile: str | None = None,
    overrides: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Build the effective Settings. Raises ConfigError with one line per problem."""
    environ = os.environ if environ is None else environ
    cli = cli_layer(list(overrides or []))
    if profile is not None:
        _put(cli.values, ("profile",), profile)
        cli.origins[("profile",)] = "--profile"
    env = env_layer(environ)
    creds = credentials_layer(environ)
    for layer in (env, cli):
        _resolve_paths(layer.values, None, layer.label, layer.origins)

    config_file: Path | None
    if config is not None:
        config_file = config
    elif environ.get("EDGE_CONFIG"):
        config_file = Path(environ["EDGE_CONFIG"])
    else:
        config_file = DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None
    layers: list[Layer] = []
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError([f"config file {config_file}: not found"])
        layers.append(Layer(f"{config_file}", _read_toml(config_file, "config file")))
    for dropin in dropin_files(config_file):
        layers.append(Layer(f"drop-in {dropin}", _read_toml(dropin, "drop-in")))
    layers += [creds, env, cli]

    profile_name = next(
        (v for layer in reversed(layers) if (v := _lookup(layer.values, "profile")) is not None), None
    )
    if profile_name is not None:
        layers.insert(0, _profile_layer(str(profile_name)))

    merged: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for layer in layers:
        values, task_changes = _split_task_changes(layer.values)
        _switch_backend(merged, values, origins)
        _merge(merged, values)
        for path in _leaf_paths(values):
            # A whole list (tasks, cameras, providers) is replaced by the higher layer: one origin.
            key = path[:1] if path and path[0] in ("tasks", "cameras") else path
            origins = {p: o for p, o in origins.items() if p[: len(key)] != key}
            origins[key] = layer.origins.get(key, layer.origins.get(path, layer.label))
        if task_changes:
            _change_tasks(merged, task_changes, layer, origins)
    _cameras(merged, origins, layers)
    try:
        settings = Settings(**merged)
    except ValidationError as err:
        raise ConfigError(_explain(err, origins, shorthand="camera" in merged)) from None
    except TypeError as err:  # e.g. a section given as a plain value: [mqtt] replaced by mqtt = 3
        raise ConfigError([f"settings: {err}"]) from None
    return LoadedSettings(settings=settings, origins=origins, config_file=config_file)


def dropin_dir(config_file: Path | None) -> Path:
    """Where drop-ins are read from: conf.d beside the config file, else /etc/edge/conf.d."""
    return (config_file.parent if config_file is not None else DEFAULT_CONFIG.parent) / DROPIN_DIR


def dropin_files(config_file: Path | None) -> list[Path]:
    """The drop-ins merged after the config file, in name order (10-x.toml before 50-bench.toml);
    hidden files and editor leftovers (not ending in .toml) are skipped."""
    d = dropin_dir(config_file)
    try:
        return sorted(
            p for p in d.iterdir() if p.suffix == ".toml" and not p.name.startswith(".") and p.is_file()
        )
    except FileNotFoundError:
        return []
    except OSError as err:
        raise ConfigError([f"drop-in directory {d}: cannot read: {err.strerror}"]) from None


def _cameras(merged: dict[str, Any], origins: dict[tuple[str, ...], str], layers: list[Layer]) -> None:
    """`[camera]` and `[[cameras]]`. A profile's `[camera]` (the board's usual camera settings) gives
    the defaults of each `[[cameras]]` entry, and a drop-in's `[camera]` (e.g. `edge bench --choose`
    writing max_edge) overrides those keys in each entry; never the name or source. Both set in any
    other layer is an error naming both keys and where each came from."""
    if "camera" not in merged or "cameras" not in merged:
        return

    def kind(layer: Layer) -> str:
        return (
            "profile"
            if layer.label.startswith("profile ")
            else ("dropin" if layer.label.startswith("drop-in ") else "")
        )

    with_camera = [layer for layer in layers if "camera" in layer.values]
    if any(not kind(layer) for layer in with_camera) or not isinstance(merged["cameras"], list):
        camera = sorted({o for p, o in origins.items() if p[:1] == ("camera",)})
        raise ConfigError(
            [
                f"camera: camera (from {', '.join(camera)}) and cameras (from "
                f"{origins.get(('cameras',), 'defaults')}) are both set: use [[cameras]] for several "
                "cameras, or [camera] alone as the one-camera shorthand"
            ]
        )
    parts: dict[str, dict[str, Any]] = {"profile": {}, "dropin": {}}
    for layer in with_camera:
        section = layer.values["camera"]
        if isinstance(section, dict):
            parts[kind(layer)].update({k: v for k, v in section.items() if k not in ("name", "source")})
    merged.pop("camera")
    merged["cameras"] = [
        {**parts["profile"], **c, **parts["dropin"]} if isinstance(c, dict) else c for c in merged["cameras"]
    ]
    for path in [p for p in origins if p[:1] == ("camera",)]:
        del origins[path]


def _profile_layer(name: str) -> Layer:
    if not name or "/" in name or name.startswith("."):
        raise ConfigError([f"profile: invalid profile name {name!r}"])
    for d in profile_dirs():
        path = d / f"{name}.toml"
        if path.is_file():
            data = _read_toml(path, "profile")
            data.pop("profile", None)
            return Layer(f"profile {path}", data)
    known = sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.toml")})
    raise ConfigError(
        [f"profile: no profile {name!r} in {', '.join(map(str, profile_dirs()))} (known: {', '.join(known)})"]
    )


def _explain(
    err: ValidationError, origins: dict[tuple[str, ...], str], *, shorthand: bool = False
) -> list[str]:
    lines = []
    for e in err.errors():
        loc, backend = _untag(tuple(str(p) for p in e["loc"]))
        if e["type"] == "union_tag_invalid":  # a model section's backend (the only tagged union)
            loc = (*loc, "backend")
        if e["type"] == KEYED_ERROR:  # a cross-field check that knows the key at fault
            loc = tuple(str((e.get("ctx") or {}).get("loc", "")).split("."))
        if shorthand and loc[:2] == ("cameras", "0"):  # [camera] is reported as what the user wrote
            loc = ("camera", *loc[2:])
        key = ".".join(loc) or "settings"
        # a key missing from a model section was never set: the section's sources are the ones to fix
        sources = _sources_for(loc[:-1] if e["type"] == "missing" and backend else loc, origins)
        if (words := _backend_words(e, loc, backend)) is not None:
            msg = words
        elif e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == KEYED_ERROR:
            msg = str((e.get("ctx") or {}).get("message", e["msg"]))
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], (dict, list)):
                shown = "**********" if "password" in key else repr(e["input"])
                msg += f" (got {shown})"
        lines.append(f"{key}: {msg} (from {sources})")
    return lines


def _backend_words(e: ErrorDetails, loc: tuple[str, ...], backend: str | None) -> str | None:
    """What a model section's backend says about an error in it: a key of another backend, a key the
    backend needs, a backend that does not exist; None for every other error."""
    if e["type"] == "union_tag_invalid":
        ctx = e.get("ctx") or {}
        return f"must be one of {ctx.get('expected_tags')} (got {ctx.get('tag')!r})"
    if backend is None:
        return None
    if e["type"] == "extra_forbidden":
        others = [b for b in backends_with(loc[-1]) if b != backend]
        return (
            f"not a setting of backend {backend!r} (it belongs to {' and '.join(map(repr, others))})"
            if others
            else None
        )
    if e["type"] == "missing":
        field = SECTIONS[backend].model_fields.get(loc[-1])
        what = ((field.description if field else None) or "").rstrip(".")
        return f"backend {backend!r} needs {loc[-1]}" + (f" ({what[:1].lower()}{what[1:]})" if what else "")
    return None


def _untag(loc: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    """The location without the union's tags (`model.http.url` is `model.url`), and the backend of the
    innermost model section it is in (None outside one)."""
    out: list[str] = []
    backend = None
    for part in loc:
        in_section = out[-1:] in (["model"], ["text_model"]) or (
            out[-2:-1] == ["fallback"] and out[-1].isdigit()
        )
        if in_section and part in SECTIONS:
            backend = part
            continue
        out.append(part)
    return tuple(out), backend


def _sources_for(loc: tuple[str, ...], origins: dict[tuple[str, ...], str]) -> str:
    for n in range(len(loc), 0, -1):
        if loc[:n] in origins:
            return origins[loc[:n]]
    below = sorted({o for p, o in origins.items() if p[: len(loc)] == loc})
    return ", ".join(below) if below else "defaults"
