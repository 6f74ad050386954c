"""What each process loads, held by structure (which modules end up in sys.modules), never by megabytes:
the figures are benchmarks/memory.py's.

- The main process (`edge run` imports edge.daemon.app): no model runtime, those are the worker's;
  no pydantic-settings, whose sources the loader never used (it reads the environment itself).
- The vision worker (edge.inference.worker and the backend it loads): no OpenCV. Its runtimes take
  arrays; importing cv2 only to validate them cost the worker about 30 MB of RSS.

Each check imports in a fresh interpreter, so what another test imported cannot hide or fake a load.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

MODEL_RUNTIMES = (
    "onnxruntime_genai",
    "onnxruntime",
    "openvino",
    "openvino_genai",
    "tokenizers",
    "transformers",
)


def modules_after(*names: str) -> set[str]:
    code = "import importlib, json, sys\nfor n in sys.argv[1:]: importlib.import_module(n)\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


def test_the_main_process_loads_no_model_runtime_and_no_pydantic_settings() -> None:
    loaded = modules_after("edge.cli.main", "edge.daemon.app")
    assert "edge.daemon.app" in loaded  # the import did happen
    assert sorted(loaded & {*MODEL_RUNTIMES, "pydantic_settings", "dotenv"}) == []


@pytest.mark.parametrize("backend", ["edge.inference.ort_genai", "edge.inference.openvino_genai"])
def test_the_worker_of_an_array_runtime_loads_no_opencv(backend: str) -> None:
    loaded = modules_after("edge.inference.worker", "edge.inference.registry", backend)
    assert backend in loaded
    assert "cv2" not in loaded
