"""Ordered provider fallback: try each configured provider by loading the model on it.

The runtimes' availability probes lie (ORT GenAI's is_openvino_available() / is_qnn_available() are
always True on the CPU wheel; OpenVINO lists no NPU until the driver loads), so the only honest test
is to load. Every failure is logged as one line and kept, so `edge doctor`, the state payload and the
final error can say why each provider was skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from edge.core.errors import ConfigError, ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")


def first_line(err: BaseException) -> str:
    """The most useful single line of a runtime error (OpenVINO's are multi-line with a trace)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    # OpenVINO puts "Exception from src/...cpp:NN:" first and the reason last.
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '", "[ GENERAL_ERROR ]"))]
    text = (useful or lines)[-1] if lines[0].startswith("Exception from") else lines[0]
    return text[:300]


def canonical(name: str, known: Mapping[str, str], backend: str) -> str:
    """The runtime's spelling of a configured provider name; ConfigError for an unknown one.

    A typo must not silently fall through to the next provider and run on the CPU unnoticed.
    """
    key = name.strip().lower()
    if key in known:
        return known[key]
    raise ConfigError(
        [
            f"model.providers: unknown provider {name!r} for {backend} (known: {', '.join(sorted(set(known.values())))})"
        ]
    )


def options_for(provider: str, provider_options: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Options configured for `provider`, matched case-insensitively (cuda == CUDA)."""
    for key, opts in provider_options.items():
        if key.strip().lower() == provider.strip().lower():
            return dict(opts)
    return {}


def load_first(
    providers: Sequence[str],
    load_one: Callable[[str], T],
    *,
    what: str,
) -> tuple[T, str, tuple[tuple[str, str], ...]]:
    """(loaded, provider used, ((provider, why it failed), ...)) for the first provider that loads.

    `load_one` raises on failure; any Exception counts as "this provider cannot load the model".
    Raises ProviderError listing every provider's reason when none loads.
    """
    tried: list[tuple[str, str]] = []
    for name in providers:
        try:
            loaded = load_one(name)
        except ConfigError:
            raise
        except Exception as err:  # runtimes raise RuntimeError, TypeError, their own types...
            reason = first_line(err)
            log.warning("provider %s could not load %s: %s", name, what, reason)
            tried.append((name, reason))
            continue
        if tried:
            log.info("using provider %s for %s after %d failed", name, what, len(tried))
        return loaded, name, tuple(tried)
    detail = "; ".join(f"{name}: {reason}" for name, reason in tried)
    raise ProviderError(f"no provider could load {what} ({detail})")
