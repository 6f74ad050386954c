"""What each process loads, held by structure (which modules end up in sys.modules), never by megabytes:
the figures are benchmarks/memory.py's.

- The main process (`edge run` imports edge.daemon.app): no model runtime, those are the worker's;
  no pydantic-settings, whose sources the loader never used (it reads the environment itself).
- The main process with cameras that are drawn or send JPEG (testsrc, MJPEG over HTTP, a JPEG
  folder): no OpenCV (~33 MB of RSS), through capture, the gate and the published picture; a source
  read through cv2.VideoCapture (RTSP here) does load it.
- The vision worker (edge.inference.worker and the backend it loads): no OpenCV. Its runtimes take
  arrays; importing cv2 only to validate them cost the worker about 30 MB of RSS.

Each check imports in a fresh interpreter, so what another test imported cannot hide or fake a load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
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


FRAME_PATH = """
import json, sys, tempfile, time
from pathlib import Path

import numpy as np

import edge.cli.main, edge.daemon.app
from edge.capture.factory import build_camera
from edge.config.settings import CameraSettings, GateSettings
from edge.core.messages import Frame
from edge.imaging import jpeg
from edge.imaging.frames import prepare_image
from edge.imaging.gate import Gate
from edge.imaging.imageio import encode_jpeg

folder = Path(tempfile.mkdtemp())
(folder / "a.jpg").write_bytes(jpeg.encode(np.full((480, 640, 3), 90, np.uint8), 85))
gate = Gate(GateSettings())
for source in sys.argv[1:]:
    camera = build_camera(CameraSettings(name="cam", source=source.replace("FOLDER", str(folder))))
    if source != "http://127.0.0.1:9/stream.mjpg":  # built only: nothing listens there
        camera.open()
        image = prepare_image(camera.read(), 1920)
        camera.close()
        gate.decide(Frame(image, time.time(), time.monotonic(), 0, "cam"), time.monotonic())
        encode_jpeg(image, 60_000)
print(json.dumps(sorted(sys.modules)))
"""


def modules_after_frames(*sources: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", FRAME_PATH, *sources], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


def test_the_main_process_of_cameras_that_are_drawn_or_send_jpeg_loads_no_opencv() -> None:
    loaded = modules_after_frames("testsrc", "FOLDER", "http://127.0.0.1:9/stream.mjpg")
    assert {"edge.capture.testsrc", "edge.capture.images_dir", "edge.capture.http_mjpeg"} <= loaded
    assert {"edge.imaging.jpeg", "edge.imaging.gate"} <= loaded
    assert "cv2" not in loaded


def test_a_camera_read_through_videocapture_loads_opencv() -> None:
    loaded = modules_after("edge.daemon.app", "edge.capture.opencv_source")
    assert "cv2" in loaded


BROKEN_OPENCV = """
import sys
from edge.capture.factory import require_libraries
from edge.config.settings import CameraSettings
from edge.core.errors import EdgeError

require_libraries([CameraSettings(name="a", source="testsrc"), CameraSettings(name="b", source="http://h/x.mjpg")])
print("drawn and MJPEG: fine")
try:
    require_libraries([CameraSettings(name="a", source="testsrc"), CameraSettings(name="b", source="rtsp://h/s")])
except EdgeError as err:
    print("rtsp:", err)
"""


def test_a_broken_opencv_is_one_line_at_start_only_for_a_camera_that_needs_it(tmp_path: Path) -> None:
    (tmp_path / "cv2").mkdir()
    (tmp_path / "cv2" / "__init__.py").write_text(
        "raise ImportError('libGL.so.1: cannot open shared object file')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    out = subprocess.run(
        [sys.executable, "-c", BROKEN_OPENCV], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "drawn and MJPEG: fine"
    assert lines[1].startswith("rtsp: OpenCV (cv2) cannot be imported: libGL.so.1"), lines
