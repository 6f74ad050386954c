"""OpenVINO IR of the tiny text model for openvino_genai.LLMPipeline.

optimum-intel's exporter (the tool behind `optimum-cli export openvino`) writes openvino_model.xml/.bin
with config.json and generation_config.json; openvino_tokenizers turns the shared tokenizer into
openvino_tokenizer/openvino_detokenizer IRs (chat template included in their rt_info).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .tokenizer import copy_tokenizer

log = logging.getLogger(__name__)


def write_ov_tokenizer(tokenizer_dir: Path, out: Path) -> None:
    """openvino_tokenizer.xml/.bin and openvino_detokenizer.xml/.bin from the shared tokenizer."""
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer
    from transformers import AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tokenizer, detokenizer = convert_tokenizer(hf_tokenizer, with_detokenizer=True)
    ov.save_model(tokenizer, str(out / "openvino_tokenizer.xml"))
    ov.save_model(detokenizer, str(out / "openvino_detokenizer.xml"))


def export_ir(hf_dir: Path, out: Path, task: str) -> None:
    """optimum-intel export at fp32 (the model is tiny), without its own tokenizer conversion."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from optimum.exporters.openvino import main_export
    from optimum.intel import OVConfig

    main_export(
        model_name_or_path=str(hf_dir),
        output=str(out),
        task=task,
        convert_tokenizer=False,
        ov_config=OVConfig(dtype="fp32"),
    )


def build_text(hf_dir: Path, out: Path, work: Path, tokenizer_dir: Path) -> Path:
    """The ov-phi3 folder."""
    staging = work / "ov-phi3-export"
    if staging.exists():
        shutil.rmtree(staging)
    export_ir(hf_dir, staging, "text-generation-with-past")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("openvino_model.xml", "openvino_model.bin", "config.json", "generation_config.json"):
        shutil.copy(staging / name, out / name)
    copy_tokenizer(tokenizer_dir, out)
    write_ov_tokenizer(tokenizer_dir, out)
    log.info("openvino text built out=%s", out)
    return out
