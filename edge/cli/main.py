"""The `edge` command. Only the CLI and the runtime see the whole settings; components get a section.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config. Errors are one line; `--debug`
adds the traceback. `edge run` is the exception: it runs unattended (the unit has no --debug), so a
crash (a bug, not an EdgeError) logs its traceback through logging, into the journal.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge import __version__
from edge.cli.logsetup import log_thread_crashes, setup_logging
from edge.config.settings import Settings
from edge.config.sources import LoadedSettings, load_settings
from edge.core.errors import ConfigError, EdgeError

log = logging.getLogger("edge")


def _settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", type=Path, help="TOML config file (default: $EDGE_CONFIG or /etc/edge/edge.toml)"
    )
    p.add_argument(
        "--profile",
        help="device profile NAME (e.g. rpi5, demo): /etc/edge/devices/NAME.toml, else the shipped one",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set mqtt.host=broker.lan (repeatable; values are TOML)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description="On-device vision-language agent: camera -> Phi-3.5 -> MQTT, under a watchdog.",
    )
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING, ERROR")
    parser.add_argument("--log-format", choices=["auto", "console", "journal", "json"], default=None)
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon in the foreground (systemd runs this)")
    _settings_args(p)

    p = sub.add_parser("caption", help="one frame through the model; print the result")
    _settings_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("image", nargs="?", type=Path, help="image file")
    src.add_argument("--camera", action="store_true", help="grab one frame from the configured camera")
    p.add_argument("--prompt", help="override the prompt")
    p.add_argument("--json", action="store_true", help="print the MQTT result payload as one JSON line")

    p = sub.add_parser("ask", help="one-shot text or image question")
    _settings_args(p)
    p.add_argument("question")
    p.add_argument("--image", type=Path, help="image file to ask about")
    p.add_argument("--json", action="store_true", help="print the MQTT result payload as one JSON line")

    p = sub.add_parser("config", help="show or check the effective settings")
    csub = p.add_subparsers(dest="config_command", metavar="show|check", required=True)
    _settings_args(csub.add_parser("show", help="effective settings with their sources, secrets redacted"))
    p = csub.add_parser("check", help="validate; exit 2 with one line per problem")
    _settings_args(p)
    p.add_argument(
        "--offline",
        action="store_true",
        help="only what the files and the schema show (no look at this machine's devices or models)",
    )

    p = sub.add_parser("devices", help="board, accelerators, backends and providers found; suggested profile")
    _settings_args(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("doctor", help="check camera, broker, model, provider, permissions; exit 1 on failure")
    _settings_args(p)

    p = sub.add_parser("bench", help="measure load, ttft, decode speed, latency and overhead on this board")
    _settings_args(p)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--jobs",
        type=int,
        default=80,
        help="jobs for the latency part (default 80: a p95 needs >= 72 to be bounded)",
    )
    p.add_argument(
        "--max-pairs",
        type=int,
        default=40,
        help="cap of daemon/bare-loop rounds for the overhead interval and its A/A (default 40)",
    )
    p.add_argument(
        "--rotate-every",
        type=int,
        default=0,
        metavar="N",
        help="restart the daemon and both bare loops every N overhead rounds and take the intervals over "
        "the sets of processes (default 0: one set)",
    )
    p.add_argument(
        "--inproc-budget-s",
        type=float,
        default=150.0,
        help="wall-clock cap of the in-process overhead rounds (default 150; they stop sooner once "
        "the A/B and A/A intervals are within +/-0.5)",
    )
    p.add_argument(
        "--choose",
        action="store_true",
        help="sweep num_crops, threads, provider order and max_edge; write the chosen values as a drop-in config",
    )
    p.add_argument(
        "--budget-s", type=float, default=None, help="time budget in seconds (--choose: default 600)"
    )
    p.add_argument(
        "--job-s",
        type=float,
        default=None,
        help="--choose: without an accuracy measure, the most detail whose job fits this many seconds",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="--choose: the drop-in to write (default <config dir>/conf.d/50-bench.toml)",
    )

    p = sub.add_parser(
        "watch", help="the consumer's view: results, events, health, availability; gaps and redeliveries"
    )
    _settings_args(p)
    p.add_argument("devices", nargs="*", metavar="DEVICE", help="only these device ids (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON line per message, gap and the summary")
    p.add_argument("--prefix", help="topic prefix (default: mqtt.prefix)")
    p.add_argument("--for", dest="duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--expect-complete", action="store_true", help="exit 1 on any gap in seq (or if no result came)"
    )
    p.add_argument("--from-start", action="store_true", help="expect every boot from seq 1 (no late join)")
    p.add_argument("--group", help="join the shared subscription $share/GROUP/... (split the stream)")

    p = sub.add_parser(
        "view",
        help="a web page of what the cameras saw: latest pictures, timeline, search (stores as it goes)",
    )
    _settings_args(p)
    p.add_argument("devices", nargs="*", metavar="DEVICE", help="only these device ids (default: all)")
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="default 127.0.0.1:8080")
    p.add_argument(
        "--store",
        default="edge-view.db",
        metavar="PATH|URL",
        help="SQLite file (default edge-view.db) or postgresql://... (the [view] extra)",
    )
    p.add_argument("--prefix", help="topic prefix (default: mqtt.prefix)")
    p.add_argument("--group", help="join the shared subscription $share/GROUP/... (several views, one store)")
    p.add_argument(
        "--keep-days", type=float, default=None, help="remove what was received before (default: keep)"
    )
    p.add_argument("--max-gb", type=float, default=None, help="keep the stored pictures under this size")
    p.add_argument(
        "--password-file",
        type=Path,
        default=None,
        help="HTTP Basic password (user 'edge'); needed to listen beyond loopback ($EDGE_VIEW_PASSWORD too)",
    )
    p.add_argument("--tls-cert", type=Path, default=None, help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", type=Path, default=None, help="the certificate's key (PEM)")

    p = sub.add_parser("service", help="print the systemd unit for this install, or the env example")
    ssub = p.add_subparsers(dest="service_command", metavar="unit|env", required=True)
    ssub.add_parser(
        "unit",
        help="edge.service with ExecStart= for this install (e.g. | sudo tee /etc/systemd/system/edge.service)",
    )
    ssub.add_parser("env", help="the example /etc/edge/edge.env (every key commented)")

    p = sub.add_parser("mqtt", help="MQTT maintenance")
    msub = p.add_subparsers(dest="mqtt_command", metavar="forget", required=True)
    _settings_args(msub.add_parser("forget", help="remove this device's Home Assistant discovery config"))
    return parser


def _load(args: argparse.Namespace) -> LoadedSettings:
    return load_settings(config=args.config, profile=args.profile, overrides=args.overrides)


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "config":
        loaded = _load(args)
        if args.config_command == "show":
            from edge.config.render import render

            sys.stdout.write(render(loaded))
        else:
            from edge.cli.config_check import problems

            found = problems(loaded, offline=args.offline)
            if found:
                raise ConfigError(found)
            print(
                f"ok: {loaded.config_file or 'no config file'}; profile {loaded.settings.profile or '(none)'}"
            )
        return 0
    if cmd == "run":
        from edge.cli.config_check import start_problems
        from edge.daemon.app import run  # the daemon loads only for `run`: the other commands stay light

        loaded = _load(args)
        found = start_problems(loaded)  # what cannot work stays a config error, not a retry loop
        if found:
            raise ConfigError(found)
        return run(loaded, lambda: _load(args))
    if cmd == "caption":
        from edge.cli.oneshot import caption, caption_camera

        settings = _load(args).settings
        if args.camera:
            return caption_camera(settings, args.prompt, args.json)
        return caption(settings, args.image, args.prompt, args.json)
    if cmd == "ask":
        from edge.cli.oneshot import ask

        return ask(_load(args).settings, args.question, args.image, args.json)
    if cmd == "devices":
        from edge.cli.devices import devices_command

        return devices_command(_load_optional(args), args.json)
    if cmd == "doctor":
        from edge.cli.doctor.command import doctor_command

        return doctor_command(args)
    if cmd == "bench":
        if args.choose:
            from edge.cli.bench.choose import choose_command

            return choose_command(_load(args), args.json, args.budget_s or 600.0, args.out, args.job_s)
        from edge.cli.bench.command import bench_command

        return bench_command(
            _load(args),
            args.json,
            args.jobs,
            args.max_pairs,
            args.budget_s or 240.0,
            args.rotate_every,
            args.inproc_budget_s,
        )
    if cmd == "service":
        from edge.cli.service import service_command

        return service_command(args.service_command)
    if cmd == "watch":
        if args.duration is not None and args.duration <= 0:
            raise ConfigError(["--for: must be a positive number of seconds"])
        from edge.cli.watch import watch_command

        return watch_command(
            _load(args).settings,
            as_json=args.json,
            expect_complete=args.expect_complete,
            duration_s=args.duration,
            prefix=args.prefix,
            devices=args.devices,
            group=args.group,
            from_start=args.from_start,
        )
    if cmd == "view":
        from edge.cli.view import ViewOptions, view_command

        return view_command(
            _load(args).settings,
            ViewOptions(
                listen=args.listen,
                store=args.store,
                devices=tuple(args.devices),
                prefix=args.prefix,
                group=args.group,
                keep_days=args.keep_days,
                max_gb=args.max_gb,
                password_file=args.password_file,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
            ),
        )
    if cmd == "mqtt":
        return _forget(_load(args).settings)
    raise AssertionError(cmd)


def _forget(settings: Settings) -> int:
    from edge.mqtt.discovery import forget_device

    if forget_device(settings.mqtt, settings.device_id):
        print(f"removed Home Assistant discovery for {settings.device_id}")
        return 0
    print(
        f"edge: error: the broker did not confirm removing discovery for {settings.device_id}",
        file=sys.stderr,
    )
    return 1


def _load_optional(args: argparse.Namespace) -> Settings | None:
    """`edge devices` must work on a fresh board before any config exists."""
    try:
        return _load(args).settings
    except ConfigError as err:
        log.warning("settings not usable, detecting without them: %s", err)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    import os

    setup_logging(
        level=args.log_level or os.environ.get("EDGE_LOG_LEVEL", "INFO"),
        fmt=args.log_format or os.environ.get("EDGE_LOG_FORMAT", "auto"),
        debug=args.debug,
    )
    if args.command == "run":
        log_thread_crashes()
    try:
        return _dispatch(args)
    except ConfigError as err:
        for line in err.problems:
            print(f"edge: config error: {line}", file=sys.stderr)
        if args.debug:
            raise
        return 2
    except EdgeError as err:
        print(f"edge: error: {err}", file=sys.stderr)
        if args.debug:
            raise
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug: one line unless --debug; the daemon always keeps the stack
        if args.debug:
            raise
        if args.command == "run":
            log.critical("edge run crashed: %s: %s", type(err).__name__, err, exc_info=err)
            return 1
        print(
            f"edge: internal error: {type(err).__name__}: {err} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
