"""[model] threads as each runtime reads it (no SDK needed)."""

from __future__ import annotations

import json
from pathlib import Path

from edge.config.settings import OpenVINOModelSettings
from edge.inference.model_folder import validate_for
from edge.inference.openvino_genai import _properties, cache_root
from edge.inference.ort_genai import thread_overlay
from tests.plugins.models import model_dir


def test_ort_overlay_sets_intra_op_threads_on_each_session_the_folder_has() -> None:
    vision = json.loads((model_dir("ort-phi3v-fp32") / "genai_config.json").read_text())
    text = json.loads((model_dir("ort-phi3-fp32") / "genai_config.json").read_text())
    v = json.loads(thread_overlay(vision, 3))["model"]
    t = json.loads(thread_overlay(text, 2))["model"]
    assert set(v) == {"decoder", "vision", "embedding"} and set(t) == {"decoder"}
    assert all(s["session_options"] == {"intra_op_num_threads": 3} for s in v.values())


def test_openvino_threads_on_cpu_only_and_provider_options_win(tmp_path: Path) -> None:
    folder = validate_for(model_dir("ov-phi3v"), "openvino")
    s = OpenVINOModelSettings(path=folder.path, backend="openvino", providers=["CPU"], threads=2)
    assert _properties(s, "CPU", folder)["INFERENCE_NUM_THREADS"] == 2
    assert "INFERENCE_NUM_THREADS" not in _properties(s, "GPU", folder)
    s2 = s.model_copy(update={"provider_options": {"CPU": {"INFERENCE_NUM_THREADS": "4"}}})
    assert _properties(s2, "CPU", folder)["INFERENCE_NUM_THREADS"] == 4
    assert "INFERENCE_NUM_THREADS" not in _properties(s.model_copy(update={"threads": None}), "CPU", folder)


def test_openvino_cache_is_cache_dir_else_systemds_cache_directory(tmp_path: Path, monkeypatch) -> None:
    """The unit no longer sets EDGE_MODEL__CACHE_DIR (an OpenVINO-only key would fail the other
    backends): an unset cache_dir under systemd is $CACHE_DIRECTORY (CacheDirectory=edge)."""
    folder = validate_for(model_dir("ov-phi3v"), "openvino")
    s = OpenVINOModelSettings(path=folder.path, backend="openvino", providers=["CPU"])
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    assert cache_root(s) is None and "CACHE_DIR" not in _properties(s, "CPU", folder)
    monkeypatch.setenv("CACHE_DIRECTORY", f"{tmp_path / 'unit'}:{tmp_path / 'other'}")
    assert _properties(s, "CPU", folder)["CACHE_DIR"] == str(tmp_path / "unit" / "openvino")
    own = s.model_copy(update={"cache_dir": tmp_path / "own"})
    assert cache_root(own) == tmp_path / "own"


def test_the_unit_sets_no_model_key_of_one_backend() -> None:
    unit = (Path(__file__).resolve().parents[2] / "systemd" / "edge.service").read_text()
    assert "EDGE_MODEL__" not in unit
