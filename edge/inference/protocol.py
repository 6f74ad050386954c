"""What crosses the pipe between supervisor and worker, and what a submitted job comes back as.

Errors cross as (type name, one-line message), never as pickled exceptions: an exception class from
an SDK may not unpickle in the other process, and a user only ever needs the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge.core.messages import Generation, GenerationRequest, ModelPayload
from edge.inference.base import BackendInfo

# --------------------------------------------------------------------------- supervisor -> worker


@dataclass(frozen=True)
class RunJob:
    seq: int
    job_id: str
    request: GenerationRequest
    soft_deadline_s: float  # the worker stops generating itself after this and returns partial text
    frames: tuple[tuple[int, tuple[int, ...]], ...] = ()  # the request's images in the FrameSlot


@dataclass(frozen=True)
class StopWorker:
    """Finish nothing new; close the backend and exit 0."""


# --------------------------------------------------------------------------- worker -> supervisor


@dataclass(frozen=True)
class Loaded:
    info: BackendInfo
    pid: int


@dataclass(frozen=True)
class LoadFailed:
    error_type: str
    message: str


@dataclass(frozen=True)
class JobDone:
    seq: int
    generation: Generation


@dataclass(frozen=True)
class JobError:
    """The backend raised (GenerationError, FrameError, a runtime error); the worker is still usable."""

    seq: int
    error_type: str
    message: str


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 500 else text[:497] + "..."


# --------------------------------------------------------------------------- job outcome (public)

FailureReason = Literal[
    "first_token_timeout",  # prefill (incl. image) ran past watchdog.first_token_s: worker killed
    "token_timeout",  # no token for watchdog.token_s: worker killed
    "total_timeout",  # the job ran past watchdog.total_s: worker killed
    "crashed",  # the worker died during the job (signal, native crash, os._exit)
    "generation_error",  # the backend raised; the worker lives on
    "invalid_request",  # rejected before reaching the worker (bad frame)
    "unavailable",  # no model could be loaded (see the supervisor's degraded reason)
    "stopped",  # the supervisor was stopping and the job could not finish in time
]


@dataclass(frozen=True)
class JobFailure:
    reason: FailureReason
    message: str  # one line for logs and the event payload
    error_type: str | None = None  # the exception class for generation_error / invalid_request


@dataclass(frozen=True)
class JobOutcome:
    """Exactly one per submitted job: a generation or a failure, never both, never neither."""

    job_id: str
    generation: Generation | None
    failure: JobFailure | None
    model: ModelPayload | None  # the model/provider that ran it (providers can change on fallback)
    worker_pid: int | None
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.failure is None
