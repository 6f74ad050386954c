"""Explicit backend registry: a name -> a loader imported lazily, failing loudly when absent.

No backend disappears silently: if its SDK is missing, loading names the extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from edge.config.settings import ModelSettings
from edge.core.errors import BackendUnavailable, ConfigError
from edge.inference.base import Backend

# backend name -> (module, loader function, pip extra that installs its SDK)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "ort-genai": ("edge.inference.ort_genai", "load", "ort"),
    "openvino": ("edge.inference.openvino_genai", "load", "openvino"),
    "http": ("edge.inference.http_backend", "load", "http"),
}


def loader_for(name: str) -> Callable[[ModelSettings], Backend]:
    try:
        module_name, func, _extra = BACKENDS[name]
    except KeyError:
        raise ConfigError(
            [f"model.backend: unknown backend {name!r} (known: {', '.join(BACKENDS)})"]
        ) from None
    module = importlib.import_module(module_name)
    loader: Callable[[ModelSettings], Backend] = getattr(module, func)
    return loader


def load_backend(settings: ModelSettings) -> Backend:
    """Validate the folder, try each provider in order, return the loaded backend.

    Raises BackendUnavailable (SDK missing: names `pip install 'edge-vlm-agent[EXTRA]'`), ModelError
    (folder missing/corrupt/wrong type), ProviderError (no provider could load it).
    """
    return loader_for(settings.backend)(settings)


def backend_installed(name: str) -> bool | str:
    """True, or the reason the backend's SDK cannot be imported, asked in THIS process: an SDK that
    crashes on import takes the caller with it (`edge devices` asks in a child: edge.cli.sdk_probe)."""
    module_name, _func, extra = BACKENDS[name]
    try:
        mod = importlib.import_module(module_name)
        check = getattr(mod, "sdk_available", None)
        return True if check is None else check()
    except BackendUnavailable as err:
        return str(err)
