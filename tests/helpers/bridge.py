"""The packaged mosquitto bridge recipe rendered for a test or a benchmark (one copy for both)."""

from __future__ import annotations

from edge.assets import package_file

BRIDGE_EXAMPLE = package_file("assets/mosquitto/bridge.conf.example")


def render_bridge(overrides: dict[str, str | None]) -> list[str]:
    """The packaged example with some options' values replaced (None: the line dropped)."""
    out = []
    for line in BRIDGE_EXAMPLE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key = line.split()[0]
        if key in overrides:
            if overrides[key] is None:
                continue
            line = f"{key} {overrides[key]}"
        out.append(line)
    return out
