"""The stand-in's language side: a Phi-3 decoder that reads the scene code from the image tokens.

Every image token of a frame carries the same vector (the projected scene code), so the decoder sees
`<|user|>\\n [image x N] \\n{prompt}<|end|>\\n<|assistant|>\\n` and learns to answer from it. Trained
with the real token counts of num_crops 1 and 4 (313 and 757 for 4:3..16:9 frames) and others,
on scene codes drawn from the grammar (one-hot probabilities, blurred like a confident classifier).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edge.inference import phi3v_preprocess as pp

# The projection lives in phi3_torch (one definition: train_bank.py imports it without this project).
from .phi3_torch import THIRD_CODE, SceneProjection, third_codes  # noqa: F401
from .vision import N_COLOR, N_SHAPE
from .world import COLORS, POSITIONS, SHAPES, Scene, random_scene, sample_task

USER_PIECE = "<|user|>\n"
ASSISTANT_TAIL = "<|end|>\n<|assistant|>\n"
# Image token counts seen in training: num_crops 1 (any frame), 4 (4:3..16:9), and a few others.
COUNTS = (313, 757, 313, 757, 457, 601, 1201)


def prompt_pieces(prompt: str) -> tuple[str, str]:
    """The text around the image slot, exactly as edge.inference.prompts.chat_prompt + split_image_tags
    give them for one image and no system prompt."""
    return USER_PIECE, "\n" + prompt + ASSISTANT_TAIL


def code_from_scene(scene: Scene, rng: np.random.Generator | None = None, blur: float = 0.0) -> np.ndarray:
    """The 30-number scene code a perfect classifier gives (blurred by up to `blur` when rng is set)."""
    shape = np.zeros((3, N_SHAPE), np.float32)
    color = np.zeros((3, N_COLOR), np.float32)
    shape[:, 0] = 1.0
    filled = set()
    for s in scene.shapes:
        t = POSITIONS.index(s.position)
        shape[t] = 0.0
        shape[t, SHAPES.index(s.shape) + 1] = 1.0
        color[t, COLORS.index(s.color)] = 1.0
        filled.add(t)
    for t in range(3):
        if t not in filled:
            color[t] = rng.dirichlet(np.ones(N_COLOR)) if rng is not None else 1.0 / N_COLOR
    if rng is not None and blur > 0:
        for arr in (shape, color):
            for t in range(3):
                eps = rng.uniform(0, blur)
                arr[t] = (1 - eps) * arr[t] + eps * rng.dirichlet(np.ones(arr.shape[1]))
    return np.concatenate([shape.reshape(-1), color.reshape(-1)]).astype(np.float32)


@dataclass
class Example:
    ids: list[int]  # prompt and answer token ids; image slot = -1
    n_image: int
    answer_start: int
    code: np.ndarray


class Encoder:
    def __init__(self, tokenizer_json: str, bos: int, end: int) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(tokenizer_json)
        self.bos, self.end = bos, end

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def example(
        self, prompt: str, answer: str, code: np.ndarray, n_image: int, rng: np.random.Generator
    ) -> Example:
        head, tail = prompt_pieces(prompt)
        ids = ([self.bos] if rng.random() < 0.4 else []) + self.encode(head)
        ids += [-1] * n_image
        ids += ([self.bos] if rng.random() < 0.2 else []) + self.encode(tail)
        start = len(ids)
        ids += self.encode(answer) + [self.end]
        return Example(ids, n_image, start, code)


def sample_example(enc: Encoder, rng: np.random.Generator, n_image: int | None = None) -> tuple[Example, str]:
    scene = random_scene(rng)
    kind, prompt, answer = sample_task(scene, rng)
    n = n_image if n_image is not None else COUNTS[rng.integers(len(COUNTS))]
    return enc.example(prompt, answer, code_from_scene(scene, rng, blur=0.25), n, rng), kind


def image_rows(vecs: torch.Tensor, n: int) -> torch.Tensor:
    """[B,3,H] -> [B,n,H], row r = vecs[:, r % 3]."""
    return vecs[:, torch.arange(n) % 3]


def batch_tensors(examples: list[Example], model, proj: SceneProjection):
    """inputs_embeds [B,L,H], labels [B,L] (-100 outside answers) for examples with one image count."""
    length = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), length), 0, dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    for i, e in enumerate(examples):
        row = torch.tensor(e.ids)
        ids[i, : len(row)] = row.clamp(min=0)
        labels[i, e.answer_start - 1 : len(row) - 1] = row[e.answer_start :]
    is_img = torch.zeros_like(ids, dtype=torch.bool)
    for i, e in enumerate(examples):
        is_img[i, : len(e.ids)] = torch.tensor(e.ids) < 0
    emb = model.get_input_embeddings()(ids)
    vecs = proj(torch.from_numpy(np.stack([e.code for e in examples])))  # [B,3,H]
    rows = torch.zeros_like(emb)
    for i, e in enumerate(examples):
        first = e.ids.index(-1)
        rows[i, first : first + e.n_image] = image_rows(vecs[i : i + 1], e.n_image)[0]
    emb = torch.where(is_img[..., None], rows, emb)
    return emb, labels


def token_count(height: int, width: int, num_crops: int) -> int:
    return pp.tokens_for_frame(height, width, num_crops)
