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


def export(work: Path, out: Path) -> None:
    from .export import export_all

    export_all(work, out)


def evaluate(out: Path, scenes: int, backends: list[str], crops: list[int]) -> int:
    from .evaluate import run

    return run(out, scenes, backends, crops)
