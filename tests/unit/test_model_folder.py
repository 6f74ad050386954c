"""Model folder validation on copies of the fixture folders, broken one way at a time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.core.errors import ModelError
from edge.inference.model_folder import inspect_folder, validate_for
from tests.plugins.models import model_dir

REPO = Path(__file__).resolve().parents[2]


def _copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    n = 1
    while dst.exists():
        n += 1
        dst = tmp_path / f"{name}-{n}"
    shutil.copytree(model_dir(name), dst)
    return dst


def _one_line_error(path: Path | str, backend: str | None = None) -> str:
    with pytest.raises(ModelError) as info:
        if backend is None:
            inspect_folder(path)
        else:
            validate_for(path, backend)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    ("name", "fmt", "kind", "mtype"),
    [
        ("ort-phi3-fp32", "ort-genai", "text", "phi3"),
        ("ort-phi3-int4", "ort-genai", "text", "phi3"),
        ("ort-phi3v-fp32", "ort-genai", "vision", "phi3v"),
        ("ov-phi3", "openvino", "text", "phi3"),
        ("ov-phi3v", "openvino", "vision", "phi3_v"),
    ],
)
def test_fixture_folders_are_recognised(name: str, fmt: str, kind: str, mtype: str) -> None:
    found = inspect_folder(model_dir(name))
    assert (found.format, found.kind, found.model_type, found.name) == (fmt, kind, mtype, name)
    assert found.vision == (kind == "vision")
    assert found.eos_token_ids  # <|end|> and friends come from the config
    if kind == "vision":
        assert found.num_crops == 4


def test_ort_external_data_files_are_checked() -> None:
    found = inspect_folder(model_dir("ort-phi3v-fp32"))
    for stem in ("text", "vision", "embedding"):
        assert f"phi-3.5-v-instruct-{stem}.onnx.data" in found.files


def test_path_not_set_missing_and_not_a_dir(tmp_path: Path) -> None:
    assert "model.path is not set" in _one_line_error(None)  # type: ignore[arg-type]
    assert "does not exist" in _one_line_error(tmp_path / "nope")
    f = tmp_path / "file"
    f.write_text("x")
    assert "is not a directory" in _one_line_error(f)


def test_empty_folder_is_not_a_model_folder(tmp_path: Path) -> None:
    msg = _one_line_error(tmp_path)
    assert "genai_config.json" in msg and "openvino_model.xml" in msg


def test_missing_external_data(tmp_path: Path) -> None:
    d = _copy("ort-phi3-fp32", tmp_path)
    (d / "model.onnx.data").unlink()
    assert "missing file model.onnx.data" in _one_line_error(d)


def test_missing_vision_model(tmp_path: Path) -> None:
    d = _copy("ort-phi3v-fp32", tmp_path)
    (d / "phi-3.5-v-instruct-vision.onnx").unlink()
    assert "phi-3.5-v-instruct-vision.onnx" in _one_line_error(d)


def test_empty_weights_file(tmp_path: Path) -> None:
    d = _copy("ort-phi3-fp32", tmp_path)
    (d / "model.onnx.data").write_bytes(b"")
    assert "model.onnx.data is empty" in _one_line_error(d)


def test_corrupt_json(tmp_path: Path) -> None:
    d = _copy("ort-phi3v-fp32", tmp_path)
    (d / "processor_config.json").write_text('{"processor": ')
    assert "processor_config.json is not valid JSON" in _one_line_error(d)
    d2 = _copy("ov-phi3", tmp_path)
    (d2 / "config.json").write_text("not json")
    assert "config.json is not valid JSON" in _one_line_error(d2)


def test_truncated_tokenizer_json(tmp_path: Path) -> None:
    d = _copy("ort-phi3-fp32", tmp_path)
    data = (d / "tokenizer.json").read_bytes()
    (d / "tokenizer.json").write_bytes(data[: len(data) // 2])
    assert "tokenizer.json is not valid JSON" in _one_line_error(d)


def test_unsupported_model_type(tmp_path: Path) -> None:
    d = _copy("ort-phi3-fp32", tmp_path)
    cfg = json.loads((d / "genai_config.json").read_text())
    cfg["model"]["type"] = "llama"
    (d / "genai_config.json").write_text(json.dumps(cfg))
    assert "model type 'llama' is not supported" in _one_line_error(d)
    d2 = _copy("ov-phi3v", tmp_path)
    cfg = json.loads((d2 / "config.json").read_text())
    cfg["model_type"] = "qwen2_vl"
    (d2 / "config.json").write_text(json.dumps(cfg))
    assert "model_type 'qwen2_vl' is not supported" in _one_line_error(d2)


def test_ov_ir_xml_corrupt_or_bin_missing(tmp_path: Path) -> None:
    d = _copy("ov-phi3", tmp_path)
    (d / "openvino_model.xml").write_text("<net><layers>")
    assert "openvino_model.xml is not valid XML" in _one_line_error(d)
    d2 = _copy("ov-phi3v", tmp_path)
    (d2 / "openvino_vision_projection_model.bin").unlink()
    assert "missing file openvino_vision_projection_model.bin" in _one_line_error(d2)
    d3 = _copy("ov-phi3", tmp_path)
    (d3 / "openvino_detokenizer.xml").unlink()
    assert "openvino_detokenizer.xml" in _one_line_error(d3)


def test_vision_config_without_vision_files(tmp_path: Path) -> None:
    d = _copy("ov-phi3", tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "phi3_v"
    (d / "config.json").write_text(json.dumps(cfg))
    assert "openvino_language_model.xml is missing" in _one_line_error(d)


def test_wrong_format_for_backend() -> None:
    msg = _one_line_error(model_dir("ov-phi3v"), "ort-genai")
    assert "OpenVINO IR folder" in msg and "model.backend = 'openvino'" in msg
    msg = _one_line_error(model_dir("ort-phi3-fp32"), "openvino")
    assert "ONNX Runtime GenAI folder" in msg and "'ort-genai'" in msg
    assert validate_for(model_dir("ort-phi3-fp32"), "ort-genai").format == "ort-genai"


@pytest.fixture
def world_readable_tmp() -> Iterator[Path]:
    """A temp dir another user can traverse (pytest's tmp_path is private to the test user)."""
    d = Path(tempfile.mkdtemp(prefix="edge-mf-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_weights_unreadable_by_the_service_user(world_readable_tmp: Path) -> None:
    """onnx writes external data 0600: a service user then cannot read what root converted."""
    d = world_readable_tmp / "m"
    shutil.copytree(model_dir("ort-phi3-fp32"), d)
    os.chmod(d, 0o755)
    for f in d.iterdir():
        os.chmod(f, 0o644)
    os.chmod(d / "model.onnx.data", 0o600)
    if os.geteuid() != 0:
        assert "model.onnx.data is not readable" in _one_line_error(d)
        return
    # As root every file is readable: check as 'nobody', the way a service user would see it. The
    # child drops privileges after its imports (the interpreter itself may live under /root).
    code = (
        "import os, sys\nfrom edge.core.errors import ModelError\nfrom edge.inference.model_folder import inspect_folder\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        f"try:\n    inspect_folder({str(d)!r})\nexcept ModelError as e:\n    print(e); sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(REPO)
    )
    assert proc.returncode == 3, proc.stderr
    out = proc.stdout.strip()
    assert (
        "model.onnx.data is not readable by uid 65534" in out and "mode 0600" in out and "owner uid 0" in out
    )
