"""ONNX Runtime GenAI text models: the real model builder on the tiny checkpoint, plus the EOS bias.

The builder runs as a subprocess (`python -m onnxruntime_genai.models.builder`), the way users run it,
so the fixture carries exactly what the builder writes: model.onnx(+.data) and genai_config.json.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from . import spec
from .tokenizer import copy_tokenizer

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """A step of the fixture build failed; the message carries the tool's last output lines."""


def run_builder(hf_dir: Path, out: Path, cache: Path, precision: str, extra_options: list[str] = ()) -> None:
    """Run the ORT GenAI model builder for the CPU execution provider."""
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(out)]
    cmd += ["-p", precision, "-e", "cpu", "-c", str(cache)]
    if extra_options:
        cmd += ["--extra_options", *extra_options]
    # The builder stamps `git rev-parse HEAD` of whatever repo holds its venv into producer_version;
    # hide git so it uses the wheel's own commit and reruns give the same bytes.
    env = {**os.environ, "GIT_DIR": os.devnull}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise BuildError(f"model builder failed for {out.name} (exit {proc.returncode}):\n{tail}")
    log.info("builder done out=%s precision=%s", out, precision)


def build_text(hf_dir: Path, out: Path, cache: Path, precision: str, tokenizer_dir: Path) -> Path:
    """A Phi-3.5-mini-shaped text folder (type phi3) at fp32 or int4."""
    run_builder(hf_dir, out, cache, precision)
    copy_tokenizer(tokenizer_dir, out)
    return out


def add_logits_bias(model_dir: Path, token_id: int, bias: float = spec.EOS_BIAS) -> None:
    """Add a constant to one vocab entry of the decoder's logits output.

    With token_id = <|end|> the model answers <|end|> first, which gives tests a deterministic
    immediate-EOS path. The weights' external data stays untouched (only the graph is rewritten).
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    gc = json.loads((model_dir / "genai_config.json").read_text(encoding="utf-8"))
    decoder = gc["model"]["decoder"]
    path = model_dir / decoder["filename"]
    model = onnx.load(str(path), load_external_data=False)
    logits = decoder["outputs"]["logits"]
    producer = next(n for n in model.graph.node if logits in n.output)
    raw = logits + "_unbiased"
    producer.output[list(producer.output).index(logits)] = raw
    bias_values = np.zeros(gc["model"]["vocab_size"], np.float32)
    bias_values[token_id] = bias
    model.graph.initializer.append(numpy_helper.from_array(bias_values, "fixture_logits_bias"))
    model.graph.node.append(
        helper.make_node("Add", [raw, "fixture_logits_bias"], [logits], name="fixture_logits_bias_add")
    )
    onnx.save(model, str(path))
    log.info("logits bias model=%s token=%s bias=%s", path, token_id, bias)
