"""The checks behind `edge doctor`: each one returns one verdict, never raises, and names the fix.

Each check tries the real thing the daemon will do (load the model, read a frame, connect to the
broker, open the outbox and the serial ports) with a time limit, because the daemon's failures in
the field are exactly the ones a static look at the settings cannot see: a runtime that crashes on
this board's driver, a password the broker rejects, weights the service user cannot read. Whatever
could hang or crash runs in a child process (model loads) or a daemon thread (camera) with a limit.
The broker check is in `edge.cli.doctor.broker`.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.cli.provider_probe import probe_providers
from edge.cli.service_unit import ANOTHER_USER, ServiceUnit, UnitError, service_identity, unreadable
from edge.config.settings import CameraSettings, LocalModelSettings, MqttSettings, SerialSettings
from edge.core.errors import EdgeError
from edge.inference.model_folder import ModelFolder, validate_for
from edge.mqtt.outbox import Outbox, default_outbox_path
from edge.mqtt.outbox_records import OutboxError

log = logging.getLogger(__name__)

Status = Literal["ok", "warn", "fail", "skip"]
CAMERA_FLOOR_S = 5.0


@dataclass(frozen=True)
class CheckResult:
    """One line of doctor's output."""

    name: str
    status: Status
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.detail}"
        return f"{text} — fix: {self.fix}" if self.fix else text


# --------------------------------------------------------------------------- model


def check_model_folder(
    name: str, section: LocalModelSettings, origin: str, image_tasks: Sequence[str] = ()
) -> tuple[CheckResult, ModelFolder | None]:
    """`image_tasks`: the tasks that give this model a frame; a text-only folder fails them."""
    try:
        folder = validate_for(section.path, section.backend)
    except EdgeError as err:
        if section.path is None:
            fix = "set model.path to the model folder (see `edge devices` for the variant to download)"
        else:
            fix = f"check model.path (set by {origin}); copy or download the model folder again if files are missing"
        return CheckResult(name, "fail", str(err), fix), None
    detail = f"{folder.path} ({folder.format}, {folder.kind}, {len(folder.files)} files)"
    if folder.kind == "text" and image_tasks:
        return CheckResult(
            name,
            "fail",
            f"{detail} is a text-only model but task(s) {', '.join(image_tasks)} need images",
            f"point model.path (set by {origin}) at a Phi-3.5-vision folder; a text model belongs in [text_model]",
        ), None
    return CheckResult(name, "ok", detail), folder


def check_model_access(
    name: str, folder: ModelFolder, unit: ServiceUnit | None, systemd_here: bool
) -> CheckResult:
    """The files must be readable by the identity the service runs as, not by whoever runs doctor."""
    paths = [folder.path / rel for rel in folder.files]
    chmod = f"chmod -R a+rX {folder.path}"
    if unit is None:
        denied, _how = unreadable(paths, ANOTHER_USER)
        if not denied:
            return CheckResult(name, "ok", "readable by every user (no edge.service installed to ask)")
        where = "a service running as another user or DynamicUser" if systemd_here else "another user"
        return CheckResult(
            name, "warn", f"{where} cannot read {_list(denied)}", f"{chmod} (onnx writes weights mode 0600)"
        )
    try:
        who = service_identity(unit)
    except UnitError as err:
        return CheckResult(
            name,
            "fail",
            f"{unit.path}: {err}",
            "create the user (useradd --system edge) or use DynamicUser=yes",
        )
    if _hidden_home(unit, folder.path):
        return CheckResult(
            name,
            "fail",
            f"{folder.path} is under a home directory but the unit has ProtectHome={unit.protect_home}",
            "move the model to /var/lib/edge/models or /opt/edge/models",
        )
    denied, how = unreadable(paths, who)
    if denied:
        chown = "" if unit.dynamic_user else ", or chown them to the service user"
        return CheckResult(
            name,
            "fail",
            f"the service runs as {who.label} and cannot read {_list(denied)}; {how}",
            f"{chmod} (onnx writes weights mode 0600){chown}",
        )
    return CheckResult(name, "ok", f"{len(paths)} files readable by {who.label} ({how})")


def _hidden_home(unit: ServiceUnit, path: Path) -> bool:
    if unit.protect_home in ("no", "false", "0", "off", "read-only"):
        return False
    parts = Path(os.path.abspath(path)).parts
    return (len(parts) > 1 and parts[1] in ("home", "root")) or parts[:3] == ("/", "run", "user")


def _list(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_model_load(
    name: str, section: LocalModelSettings, folder: ModelFolder, timeout_s: float
) -> CheckResult:
    """Load on each provider in order, each in a child process, until one loads (as the daemon
    would fall back); a provider that crashes or hangs costs only its own answer."""
    failed: list[str] = []
    for provider in section.providers:
        (probe,) = probe_providers(section.backend, folder.path, [provider], timeout_s)
        if probe.ok:
            detail = f"{section.backend} on {provider} ({probe.detail})"
            if not failed:
                return CheckResult(name, "ok", detail)
            return CheckResult(
                name,
                "warn",
                f"{detail}; before it: {'; '.join(failed)}",
                "install the runtime build for the failed provider, or drop it from model.providers",
            )
        failed.append(f"{provider}: {probe.detail}")
    return CheckResult(
        name,
        "fail",
        f"no provider could load it ({'; '.join(failed)})",
        "run `edge devices` to see which providers load here, and set model.providers to those",
    )


# --------------------------------------------------------------------------- opencv


def check_opencv(settings: CameraSettings) -> CheckResult:
    """`import cv2` the way the daemon does, so a missing OpenCV or one built against another numpy
    is named here, not blamed on the model. A camera read through cv2.VideoCapture cannot work
    without it (fail); testsrc, picamera2, MJPEG and JPEG folders can (warn: only images of other
    formats would need it)."""
    from edge.capture.factory import needs_opencv, source_kind

    name = "opencv"
    try:
        from edge.imaging.opencv import OpenCVUnavailable
    except ImportError as err:  # OpenCVUnavailable is an ImportError: the message names the cause
        if needs_opencv(settings.source):
            return CheckResult(name, "fail", str(err), OPENCV_FIX)
        kind = source_kind(settings.source)
        return CheckResult(
            name,
            "warn",
            f"{err} (a {kind} camera does not need it; PNG and other non-JPEG images do)",
            OPENCV_FIX,
        )
    del OpenCVUnavailable
    import numpy

    from edge.capture.gst import has_gstreamer, missing_tools
    from edge.imaging.opencv import cv2

    gst = "with GStreamer" if has_gstreamer() else "without GStreamer"
    detail = f"cv2 {cv2.__version__} {gst} from {Path(cv2.__file__).parent}, numpy {numpy.__version__}"
    if source_kind(settings.source) == "gst":
        if not has_gstreamer():
            return CheckResult(
                name, "fail", detail, "a 'gst:' camera needs the system OpenCV (README: boards)"
            )
        tools = missing_tools()
        if tools:
            return CheckResult(
                name,
                "warn",
                f"{detail}; {tools}",
                "apt install gstreamer1.0-tools (pipelines are checked with it)",
            )
    return CheckResult(name, "ok", detail)


OPENCV_FIX = (
    "see the README's board table: PyPI's wheel via the [opencv] extra, or the system python3-opencv "
    "in a --system-site-packages venv with the system's numpy"
)


# --------------------------------------------------------------------------- camera


def check_camera(
    settings: CameraSettings, timeout_s: float | None = None, name: str = "camera"
) -> CheckResult:
    from edge.capture.factory import grab_frame, open_timeout_s, source_kind

    limit = timeout_s if timeout_s is not None else max(settings.stall_s, CAMERA_FLOOR_S)
    box: dict[str, Any] = {}

    def grab() -> None:
        try:
            box["frame"] = grab_frame(settings, limit)
        except Exception as err:  # reported as the check's answer; nothing escapes this thread
            box["error"] = err

    thread = threading.Thread(target=grab, name="doctor-camera", daemon=True)
    thread.start()
    hard = limit + open_timeout_s(settings) + 2.0
    thread.join(hard)
    kind = source_kind(settings.source)
    if thread.is_alive():
        return CheckResult(name, "fail", f"no answer within {hard:.0f} s", _camera_fix(kind))
    if "error" in box:
        err = box["error"]
        text = str(err) if isinstance(err, EdgeError) else f"{type(err).__name__}: {err}"
        return CheckResult(name, "fail", text, _camera_fix(kind))
    frame = box["frame"]
    return CheckResult(name, "ok", f"{kind} source gives {frame.width}x{frame.height} frames")


def _camera_fix(kind: str) -> str:
    return {
        "v4l2": "check the camera is plugged in (`edge devices` lists /dev/video*) and that the service "
        "user is in the video group (SupplementaryGroups=video)",
        "file": "camera.source must name an existing video file",
        "images": "camera.source must name a directory or glob with images",
        "rtsp": "check the URL, its credentials, and that the camera is reachable from here",
        "stream": "check the URL and that the camera is reachable from here",
        "http-mjpeg": "check the URL, its credentials, and that the camera is reachable from here",
        "gst": "try the pipeline with gst-launch-1.0; OpenCV must be built with GStreamer",
        "picamera2": "apt install python3-picamera2 and create the venv with --system-site-packages",
    }.get(kind, "check camera.source")


# --------------------------------------------------------------------------- outbox


def outbox_location(settings: MqttSettings, unit: ServiceUnit | None) -> tuple[Path, str]:
    """The outbox path the service will use, and where that answer came from."""
    if settings.outbox_path is not None:
        return settings.outbox_path, "mqtt.outbox_path"
    if not os.environ.get("STATE_DIRECTORY") and unit is not None and unit.state_path is not None:
        return unit.state_path / "outbox.sqlite", f"StateDirectory= of {unit.path}"
    return default_outbox_path(), "default"


def check_outbox(settings: MqttSettings, unit: ServiceUnit | None) -> CheckResult:
    """Open the outbox as the daemon does; if it did not exist, remove what opening created, so a
    doctor run as root leaves no root-owned files where the service user must write."""
    name = "outbox"
    path, source = outbox_location(settings, unit)
    created_dirs = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    existed = path.exists()
    try:
        outbox = Outbox(path, int(settings.outbox_max_mb * 1024 * 1024))
    except OutboxError as err:
        if "in use" in str(err):
            return CheckResult(name, "ok", f"{path} is open in a running edge daemon ({source})")
        return CheckResult(
            name,
            "fail",
            str(err),
            f"make {path.parent} writable by the service user, or set mqtt.outbox_path",
        )
    try:
        depth = outbox.depth()
    finally:
        outbox.close()
    if not existed:
        for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        for d in created_dirs:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
    free_mb = (
        shutil.disk_usage(next(p for p in (path.parent, *path.parent.parents) if p.exists())).free / 2**20
    )
    detail = f"{path} ({source}; {depth} queued; {free_mb:.0f} MiB free)"
    if free_mb < settings.outbox_max_mb:
        return CheckResult(
            name,
            "warn",
            f"{detail}: less free space than mqtt.outbox_max_mb = {settings.outbox_max_mb:g}",
            "free disk space or lower mqtt.outbox_max_mb",
        )
    return CheckResult(name, "ok", detail)


# --------------------------------------------------------------------------- serial


def check_serial(settings: SerialSettings) -> CheckResult:
    import serial

    name = "serial"
    ports = [
        (role, port, baud)
        for role, port, baud in (
            ("gnss", settings.gnss_port, settings.gnss_baud),
            ("trigger", settings.trigger_port, settings.trigger_baud),
            ("sink", settings.sink_port, settings.sink_baud),
        )
        if port
    ]
    if not ports:
        return CheckResult(name, "skip", "no serial ports configured")
    opened, failed, fixes = [], [], []
    for role, port, baud in ports:
        try:
            with serial.Serial(port, baud, timeout=0, write_timeout=0):
                opened.append(f"{role} {port}")
        except (serial.SerialException, OSError, ValueError) as err:
            code = getattr(err, "errno", None)
            if code == errno.ENOENT:
                failed.append(f"{role} {port}: no such device")
                fixes.append("plug it in, or fix the path (a /dev/serial/by-id/ link survives replugging)")
            elif code == errno.EACCES:
                failed.append(f"{role} {port}: permission denied")
                fixes.append("add the service user to the dialout group (SupplementaryGroups=dialout)")
            elif code == errno.EBUSY:
                failed.append(f"{role} {port}: busy (in use by another program)")
                fixes.append("stop the other program (ModemManager grabs new ttyACM devices)")
            else:
                failed.append(f"{role} {port}: {err}")
                fixes.append(f"check serial.{role}_port")
    if failed:
        return CheckResult(
            name, "fail", "; ".join(failed + [f"{o}: ok" for o in opened]), "; ".join(dict.fromkeys(fixes))
        )
    return CheckResult(name, "ok", ", ".join(opened) + " open")


# --------------------------------------------------------------------------- systemd


def check_unit(
    unit: ServiceUnit | None, unit_error: str | None, systemd_here: bool, wants_dir: Path
) -> CheckResult:
    name = "systemd unit"
    install = (
        "edge service unit | sudo tee /etc/systemd/system/edge.service >/dev/null && sudo systemctl daemon-reload "
        "&& sudo systemctl enable --now edge"
    )
    if unit is None:
        if not systemd_here:
            return CheckResult(name, "skip", "no systemd here (not booted with systemd)")
        return CheckResult(name, "warn", "edge.service is not installed", install)
    if unit_error:
        return CheckResult(
            name, "fail", f"{unit.path}: {unit_error}", "fix User=/Group= in the unit or create them"
        )
    exe = unit.executable
    if exe is None:
        return CheckResult(name, "fail", f"{unit.path} has no ExecStart=", install)
    if not (os.path.isabs(exe) and os.access(exe, os.X_OK)):
        return CheckResult(
            name,
            "fail",
            f"{unit.path}: ExecStart program {exe} is not an executable file",
            "point ExecStart= at the venv's bin/edge: `edge service unit` prints the unit for this install",
        )
    detail = f"{unit.path}" + (f" (+{len(unit.dropins)} drop-ins)" if unit.dropins else "")
    if systemd_here and not any(wants_dir.glob("*.wants/edge.service")):
        return CheckResult(
            name, "warn", f"{detail} is installed but not enabled", "sudo systemctl enable --now edge"
        )
    return CheckResult(name, "ok", detail)
