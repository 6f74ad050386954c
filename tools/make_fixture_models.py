#!/usr/bin/env python3
"""Regenerate the tiny fixture models under tests/fixtures/models (fixed seeds, offline).

    pip install -e .[fixtures]        # or the pinned list in tests/fixtures/models/README.md
    python tools/make_fixture_models.py [--out DIR] [--only ort|openvino]

Outputs are random-weight models in the real on-disk formats of ONNX Runtime GenAI and OpenVINO GenAI;
their text is noise. The intermediate Hugging Face checkpoints are built in a temp dir and discarded.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixture_models import hf_phi3, spec  # noqa: E402
from fixture_models.manifest import fix_modes, write_manifest  # noqa: E402
from fixture_models.tokenizer import write_tokenizer  # noqa: E402

log = logging.getLogger("make_fixture_models")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "models"
_VERSIONED = (
    "torch",
    "transformers",
    "tokenizers",
    "onnx",
    "onnx-ir",
    "onnxruntime",
    "onnxruntime-genai",
    "openvino",
    "openvino-genai",
    "openvino-tokenizers",
    "optimum-intel",
)


def _versions() -> dict[str, str]:
    found = {}
    for dist in _VERSIONED:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


def build_ort(out: Path, work: Path, ids: spec.TokenIds, tok_dir: Path) -> None:
    """ort-phi3-{fp32,int4,eos}, ort-phi3v-{fp32,eos}."""
    from fixture_models import ort_text, ort_vision

    cache = work / "builder-cache"
    hf_text = hf_phi3.write_checkpoint(work / "hf-phi3", ids, tok_dir)
    hf_vision = hf_phi3.write_checkpoint(work / "hf-phi3v", ids, tok_dir, architecture="Phi3VForCausalLM")
    for precision in ("fp32", "int4"):
        ort_text.build_text(hf_text, _fresh(out / f"ort-phi3-{precision}"), cache, precision, tok_dir)
    eos = _fresh(out / "ort-phi3-eos")
    shutil.copytree(out / "ort-phi3-fp32", eos)
    ort_text.add_logits_bias(eos, ids.end)
    ort_vision.build_phi3v(hf_vision, _fresh(out / "ort-phi3v-fp32"), cache, tok_dir)
    vision_eos = _fresh(out / "ort-phi3v-eos")
    shutil.copytree(out / "ort-phi3v-fp32", vision_eos)
    ort_text.add_logits_bias(vision_eos, ids.end)


def build_openvino(out: Path, work: Path, ids: spec.TokenIds, tok_dir: Path) -> None:
    """ov-phi3 (LLMPipeline) and ov-phi3v (VLMPipeline)."""
    from fixture_models import ov_text, ov_vision

    hf_text = work / "hf-phi3"
    if not hf_text.exists():
        hf_phi3.write_checkpoint(hf_text, ids, tok_dir)
    ov_text.build_text(hf_text, _fresh(out / "ov-phi3"), work, tok_dir)
    ov_vision.build_phi3v(hf_text, _fresh(out / "ov-phi3v"), work, ids, tok_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output dir (default: %(default)s)")
    parser.add_argument("--only", choices=("ort", "openvino"), help="build one backend's folders")
    parser.add_argument("--work", type=Path, help="keep intermediate HF checkpoints here (default: temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    started = time.perf_counter()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edge-fixtures-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        tok_dir = work / "tokenizer"
        ids = write_tokenizer(tok_dir)
        if args.only in (None, "ort"):
            build_ort(out, work, ids, tok_dir)
        if args.only in (None, "openvino"):
            build_openvino(out, work, ids, tok_dir)
    fix_modes(out)
    write_manifest(out, ids, _versions())
    (out / "manifest.json").chmod(0o644)
    log.info("fixtures done out=%s seconds=%.1f", out, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
