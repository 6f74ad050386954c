"""`edge config check`: beyond validation, refuse settings that cannot work on this machine.

Side-effect free and quick: a model folder is judged by its own config file (genai_config.json or
config.json; no weights are read, nothing is loaded), a camera by a stat (nothing is opened). A model
that is present but fails to load is `edge doctor`'s to find.

Three sets, one source of truth: `offline_problems` needs only the files and the schema (a board's
config checked on a laptop or in CI); `start_problems` adds what `edge run` refuses before it starts
(a model folder that is not there never appears by retrying, so the daemon exits 2 and systemd's
RestartPreventExitStatus=2 stops it); `problems` adds the camera devices, which the daemon itself
waits for (a USB camera may be plugged in later) but a config check should name.
"""

from __future__ import annotations

from edge.capture.base import CameraConfigError
from edge.capture.factory import check_source
from edge.config.model_settings import LocalModelSettings, path_of
from edge.config.settings import Settings
from edge.config.sources import LoadedSettings
from edge.core.errors import ModelError
from edge.inference.model_folder import folder_kind
from edge.pipeline.jobs import FRAME_KINDS

IMAGE_KINDS = frozenset({*FRAME_KINDS, "event"})


def image_tasks(settings: Settings) -> list[str]:
    """Tasks that give [model] a frame (cmd/ask with an image goes to [model] too)."""
    return [t.name for t in settings.tasks if t.kind in IMAGE_KINDS]


def text_only_problem(key: str, settings: Settings, kind: str) -> str | None:
    """The words for a text-only folder as the model of image tasks, or None."""
    tasks = image_tasks(settings)
    if key != "model" or kind != "text" or not tasks:
        return None
    return (
        f"model.path: {path_of(settings.model)} is a text-only model but task(s) {', '.join(tasks)} "
        "need images: use a Phi-3.5-vision folder there (a text model belongs in [text_model])"
    )


NO_CONFIG = (
    "no config file and no profile: every setting would be a default (test-pattern camera, broker "
    "127.0.0.1:1883); pass --config FILE (default /etc/edge/edge.toml) or --profile NAME"
)


def _model_sections(loaded: LoadedSettings) -> list[tuple[str, LocalModelSettings]]:
    """[model] and [text_model] where they read a local folder (an http backend has none)."""
    s = loaded.settings
    sections = [("model", s.model)] + ([("text_model", s.text_model)] if s.text_model else [])
    return [(k, sec) for k, sec in sections if isinstance(sec, LocalModelSettings)]


def offline_problems(loaded: LoadedSettings) -> list[str]:
    """What the files and the schema alone show cannot work, on any machine."""
    if loaded.config_file is None and loaded.settings.profile is None:
        return [NO_CONFIG]  # the one cause: every other line would follow from it
    found: list[str] = []
    for key, section in _model_sections(loaded):
        if section.path is None:
            found.append(f"{key}.path: not set: point it at a model folder")
    return found


def start_problems(loaded: LoadedSettings) -> list[str]:
    """What `edge run` refuses at start (exit 2): the offline problems and a model folder that is
    missing or is not a model of the configured backend here. A folder that is there but fails to
    load is not refused: the worker retries it with backoff (a driver may come up later)."""
    s = loaded.settings
    found = offline_problems(loaded)
    for key, section in _model_sections(loaded):
        if section.path is None:
            continue
        origin = loaded.origin((key, "path"))
        try:
            kind = folder_kind(section.path, section.backend)
        except ModelError as err:
            found.append(f"{key}.path ({origin}): {err}")
            continue
        problem = text_only_problem(key, s, kind)
        if problem:
            found.append(f"{problem} (set by {origin})")
    return found


def problems(loaded: LoadedSettings, offline: bool = False) -> list[str]:
    """One line per setting that cannot work here (or anywhere, `offline`), naming the key and
    where it was set."""
    if offline:
        return offline_problems(loaded)
    s = loaded.settings
    found = start_problems(loaded)
    shorthand = len(s.cameras) == 1 and ("cameras",) not in loaded.origins
    for i, camera in enumerate(s.cameras):
        try:
            check_source(camera)
        except CameraConfigError as err:
            key = "camera.source" if shorthand else f"cameras.{i}.source"
            origin = loaded.origin(("camera", "source") if shorthand else ("cameras",))
            found.append(f"{key} ({origin}): {err}")
    return found
