"""The stages behind tools/train_standin.py."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def tokenizer(work: Path):
    from fixture_models.tokenizer import write_tokenizer

    from .world import corpus

    return write_tokenizer(work / "tokenizer", corpus=corpus())


def vision(work: Path, steps: int, workers: int, resume: int = 0) -> None:
    from .train import train_vision

    train_vision(work, steps, workers=workers, reuse=4, resume=resume)


def decoder(work: Path, steps: int, resume: int = 0, stop: int | None = None, **kw) -> None:
    from .train import train_decoder

    ids = tokenizer(work)
    train_decoder(work, work / "tokenizer", ids, steps, resume=resume, stop=stop, **kw)


def bank(work: Path, n_train: int, n_val: int) -> Path:
    from .bank import build

    return build(work, work / "bank.npz", n_train, n_val)


def adopt(work: Path, trained: Path) -> None:
    """train_bank.py's checkpoint (decoder.pt, projection.pt) -> work/decoder-hf (an HF checkpoint
    that loads strictly into transformers' Phi3ForCausalLM) and work/projection.pt."""
    import shutil

    import torch
    from transformers import Phi3ForCausalLM

    from .train import decoder_config

    ids = tokenizer(work)
    model = Phi3ForCausalLM(decoder_config(ids))
    model.load_state_dict(torch.load(trained / "decoder.pt", map_location="cpu"), strict=True)
    model.save_pretrained(str(work / "decoder-hf"), safe_serialization=True)
    shutil.copy(trained / "projection.pt", work / "projection.pt")
    log.info("adopted %s into %s", trained, work)


def vision_from_folder(work: Path, ort_folder: Path) -> None:
    """work/vision.pt from an exported ORT folder's vision graph (export.ort_vision_model's
    initializer names): a later round can retrain the decoder on a classifier already trained."""
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(next(ort_folder.glob("*-vision.onnx")))).graph
    w = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    sd = {}
    for i, name in enumerate(("conv1", "conv2", "conv3"), 1):
        sd[f"trunk.{name}.weight"] = torch.from_numpy(w[f"c{i}w"].copy())
        sd[f"trunk.{name}.bias"] = torch.from_numpy(w[f"c{i}b"].copy())
    for i in (1, 2):
        sd[f"head.fc{i}.weight"] = torch.from_numpy(w[f"h{i}w"].T.copy())
        sd[f"head.fc{i}.bias"] = torch.from_numpy(w[f"h{i}b"].copy())
    torch.save(sd, work / "vision.pt")
    log.info("vision.pt from %s", ort_folder)


def export(work: Path, out: Path) -> None:
    from .export import export_all

    export_all(work, out)


def evaluate(out: Path, scenes: int, backends: list[str], crops: list[int]) -> int:
    from .evaluate import run

    return run(out, scenes, backends, crops)
