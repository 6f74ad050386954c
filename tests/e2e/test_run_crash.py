"""A crash of `edge run` keeps its evidence: the traceback goes through logging (the journal), while
other commands keep their one-line error. The fault is injected by a sitecustomize on PYTHONPATH,
the only code the subprocess runs that the product does not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

INJECT = """
import edge.daemon.systemd as systemd
import edge.config.render as render

def _boom(*args, **kwargs):
    raise RuntimeError("injected fault")

systemd.Notifier.status = _boom
render.render = _boom
"""


def edge(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(INJECT)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "JOURNAL_STREAM"))}
    environ.update(env, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        cwd=tmp_path,
    )


def test_run_crash_logs_the_traceback_to_the_journal_without_debug(tmp_path: Path) -> None:
    res = edge(tmp_path, "run", "--profile", "demo", "--set", "mqtt.port=1", JOURNAL_STREAM="8:1")
    assert res.returncode == 1, res.stderr
    lines = res.stderr.splitlines()
    crash = [line for line in lines if line.startswith("<2>edge: ")]
    assert crash[0] == "<2>edge: edge run crashed: RuntimeError: injected fault"
    assert "<2>edge: Traceback (most recent call last):" in crash
    assert any("in _boom" in line for line in crash)
    assert crash[-1] == "<2>edge: RuntimeError: injected fault"
    assert "--debug" not in res.stderr


def test_other_commands_keep_the_one_line_error(tmp_path: Path) -> None:
    res = edge(tmp_path, "config", "show", "--profile", "demo")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "edge: internal error: RuntimeError: injected fault (run with --debug for the traceback)"
    ]
