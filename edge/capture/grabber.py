"""The latest-frame grabber: one camera drained continuously into a one-frame slot.

The model takes seconds per frame, a camera delivers many per second: a queue would only age. So
the reader keeps just the newest validated frame (overwrites are counted as drops) and a job takes
whatever is newest when it starts.

A native read (FFmpeg, V4L2, libcamera) cannot be interrupted, and some hang for minutes when a
stream dies. So each connection attempt runs in its own reader thread ("session"), watched by a
supervisor thread that declares the camera lost after `stall_s` without a frame, abandons a reader
stuck in native code, and reconnects with exponential backoff capped at `reconnect_s`. Nothing the
runtime calls here ever waits on the camera: `latest()` is a lock and a copy of a reference.

Threads stay bounded: while an abandoned reader is still stuck (a GStreamer pipeline that never
prerolls, a driver that ignores timeouts), no new session starts; the camera stays lost until that
reader returns, so retries never add a thread each.

Flapping (a pipeline that ends after 0.2 s, a flaky RTSP camera): the backoff resets only after a
session delivered frames for `stable_s`; a session that dies sooner is a flap. The first loss is one
camera_lost and the recovery one camera_back; a second loss before the camera was stable is one
camera_lost with "flapping": true and the count; after that the camera is quiet until a session
stays up for `stable_s`, which ends the flapping with one camera_back carrying "flaps".

Idle rate: while nothing moves, nobody needs every frame. `idle_fps` (set by the trigger loop from
the scheduler's view of the camera, None = every frame) makes the reader publish at most that many
frames a second; the others are still read off the stream, so the connection and stall detection
behave as before, but a source that can (`TwoStepCamera`: MJPEG over HTTP, OpenCV, image folders)
never decodes them, and no later stage sees them. Setting it back to None takes effect at the next
frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from edge.capture.base import Camera, CameraError, CameraInfo, StreamEnded, TwoStepCamera
from edge.capture.factory import build_camera, describe_source, open_timeout_s, source_kind
from edge.capture.redact import redact_source
from edge.config.settings import CameraSettings
from edge.core.errors import FrameError
from edge.core.messages import Frame
from edge.imaging.frames import prepare_image

log = logging.getLogger(__name__)

CaptureState = Literal["starting", "ok", "lost"]
EventHandler = Callable[[str, dict[str, Any]], None]

RETIRE_GRACE_S = 1.0  # how long a cancelled reader may take to return before it is abandoned
STABLE_S = 30.0  # a session must deliver frames this long before the backoff resets
_FPS_WINDOW = 30


@dataclass(frozen=True)
class CaptureStats:
    """A consistent snapshot of one grabber, for health and the benchmark."""

    camera: str
    source: str  # redacted
    kind: str
    state: CaptureState
    frames: int  # valid frames put into the slot
    dropped: int  # frames overwritten in the slot before anyone took them
    invalid: int  # frames refused by validation or decoding
    skipped: int  # frames read at the idle rate's pace but not decoded nor published
    reconnects: int  # connection attempts after the first
    losses: int  # outages (a flapping camera counts each drop; camera_lost events are fewer)
    abandoned: int  # readers left stuck in a native call
    fps: float  # frames read from the camera a second, measured over the last ones (skipped included)
    width: int | None  # as reported by the device / stream
    height: int | None
    device_fps: float | None
    last_frame_age_s: float | None
    last_error: str | None
    ended: bool  # a finite source (file, image dir without loop) played to its end


class _Session:
    """One connect-and-read attempt on its own thread; its frames count only while it is current."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.cancel = threading.Event()
        self.started = time.monotonic()
        self.phase: Literal["opening", "reading", "done"] = "opening"
        self.frames = 0
        self.first_frame_at: float | None = None
        self.error: str | None = None
        self.ended = False
        self.thread: threading.Thread | None = None


class Grabber:
    """Owns one camera: `start()`, then `latest()` / `wait_frame()` from any thread, `stop()` at the end.

    `on_event(name, payload)` is called from the grabber's threads with "camera_lost" and
    "camera_back"; payloads carry the redacted source only.
    """

    def __init__(
        self,
        camera_settings: CameraSettings,
        on_event: EventHandler | None = None,
        *,
        backoff_initial_s: float = 0.5,
        stable_s: float = STABLE_S,
    ) -> None:
        self.settings = camera_settings
        self._on_event = on_event
        self._source = describe_source(camera_settings.source)
        self._kind = source_kind(camera_settings.source)
        build_camera(camera_settings)  # a source that can never work fails here, as one line
        self._backoff_initial = min(backoff_initial_s, camera_settings.reconnect_s)
        self._stable_s = stable_s
        self._flaps = 0  # losses since the camera was last stable for stable_s
        self._flapping = False  # events are held back until a session is stable again
        self._stuck: list[threading.Thread] = []  # abandoned readers still in a native call
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._session: _Session | None = None
        self._slot: Frame | None = None
        self._slot_taken = True
        self._seq = 0
        self._progress = time.monotonic()
        self._state: CaptureState = "starting"
        self._lost_since: float | None = None
        self._attempts_while_lost = 0
        self._info: CameraInfo | None = None
        self._recent: deque[float] = deque(maxlen=_FPS_WINDOW)
        self._counts = {
            "frames": 0,
            "dropped": 0,
            "invalid": 0,
            "skipped": 0,
            "reconnects": 0,
            "losses": 0,
            "abandoned": 0,
        }
        self._idle_period: float | None = None  # seconds between published frames while idle
        self._next_due = 0.0  # monotonic time the next frame is due at the idle rate
        self._last_read = 0.0  # monotonic time the last frame was read (published or skipped)
        self._last_error: str | None = None
        self._ended = False

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("Grabber.start() called twice")
        self._thread = threading.Thread(
            target=self._supervise, name=f"capture-{self.settings.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop reading and release the camera; True if every thread ended within `timeout`."""
        self._stopping.set()
        with self._cond:
            session = self._session
            self._cond.notify_all()
        if session is not None:
            session.cancel.set()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        supervisor_done = not (self._thread and self._thread.is_alive())
        reader = session.thread if session is not None else None
        # A supervisor that ended has retired the session: its reader returned within RETIRE_GRACE_S
        # or was abandoned (and said so). Waiting for it again would only delay the daemon's stop by
        # the rest of `timeout` for a read that will not return (a camera that accepts and is silent).
        if reader is not None and not supervisor_done:
            reader.join(max(0.0, deadline - time.monotonic()))
        if not supervisor_done:
            log.warning(
                "camera %s: capture threads still busy after %.1fs (stuck native read)", self._source, timeout
            )
        return supervisor_done and not (reader and reader.is_alive())

    def latest(self, after_seq: int = -1) -> Frame | None:
        """The newest frame if it is newer than `after_seq`, else None. Never blocks on the camera."""
        with self._cond:
            frame = self._slot
            if frame is None or frame.seq <= after_seq:
                return None
            if not self._slot_taken:
                self._slot_taken = True
                self._cond.notify_all()  # a consumer-paced reader waits for exactly this
            return frame

    def wait_frame(self, after_seq: int = -1, timeout: float = 1.0) -> Frame | None:
        """Like latest(), waiting up to `timeout` for a newer frame; None on timeout, stop or end."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                frame = self.latest(after_seq)
                if frame is not None or self._stopping.is_set() or self._ended:
                    return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    @property
    def idle_fps(self) -> float | None:
        """At most this many frames a second are decoded and published; None: every frame."""
        period = self._idle_period
        return None if period is None else 1.0 / period

    @idle_fps.setter
    def idle_fps(self, fps: float | None) -> None:
        # One attribute store, read by the reader once per frame: no lock needed.
        self._idle_period = 1.0 / fps if fps else None

    @property
    def alive(self) -> bool:
        """The capture thread runs, or ended on purpose (stopped, or a finite source played out)."""
        t = self._thread
        return t is not None and (t.is_alive() or self._ended or self._stopping.is_set())

    @property
    def state(self) -> CaptureState:
        return self._state

    @property
    def info(self) -> CameraInfo | None:
        """What the device reported at the last successful open."""
        return self._info

    def stats(self) -> CaptureStats:
        with self._cond:
            now = time.monotonic()
            recent = self._recent
            fps = (
                (len(recent) - 1) / (recent[-1] - recent[0])
                if len(recent) > 1 and recent[-1] > recent[0]
                else 0.0
            )
            info = self._info
            slot = self._slot
            width = info.width if info and info.width else (slot.width if slot is not None else None)
            height = info.height if info and info.height else (slot.height if slot is not None else None)
            return CaptureStats(
                camera=self.settings.name,
                source=self._source,
                kind=self._kind,
                state=self._state,
                fps=round(fps, 2),
                width=width,
                height=height,
                device_fps=info.fps if info else None,
                last_frame_age_s=round(now - self._slot.monotonic, 3) if self._slot is not None else None,
                last_error=self._last_error,
                ended=self._ended,
                **self._counts,
            )

    # ------------------------------------------------------------------ supervisor

    def _supervise(self) -> None:
        backoff = self._backoff_initial
        number = 0
        while not self._stopping.is_set():
            if not self._wait_unstuck():
                break
            session = _Session(number)
            with self._cond:
                if number > 0:
                    self._counts["reconnects"] += 1
                self._session = session
            number += 1
            session.thread = threading.Thread(
                target=self._read_session,
                args=(session,),
                name=f"capture-{self.settings.name}-reader{session.number}",
                daemon=True,
            )
            session.thread.start()
            reason = self._watch(session)
            self._retire(session)
            if reason is None:  # stopping
                break
            if session.ended:
                self._mark_lost(reason, ended=True)
                break
            up_s = time.monotonic() - session.first_frame_at if session.first_frame_at is not None else 0.0
            if up_s >= self._stable_s:
                backoff = self._backoff_initial
            self._mark_lost(reason, flap=session.frames > 0 and up_s < self._stable_s)
            log.debug("camera %s: reconnecting in %.1fs (%s)", self._source, backoff, reason)
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, self.settings.reconnect_s)

    def _watch(self, session: _Session) -> str | None:
        """Wait until the session fails, ends or stalls; the reason, or None when stopping."""
        stall_s = self.settings.stall_s
        opening_s = open_timeout_s(self.settings)
        with self._cond:
            while True:
                if self._stopping.is_set():
                    return None
                if session.phase == "done":
                    return session.error or "stream ended"
                now = time.monotonic()
                if session.phase == "opening":
                    limit, idle = opening_s, now - session.started
                    what = f"not open after {idle:.1f}s"
                else:
                    limit, idle = stall_s, now - self._progress
                    what = f"no frame for {idle:.1f}s"
                if idle > limit:
                    return what
                self._cond.wait(min(0.25, max(0.01, limit - idle)))

    def _retire(self, session: _Session) -> None:
        session.cancel.set()
        with self._cond:
            if self._session is session:
                self._session = None
        if session.thread is not None:
            session.thread.join(RETIRE_GRACE_S)
            if session.thread.is_alive():
                with self._cond:
                    self._counts["abandoned"] += 1
                    self._stuck.append(session.thread)
                log.warning("camera %s: reader stuck in a native call, abandoned", self._source)

    def _wait_unstuck(self) -> bool:
        """Before a new session: wait while an abandoned reader is still stuck; False when stopping."""
        while True:
            with self._cond:
                self._stuck = [t for t in self._stuck if t.is_alive()]
                if not self._stuck:
                    return True
                stuck = self._stuck[0]
            log.debug(
                "camera %s: waiting for the stuck reader %s before reconnecting", self._source, stuck.name
            )
            while stuck.is_alive():
                if self._stopping.wait(0.25):
                    return False

    def _mark_lost(self, reason: str, ended: bool = False, flap: bool = False) -> None:
        """`flap`: the session delivered frames but died before it was stable."""
        reason = redact_source(reason)
        with self._cond:
            self._last_error = reason
            self._ended = ended
            first = self._state != "lost"
            if first:
                self._state = "lost"
                self._lost_since = time.monotonic()
                self._attempts_while_lost = 0
                self._counts["losses"] += 1
                self._recent.clear()  # the measured rate restarts when the camera comes back
                if not flap:
                    self._flaps = 0
                self._flaps += 1
            self._attempts_while_lost += 1
            frames = self._counts["frames"]
            count = self._flaps
            starts_flapping = first and flap and count >= 2 and not self._flapping
            quiet = first and self._flapping
            if starts_flapping:
                self._flapping = True
            self._cond.notify_all()
        if quiet:
            log.debug("camera %s: flapping, drop #%d: %s", self._source, count, reason)
        elif first:
            log.warning("camera lost camera=%s source=%s reason=%s", self.settings.name, self._source, reason)
            self._emit(
                "camera_lost",
                {
                    "camera": self.settings.name,
                    "source": self._source,
                    "kind": self._kind,
                    "reason": reason,
                    "ended": ended,
                    "frames": frames,
                    "count": count,  # losses since the camera was last stable
                    "flapping": starts_flapping,
                },
            )
        else:
            log.debug("camera %s: reconnect %d failed: %s", self._source, self._attempts_while_lost, reason)

    def _emit(self, name: str, payload: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(name, payload)
        except Exception:
            log.exception("camera %s: on_event handler failed for %s", self._source, name)

    # ------------------------------------------------------------------ reader (one per session)

    def _read_session(self, session: _Session) -> None:
        camera: Camera | None = None
        try:
            camera = build_camera(self.settings, cancel=session.cancel)
            info = camera.open()
            with self._cond:
                if self._session is not session:
                    return
                session.phase = "reading"
                self._info = info
                self._progress = time.monotonic()
            # An idle camera's frames that are not due are grabbed and never decoded, where it can.
            stepper = camera if isinstance(camera, TwoStepCamera) else None
            thinned = not camera.paced_by_consumer  # asap files are paced by their consumer instead
            while not session.cancel.is_set():
                if camera.paced_by_consumer and not self._wait_taken(session):
                    break
                try:
                    if stepper is not None:
                        stepper.grab()
                    else:
                        raw = camera.read()
                    if session.cancel.is_set():
                        break
                    if thinned and self._skip(session):
                        continue
                    if stepper is not None:
                        raw = stepper.retrieve()
                except FrameError as err:
                    self._count_invalid(err)
                    continue
                self._publish(session, raw)
        except StreamEnded as err:
            session.ended = True
            session.error = str(err)
        except CameraError as err:
            session.error = redact_source(err)
        except Exception as err:  # a source bug must not kill capture: log it, then reconnect
            log.exception("camera %s: reader failed", self._source)
            session.error = redact_source(f"{type(err).__name__}: {err}")
        finally:
            if camera is not None:
                try:
                    camera.close()
                except Exception:
                    log.warning("camera %s: close failed", self._source, exc_info=True)
            with self._cond:
                session.phase = "done"
                self._cond.notify_all()

    def _wait_taken(self, session: _Session) -> bool:
        """Consumer pacing: hold the next read until the slot's frame was taken (not a stall)."""
        with self._cond:
            while self._slot is not None and not self._slot_taken:
                if session.cancel.is_set() or self._stopping.is_set():
                    return False
                self._progress = time.monotonic()
                self._cond.wait(0.2)
            return not session.cancel.is_set()

    def _skip(self, session: _Session) -> bool:
        """At the idle rate: True for a frame that is not due (counted; it is never decoded).

        A frame is due when it is nearer the due time than the next frame will be (half the last
        gap between frames early at most): a camera no faster than the idle rate keeps every frame
        however its frames jitter."""
        period = self._idle_period
        mono = time.monotonic()
        gap, self._last_read = mono - self._last_read, mono
        if period is not None and mono + gap / 2 < self._next_due:
            with self._cond:
                if self._session is session:
                    self._counts["skipped"] += 1
                    self._progress = mono  # the camera delivers: not a stall
                    self._recent.append(mono)
            return True
        if period is not None:
            # A fixed schedule keeps the average at the idle rate; after full rate (or a late frame)
            # the schedule starts again from this frame.
            late = mono - self._next_due >= period
            self._next_due = mono + period if late else self._next_due + period
        return False

    def _count_invalid(self, err: Exception) -> None:
        with self._cond:
            self._counts["invalid"] += 1
            n = self._counts["invalid"]
        # One line per event, but a garbage stream must not flood the journal.
        if n <= 3 or n % 100 == 0:
            log.warning("camera %s: frame dropped (invalid #%d): %s", self._source, n, redact_source(err))

    def _publish(self, session: _Session, raw: object) -> None:
        captured_at, mono = time.time(), time.monotonic()
        try:
            image = prepare_image(raw, self.settings.max_edge)
        except FrameError as err:
            self._count_invalid(err)
            return
        image.flags.writeable = False  # shared by every consumer of the slot: nobody may draw on it
        back: dict[str, Any] | None = None
        with self._cond:
            if self._session is not session:
                return  # an abandoned reader came back: its frame is stale
            if self._slot is not None and not self._slot_taken:
                self._counts["dropped"] += 1
            self._slot = Frame(image, captured_at, mono, self._seq, self.settings.name)
            self._slot_taken = False
            self._seq += 1
            self._counts["frames"] += 1
            session.frames += 1
            if session.first_frame_at is None:
                session.first_frame_at = mono
            self._progress = mono
            self._recent.append(mono)
            if self._flapping and mono - session.first_frame_at >= self._stable_s:
                self._flapping = False  # stable again: one camera_back ends the flapping
                back = {
                    "camera": self.settings.name,
                    "source": self._source,
                    "kind": self._kind,
                    "down_s": round(session.first_frame_at - (self._lost_since or mono), 3),
                    "attempts": self._attempts_while_lost,
                    "width": image.shape[1],
                    "height": image.shape[0],
                    "flaps": self._flaps,
                }
                self._flaps = 0
            if self._state != "ok":
                if self._state == "lost" and not self._flapping:
                    back = {
                        "camera": self.settings.name,
                        "source": self._source,
                        "kind": self._kind,
                        "down_s": round(mono - (self._lost_since or mono), 3),
                        "attempts": self._attempts_while_lost,
                        "width": image.shape[1],
                        "height": image.shape[0],
                    }
                self._state = "ok"
                self._last_error = None
            self._cond.notify_all()
        if back is not None:
            log.info(
                "camera back camera=%s source=%s down_s=%.1f",
                self.settings.name,
                self._source,
                back["down_s"],
            )
            self._emit("camera_back", back)
        elif session.frames == 1 and session.number == 0:
            log.info(
                "camera ok camera=%s source=%s first frame %dx%d",
                self.settings.name,
                self._source,
                *image.shape[1::-1],
            )
