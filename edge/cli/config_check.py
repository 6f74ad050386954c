"""`edge config check`: beyond validation, refuse settings that cannot work on this machine.

Side-effect free and quick: a model folder is judged by its own config file (genai_config.json or
config.json; no weights are read, nothing is loaded), a camera by a stat (nothing is opened). A model
that is present but fails to load is `edge doctor`'s to find.
"""

from __future__ import annotations

from edge.capture.base import CameraConfigError
from edge.capture.factory import check_source
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
        f"model.path: {settings.model.path} is a text-only model but task(s) {', '.join(tasks)} "
        "need images: use a Phi-3.5-vision folder there (a text model belongs in [text_model])"
    )


def problems(loaded: LoadedSettings) -> list[str]:
    """One line per setting that cannot work here, naming the key and where it was set."""
    s = loaded.settings
    found: list[str] = []
    sections = [("model", s.model)] + ([("text_model", s.text_model)] if s.text_model else [])
    for key, section in sections:
        if section.backend == "http":  # an endpoint, no folder: url and name were validated; doctor asks it
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
    shorthand = len(s.cameras) == 1 and ("cameras",) not in loaded.origins
    for i, camera in enumerate(s.cameras):
        try:
            check_source(camera)
        except CameraConfigError as err:
            key = "camera.source" if shorthand else f"cameras.{i}.source"
            origin = loaded.origin(("camera", "source") if shorthand else ("cameras",))
            found.append(f"{key} ({origin}): {err}")
    return found
