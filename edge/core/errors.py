"""Errors a user sees as one line. Everything else is a bug and gets a traceback with --debug."""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every expected failure; `str(err)` is the whole message a user needs."""

    exit_code = 1


class ConfigError(EdgeError):
    """Settings could not be loaded or validated; each line names the key and its source."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class ModelError(EdgeError):
    """A model folder is missing, corrupt, of the wrong type, or failed to load."""


class ProviderError(ModelError):
    """No configured execution provider could load the model."""


class BackendUnavailable(ModelError):
    """The runtime SDK for a backend is not installed; the message names the extra to install."""


class FrameError(EdgeError):
    """A frame is not a valid uint8 HxWx3 image; it is dropped before it reaches a runtime."""


class GenerationError(EdgeError):
    """A generation failed inside the runtime (prompt too long, runtime error)."""


class EndpointUnavailable(GenerationError):
    """A remote model endpoint cannot serve now (unreachable, refused, rate-limited, failing); a chain
    of model endpoints moves on to the next one."""
