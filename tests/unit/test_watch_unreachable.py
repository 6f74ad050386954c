"""`edge watch` on a port where no broker listens says so at once, not a subscription timeout."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_watch_on_a_dead_port_says_connection_refused(tmp_path: Path) -> None:
    port = _closed_port()
    res = subprocess.run(
        [sys.executable, "-m", "edge.cli", "watch", "--profile", "demo", "--set", f"mqtt.port={port}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin", "PYTHONPATH": str(REPO)},
    )
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"edge: error: broker 127.0.0.1:{port} (mqtt.host, mqtt.port): cannot connect: connection refused"
    ]


def test_a_state_without_a_provider_shows_no_none() -> None:
    import io

    from edge.cli.watch import Printer
    from edge.consumer.models import Delivery
    from edge.core.messages import StatePayload

    out = io.StringIO()
    state = StatePayload(
        state="degraded", version="0", device="cam", model="phi", backend="openvino", provider=None,
        tasks=["caption"], since="2026-01-01T00:00:00Z",
    )  # fmt: skip
    Printer(out, as_json=False).delivery(
        Delivery(topic="edge/cam/state", kind="state", device="cam", payload=state), None
    )
    line = out.getvalue().strip()
    assert line.endswith("state degraded  phi (openvino)") and "None" not in line, line
