"""The generator worker: a spawned child process that owns exactly one loaded backend.

Why a process: the runtimes hold the GIL through a whole prefill and a native call cannot be
interrupted, so the only reliable way to stop a stuck generation is to kill the process that runs it.
The child reports its load as a message (a corrupt model is an answer, not a crash), serves one job at
a time over a pipe, and beats a shared-memory counter per token (see heartbeat.py). It dies with its
parent (PR_SET_PDEATHSIG, or a getppid watcher where that is unavailable): no orphans.

The child has no log handler of its own: its records go up a second, one-way pipe and the parent
emits them through its own handlers, so `--log-format json` (or the journal's format) holds for the
worker's lines as for every other line of the daemon.

This module has two halves: `worker_main` runs in the child; `WorkerProcess` is the main-process
handle the supervisor drives.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib
import logging
import multiprocessing.connection as mpc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from logging.handlers import QueueHandler
from multiprocessing.context import BaseContext
from multiprocessing.reduction import ForkingPickler
from typing import Any

import psutil

from edge.config.model_settings import providers_of
from edge.config.settings import ModelSettings
from edge.inference import heartbeat as hb
from edge.inference.frame_slot import FrameSlot
from edge.inference.heartbeat import Heartbeat
from edge.inference.protocol import JobDone, JobError, Loaded, LoadFailed, RunJob, StopWorker, one_line

log = logging.getLogger(__name__)

DEFAULT_LOADER = "edge.inference.registry:load_backend"
_PR_SET_PDEATHSIG = 1
_SEND_INLINE_MAX = (
    16 * 1024
)  # larger messages (frames) are sent from a thread: a stopped child can't block us


def resolve_loader(path: str) -> Callable[[ModelSettings], Any]:
    """'package.module:function' -> the function; the seam tests use to load a fake backend."""
    module_name, _, func = path.partition(":")
    if not module_name or not func:
        raise ValueError(f"backend loader {path!r} is not 'module:function'")
    loader: Callable[[ModelSettings], Any] = getattr(importlib.import_module(module_name), func)
    return loader


# =========================================================================== logging, both sides


class _PipeQueue:
    """What QueueHandler puts records into: the log pipe, one record at a time (any thread may log)."""

    def __init__(self, conn: mpc.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def put_nowait(self, record: logging.LogRecord) -> None:
        # A record that does not pickle (an odd `extra`) or a parent that is gone costs that line only.
        with self._lock, contextlib.suppress(Exception):
            self._conn.send(record)


class _ToParent(QueueHandler):
    """The child's one handler. `prepare` folds args and the traceback into the message (nothing
    unpicklable crosses), and the message names the worker, since the parent's format may not."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = super().prepare(record)
        record.msg = record.message = f"worker[{record.process}] {record.msg}"
        return record


def log_to_parent(conn: mpc.Connection, level: int) -> None:
    """Child side: every record of this process goes to the parent over `conn`."""
    root = logging.getLogger()
    root.handlers[:] = [_ToParent(_PipeQueue(conn))]  # type: ignore[arg-type]
    root.setLevel(level)


def relay_worker_logs(conn: mpc.Connection) -> None:
    """Parent side, a thread per worker: emit each record through the parent's loggers until EOF."""
    with conn:
        while True:
            try:
                record = conn.recv()
            except (EOFError, OSError, ValueError, TypeError):
                return  # the worker exited (or was killed) and its end of the pipe closed
            except Exception:  # a truncated record from a child killed mid-write
                continue
            if isinstance(record, logging.LogRecord):
                with contextlib.suppress(Exception):
                    logging.getLogger(record.name).handle(record)


# =========================================================================== child side


def _die_with_parent(parent_pid: int) -> None:
    """Make sure this process cannot outlive the supervisor that spawned it."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before prctl took effect
                    os._exit(0)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="edge-worker-parent-watch", daemon=True).start()


def worker_main(
    conn: mpc.Connection,
    beat: Heartbeat,
    settings: ModelSettings,
    loader: str,
    parent_pid: int,
    log_level: int,
    frames: FrameSlot | None = None,
    log_conn: mpc.Connection | None = None,
) -> None:
    """Child entry point: load, report, serve jobs until StopWorker or the pipe closes."""
    _die_with_parent(parent_pid)
    # If memory runs out, the kernel should kill this process (the supervisor restarts it), not the
    # daemon. Raising one's own score needs no privilege.
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as fh:
        fh.write("500")
    # Ctrl-C reaches the whole process group; shutdown is the supervisor's decision, not ours.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_conn is not None:
        log_to_parent(log_conn, log_level)
    else:  # run on its own (a test calling worker_main directly): plain lines on stderr
        logging.basicConfig(level=log_level, format="%(levelname)s worker[%(process)d] %(name)s: %(message)s")
    beat.set_phase(hb.LOADING)
    try:
        backend = resolve_loader(loader)(settings)
    except Exception as err:  # every load failure is reported, whatever the SDK raises
        log.warning("load failed: %s: %s", type(err).__name__, one_line(err))
        conn.send(LoadFailed(type(err).__name__, one_line(err)))
        return
    beat.set_phase(hb.IDLE)
    conn.send(Loaded(backend.info, os.getpid()))
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return  # the supervisor is gone
            if isinstance(msg, StopWorker):
                return
            if msg.frames and frames is not None:
                msg = dataclasses.replace(msg, request=frames.unpack(msg.request, msg.frames))
            conn.send(run_job(backend, msg, beat))
    finally:
        beat.set_phase(hb.STOPPED)
        with contextlib.suppress(Exception):
            backend.close()


def run_job(backend: Any, job: RunJob, beat: Heartbeat) -> JobDone | JobError:
    """Run one job with the per-token heartbeat and the soft deadline; errors become JobError."""
    arr = beat.array
    seq = job.seq
    base = int(arr[hb.BEATS])
    cancel = threading.Event()
    clock = time.monotonic
    deadline = clock() + job.soft_deadline_s
    beats_i, phase_i, cancel_i, decoding = hb.BEATS, hb.PHASE, hb.CANCEL, hb.DECODING

    def on_token(n: int) -> None:
        # The whole per-token cost of supervision: three stores/loads and a clock read.
        arr[beats_i] = base + n
        arr[phase_i] = decoding
        if arr[cancel_i] == seq or clock() >= deadline:
            cancel.set()

    request = job.request
    soft = job.soft_deadline_s if request.deadline_s is None else min(request.deadline_s, job.soft_deadline_s)
    request = dataclasses.replace(request, deadline_s=soft)
    beat.start_job(seq)
    try:
        generation = backend.generate(request, on_token, cancel)
    except Exception as err:
        return JobError(seq, type(err).__name__, one_line(err))
    finally:
        arr[phase_i] = hb.IDLE
    if generation.stats.stop_reason == "cancelled" and arr[cancel_i] != seq:
        # We cancelled it for the soft deadline, not on request: report it as such.
        stats = generation.stats.model_copy(update={"stop_reason": "deadline"})
        generation = dataclasses.replace(generation, stats=stats)
    return JobDone(seq, generation)


# =========================================================================== main-process side


@dataclass(frozen=True)
class Died:
    """The child exited or its pipe closed; `how` says which, for events and logs."""

    exitcode: int | None

    @property
    def how(self) -> str:
        code = self.exitcode
        if code is None:
            return "pipe closed"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"


WorkerMessage = Loaded | LoadFailed | JobDone | JobError | Died


class WorkerProcess:
    """Main-process handle of one worker child: spawn, load handshake, send a job, read replies, kill.

    Not thread-safe: the supervisor drives it from its one owner thread (which also matters for
    PR_SET_PDEATHSIG: the child dies when the thread that spawned it exits).
    """

    def __init__(
        self,
        ctx: BaseContext,
        settings: ModelSettings,
        beat: Heartbeat,
        loader: str = DEFAULT_LOADER,
        log_level: int | None = None,
        frames: FrameSlot | None = None,
    ) -> None:
        self._ctx = ctx
        self._settings = settings
        self._beat = beat
        self._frames = frames
        self._loader = loader
        self._log_level = logging.getLogger().getEffectiveLevel() if log_level is None else log_level
        self._proc: Any = None
        self._conn: mpc.Connection | None = None
        self._ps: psutil.Process | None = None
        self._sender: threading.Thread | None = None
        self._log_relay: threading.Thread | None = None
        self.pid: int | None = None

    def start(self) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        log_reader, log_writer = self._ctx.Pipe(duplex=False)
        self._beat.reset_for_spawn()
        proc = self._ctx.Process(  # type: ignore[attr-defined]
            target=worker_main,
            args=(
                child_conn,
                self._beat,
                self._settings,
                self._loader,
                os.getpid(),
                self._log_level,
                self._frames,
                log_writer,
            ),
            name="edge-worker",
            daemon=True,
        )
        proc.start()
        child_conn.close()
        log_writer.close()  # the child holds the only writer: its exit ends the relay
        self._log_relay = threading.Thread(
            target=relay_worker_logs, args=(log_reader,), name="edge-worker-log", daemon=True
        )
        self._log_relay.start()
        self._proc, self._conn, self.pid = proc, parent_conn, proc.pid
        with contextlib.suppress(psutil.Error):
            self._ps = psutil.Process(proc.pid)
        log.info("worker started pid=%s providers=%s", proc.pid, ",".join(providers_of(self._settings)))

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.exitcode is None

    def rss_mb(self) -> float | None:
        if self._ps is None or not self.alive:
            return None
        try:
            return float(self._ps.memory_info().rss) / (1024 * 1024)
        except psutil.Error:
            return None

    def send(self, msg: RunJob | StopWorker) -> None:
        """Send without ever blocking the caller on a stalled child (big frames go from a thread)."""
        assert self._conn is not None
        if isinstance(msg, RunJob) and msg.request.images and self._frames is not None:
            packed = self._frames.pack(msg.request)  # frames through shared memory, not the pipe
            if packed is not None:
                msg = dataclasses.replace(msg, request=packed[0], frames=packed[1])
        data = bytes(ForkingPickler.dumps(msg))
        if len(data) <= _SEND_INLINE_MAX:
            with contextlib.suppress(OSError):  # the child is gone; the next receive reports how
                self._conn.send_bytes(data)
            return
        self._sender = threading.Thread(
            target=self._send_quietly, args=(data,), name="edge-worker-send", daemon=True
        )
        self._sender.start()

    def _send_quietly(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            return
        # Killed mid-send: the supervisor knows. TypeError is what Connection raises when another
        # thread closed it under us (its handle becomes None).
        with contextlib.suppress(OSError, ValueError, TypeError):
            conn.send_bytes(data)

    def receive(self, timeout: float) -> WorkerMessage | None:
        """The next message, Died when the child is gone, or None when nothing came within `timeout`."""
        conn, proc = self._conn, self._proc
        if conn is None or proc is None:
            return Died(None)
        try:
            ready = mpc.wait([conn, proc.sentinel], max(0.0, timeout))
        except OSError:
            ready = [conn]
        if not ready:
            return None
        if conn in ready or conn.poll(0):
            try:
                message: WorkerMessage = conn.recv()
                return message
            except (EOFError, OSError):
                pass
        proc.join(1.0)
        return Died(proc.exitcode)

    def stop(self, timeout: float) -> None:
        """Ask the child to exit; kill it if it has not within `timeout` (it may be mid-prefill)."""
        if self.alive:
            self.send(StopWorker())
            self._proc.join(max(0.0, timeout))
        self.kill()

    def kill(self) -> None:
        """SIGKILL (works on a SIGSTOPped or GIL-stuck child), reap, release the pipe."""
        proc = self._proc
        if proc is None:
            return
        if proc.exitcode is None:
            with contextlib.suppress(ProcessLookupError, OSError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.join(5.0)
            if proc.exitcode is None:  # uninterruptible sleep in a driver: nothing more we can do
                log.error("worker pid %s survived SIGKILL for 5 s (stuck in the kernel?)", proc.pid)
        if self._sender is not None:  # the child is gone: its write fails fast with EPIPE
            self._sender.join(1.0)
            self._sender = None
        if self._log_relay is not None:  # its last lines first, then whatever the caller logs next
            self._log_relay.join(1.0)
            self._log_relay = None
        if self._conn is not None:
            self._conn.close()
        if proc.exitcode is not None:
            proc.close()
        self._proc, self._conn, self._ps = None, None, None
