"""`edge devices` asks whether each backend's SDK imports in a child process: an SDK that kills the
process on import (SIGSEGV, as onnxruntime does on a CPU it misreads) or hangs is one line of the
table. The children are real processes importing real (fake-SDK) modules that really crash."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli.devices import detect, render_table
from edge.cli.sdk_probe import probe_sdks
from edge.inference import registry

REPO = Path(__file__).resolve().parents[2]
SEGFAULT = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"


@pytest.fixture
def fake_sdks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Modules the probe children can import: one crashes, one hangs, one says why it is missing."""
    (tmp_path / "crashing_backend.py").write_text(SEGFAULT)
    (tmp_path / "hanging_backend.py").write_text("import time\ntime.sleep(120)\n")
    (tmp_path / "absent_backend.py").write_text(
        "def sdk_available():\n    return 'Foo SDK is not installed'\n"
    )
    (tmp_path / "raising_backend.py").write_text("raise RuntimeError('bad build of the runtime')\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), str(REPO), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    return tmp_path


def test_each_answer_comes_back_whatever_the_child_does(fake_sdks: Path) -> None:
    answers = probe_sdks(
        {
            "crash": "crashing_backend",
            "hang": "hanging_backend",
            "absent": "absent_backend",
            "raises": "raising_backend",
            "gone": "no_such_backend_module",
            "http": "edge.inference.http_backend",
        },
        timeout_s=10.0,
    )
    assert list(answers) == ["crash", "hang", "absent", "raises", "gone", "http"]
    assert answers["crash"] == "importing its SDK crashed the process (SIGSEGV, exit -11)"
    assert answers["hang"] == "importing its SDK did not finish within 10 s"
    assert answers["absent"] == "Foo SDK is not installed"
    assert answers["raises"] == "importing its SDK failed: RuntimeError: bad build of the runtime"
    assert str(answers["gone"]).startswith("backend module missing: No module named 'no_such_backend_module'")
    assert answers["http"] is True


def test_a_backend_whose_sdk_segfaults_is_a_line_of_the_report(
    fake_sdks: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(
        registry,
        "BACKENDS",
        {
            "ort-genai": ("crashing_backend", "load", "ort"),
            "http": ("edge.inference.http_backend", "load", "http"),
        },
    )
    report = detect(tmp_path / "empty-root", probe=True)
    ort, http = report.backends
    assert (ort.name, ort.installed, ort.providers) == ("ort-genai", False, ())
    assert "crashed the process (SIGSEGV, exit -11)" in ort.detail
    assert http.installed
    assert re.search(r"ort-genai\s+not installed: importing its SDK crashed", render_table(report))


def test_edge_devices_survives_a_runtime_that_crashes_on_import(tmp_path: Path) -> None:
    """The whole command, with an onnxruntime_genai that segfaults on import shadowing the real one."""
    (tmp_path / "onnxruntime_genai").mkdir()
    (tmp_path / "onnxruntime_genai" / "__init__.py").write_text(SEGFAULT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "devices"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith("ort-genai"))
    assert "not installed: importing its SDK crashed the process (SIGSEGV, exit -11)" in line
    assert re.search(r"openvino\s+installed", proc.stdout)  # the other backends still answer
    assert "suggested profile:" in proc.stdout
