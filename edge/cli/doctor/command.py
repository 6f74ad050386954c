"""`edge doctor`: check a board's setup the way the daemon will use it, one line per check.

Output, one line per check, in a fixed order, printed as each check finishes (a model load can take
minutes on a Pi):

    ok|warn|fail|skip  <check>: <detail>[ — fix: <what to do>]

A check that does not apply where doctor runs (no systemd, no serial port configured) is a warn or
a skip, never a fail; when the settings themselves are invalid, every check that needs them is
skipped. Exit 1 on any fail, else 0 — so it can gate a provisioning script.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.cli.doctor.broker import check_broker
from edge.cli.doctor.checks import (
    OPENCV_FIX,
    CheckResult,
    check_camera,
    check_model_access,
    check_model_folder,
    check_model_load,
    check_opencv,
    check_outbox,
    check_serial,
    check_unit,
)
from edge.cli.doctor.power import check_power
from edge.cli.service_unit import UNIT_DIRS, ServiceUnit, UnitError, find_unit, service_identity
from edge.config.settings import HttpModelSettings, Settings
from edge.config.sources import LoadedSettings, load_settings
from edge.core.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Host:
    """Where doctor looks for the things outside the settings (tests point these at a temp dir)."""

    unit_dirs: tuple[Path, ...] = UNIT_DIRS
    systemd_marker: Path = Path("/run/systemd/system")  # exists only when booted with systemd
    camera_timeout_s: float | None = None  # default: camera.stall_s, at least 5 s
    broker_timeout_s: float = 10.0
    load_timeout_s: float | None = None  # default: watchdog.load_timeout_s

    @property
    def systemd_here(self) -> bool:
        return self.systemd_marker.is_dir()


def run_doctor(
    config: Path | None,
    profile: str | None,
    overrides: list[str],
    *,
    host: Host | None = None,
    emit: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run every check in order; `emit` sees each result as soon as it is known."""
    host = host or Host()
    results: list[CheckResult] = []

    def add(result: CheckResult) -> None:
        results.append(result)
        if emit is not None:
            emit(result)

    loaded: LoadedSettings | None = None
    try:
        loaded = load_settings(config=config, profile=profile, overrides=overrides)
    except ConfigError as err:
        add(
            CheckResult(
                "config",
                "fail",
                "; ".join(err.problems),
                "fix the settings named above (`edge config check`)",
            )
        )
    else:
        source = loaded.config_file or "no config file"
        add(CheckResult("config", "ok", f"{source} (profile {loaded.settings.profile or 'none'})"))

    unit = _find_unit(host)
    unit_error = None
    if unit is not None:
        try:
            service_identity(unit)
        except UnitError as err:
            unit_error = str(err)

    if loaded is None:
        for name in (
            "opencv",
            "model folder",
            "model permissions",
            "model load",
            "camera",
            "broker",
            "outbox",
            "serial",
            "power",
        ):
            add(CheckResult(name, "skip", "settings invalid"))
    else:
        s = loaded.settings
        opencv = check_opencv(s.camera)
        add(opencv)
        no_cv2 = opencv.status == "fail" and opencv.fix == OPENCV_FIX  # import failed: skip what needs it
        models = [("model", s.model, "model")]
        if s.text_model is not None:
            models.append(("text model", s.text_model, "text_model"))
        load_timeout = host.load_timeout_s or s.watchdog.load_timeout_s
        models += [
            (f"{lb} fallback {i + 1}", ep, k)
            for lb, sec, k in list(models)
            for i, ep in enumerate(sec.fallback)
        ]
        for label, section, key in models:
            if isinstance(section, HttpModelSettings):
                # imported here: the http backend takes frames through OpenCV, whose import failure
                # is the opencv line's to report, not a crash of doctor
                from edge.cli.doctor.endpoint import check_endpoint

                for result in check_endpoint(label, section, host.broker_timeout_s):
                    add(result)
                continue
            origin = loaded.origins.get((key, "path"), "defaults")
            needs_images = _image_tasks(s) if key == "model" else []
            result, folder = check_model_folder(f"{label} folder", section, origin, needs_images)
            add(result)
            if folder is None:
                add(CheckResult(f"{label} permissions", "skip", "model folder invalid"))
                add(CheckResult(f"{label} load", "skip", "model folder invalid"))
                continue
            add(check_model_access(f"{label} permissions", folder, unit, host.systemd_here))
            if no_cv2:
                add(CheckResult(f"{label} load", "skip", "OpenCV cannot be imported (see the opencv line)"))
                continue
            add(check_model_load(f"{label} load", section, folder, load_timeout))
        if no_cv2:
            add(CheckResult("camera", "skip", "OpenCV cannot be imported (see the opencv line)"))
        else:
            for camera in s.cameras:
                label = "camera" if len(s.cameras) == 1 else f"camera {camera.name}"
                add(check_camera(camera, host.camera_timeout_s, label))
        add(check_broker(s.mqtt, s.device_id, host.broker_timeout_s))
        add(check_outbox(s.mqtt, unit))
        add(check_serial(s.serial))
        add(check_power(s.power))
    add(check_unit(unit, unit_error, host.systemd_here, host.unit_dirs[0]))
    return results


def _image_tasks(settings: Settings) -> list[str]:
    """The tasks that give the model a frame; imported here, not at the top, because config_check
    needs the camera package and so OpenCV, whose failure the opencv line reports instead."""
    try:
        from edge.cli.config_check import image_tasks
    except ImportError:  # OpenCVUnavailable: the opencv check names it; judge the folder without tasks
        return []
    return image_tasks(settings)


def _find_unit(host: Host) -> ServiceUnit | None:
    try:
        return find_unit(host.unit_dirs)
    except OSError as err:  # an unreadable unit file must not stop the other checks
        log.warning("cannot read the systemd unit: %s", err)
        return None


def doctor_command(args: argparse.Namespace) -> int:
    """The CLI entry: print each line as it is known; 1 if any check failed."""

    def emit(result: CheckResult) -> None:
        print(result.line(), flush=True)

    results = run_doctor(args.config, args.profile, list(args.overrides or []), emit=emit)
    failed = sum(r.status == "fail" for r in results)
    if failed:
        print(f"{failed} check{'s' if failed != 1 else ''} failed", file=sys.stderr)
    return 1 if failed else 0
