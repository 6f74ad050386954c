"""The decoder's training examples as token ids: a bank that train_bank.py reads without this project.

An example is one or two scenes (per third: shape class, color class), a prompt and the one right
answer, for every task the stand-in answers (captions, the four questions, JSON, and "what changed"
over two images). The prompt text around the image slots is stored as each runtime's tokenizer gives
it: ORT GenAI's (the HF tokenizer, which edge runs piece by piece) and OpenVINO Tokenizers' (other
merges around special tokens and newlines). Pieces, for n images:

    head  [image 1]  mid  [image 2]  tail+answer      (mid only with two images)
    head = "<|user|>\\n", mid = "\\n", tail = "\\n{prompt}<|end|>\\n<|assistant|>\\n"

The bank is seeded: the same seed gives the same examples. A validation split (another seed) is
stored beside the training one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from . import world as W

log = logging.getLogger(__name__)

KINDS = (
    "caption",
    "question:color",
    "question:count",
    "question:exists",
    "question:where",
    "json",
    "change",
)
HEAD = "<|user|>\n"
MID = "\n"
TAIL = "\n{prompt}<|end|>\n<|assistant|>\n"
# task mix: caption, question, json, change (two images)
MIX = (0.22, 0.43, 0.15, 0.20)


def _classes(scene: W.Scene) -> tuple[list[int], list[int]]:
    shapes, colors = [0, 0, 0], [-1, -1, -1]
    for s in scene.shapes:
        t = W.POSITIONS.index(s.position)
        shapes[t] = W.SHAPES.index(s.shape) + 1
        colors[t] = W.COLORS.index(s.color)
    return shapes, colors


def _examples(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        scene = W.random_scene(rng)
        task = int(rng.choice(4, p=MIX))
        if task == 3:
            after = W.random_change(scene, rng)
            prompt = W.CHANGE_PROMPTS[rng.integers(len(W.CHANGE_PROMPTS))]
            yield "change", (scene, after), prompt, W.answer_changed(scene, after)
            continue
        weights = [(1, 0, 0), (0, 1, 0), (0, 0, 1)][task]
        kind, prompt, answer = W.sample_task(scene, rng, weights)
        yield kind, (scene,), prompt, answer


class _Table:
    """Unique strings -> index, and their token ids (ragged, flattened)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def add(self, text: str) -> int:
        return self.index.setdefault(text, len(self.index))

    def encode(self, encode) -> tuple[np.ndarray, np.ndarray]:
        rows = [encode(t) for t in self.index]
        offsets = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
        return np.concatenate([np.asarray(r, np.int32) for r in rows]), offsets


def build(work: Path, out: Path, n_train: int, n_val: int, seed: int = 2026) -> Path:
    """Write `out` (npz) with the examples of both splits and the token ids of both runtimes."""
    from .pipeline import tokenizer
    from .train import DECODER_SIZES, _ov_encoder, decoder_config

    ids = tokenizer(work)
    from tokenizers import Tokenizer

    hf_tok = Tokenizer.from_file(str(work / "tokenizer" / "tokenizer.json"))

    def hf_encode(text: str) -> list[int]:
        return hf_tok.encode(text, add_special_tokens=False).ids

    ov_encode = _ov_encoder(work / "tokenizer")
    prompts, answers = _Table(), _Table()
    arrays: dict[str, np.ndarray] = {}
    for split, n, s in (("train", n_train, seed), ("val", n_val, seed + 1)):
        kind = np.zeros(n, np.int8)
        n_img = np.zeros(n, np.int8)
        shapes = np.zeros((n, 2, 3), np.int8)
        colors = np.full((n, 2, 3), -1, np.int8)
        p_idx = np.zeros(n, np.int32)
        a_idx = np.zeros(n, np.int32)
        for i, (k, scenes, prompt, answer) in enumerate(_examples(n, s)):
            kind[i] = KINDS.index(k)
            n_img[i] = len(scenes)
            for j, sc in enumerate(scenes):
                shapes[i, j], colors[i, j] = _classes(sc)
            p_idx[i] = prompts.add(TAIL.format(prompt=prompt))
            a_idx[i] = answers.add(answer)
        arrays.update(
            {
                f"{split}_kind": kind,
                f"{split}_n_img": n_img,
                f"{split}_shapes": shapes,
                f"{split}_colors": colors,
                f"{split}_prompt": p_idx,
                f"{split}_answer": a_idx,
            }
        )
        log.info(
            "bank %s: %d examples, %d prompts, %d answers so far",
            split,
            n,
            len(prompts.index),
            len(answers.index),
        )
    for side, enc in (("ort", hf_encode), ("ov", ov_encode)):
        arrays[f"prompt_tok_{side}"], arrays[f"prompt_off_{side}"] = prompts.encode(enc)
        arrays[f"head_{side}"] = np.asarray(enc(HEAD), np.int32)
        arrays[f"mid_{side}"] = np.asarray(enc(MID), np.int32)
    arrays["answer_tok"], arrays["answer_off"] = answers.encode(hf_encode)
    cfg = decoder_config(ids).to_dict()
    meta = {
        "kinds": list(KINDS),
        "bos": ids.bos,
        "end": ids.end,
        "hf_config": {
            k: v for k, v in cfg.items() if isinstance(v, (int, float, str, bool, list, dict, type(None)))
        },
        "decoder_sizes": DECODER_SIZES,
        "seed": seed,
        "mix": MIX,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    log.info("bank written: %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out
