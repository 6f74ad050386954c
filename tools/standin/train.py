"""Training: the vision classifier (stage 1) and the decoder (stage 2), each deterministic.

Stage 1 reads scenes drawn by worker processes in seeded chunks (chunk k always holds the same
scenes); step s trains on a seeded sample from the chunks 0..s//REUSE (a sliding window), and waits
for a chunk that is not drawn yet, so the result does not depend on how fast the workers are.
Stage 2 needs no pixels: it trains the decoder on scene codes of the grammar, sharing each scene's
image block (prefix + N image tokens) across several prompts through the KV cache.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import torch

from edge.inference import phi3v_preprocess as pp

from . import decoder as D
from . import vision as V
from . import world as W

log = logging.getLogger(__name__)

SEED = 1234
CHUNK = 64


# ----------------------------------------------------------------------------- stage 1 data


def _quantize(view: np.ndarray) -> np.ndarray:
    """Normalized [3,336,336] float -> uint8 RGB levels (the inverse of the preprocessing LUT)."""
    rgb = view * pp.STD[:, None, None] + pp.MEAN[:, None, None]
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def make_chunk(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunk k: CHUNK views (uint8 [3,336,336]) with per-third shape and color targets.

    Each drawn frame gives two views: the project's exact preprocessing at num_crops 1 or 4, and an
    OpenVINO-like resize at the other num_crops.
    """
    rng = np.random.default_rng([SEED, k])
    views, shapes, colors = [], [], []
    while len(views) < CHUNK:
        n = [1, 2, 3][rng.integers(3)] if rng.random() < 0.9 else 0
        if rng.random() < 0.6:  # mostly small frames: cheap, and the view is <= 672 px anyway
            size = W.random_size(rng)
            f = rng.uniform(0.3, 0.6)
            size = (max(320 if size[0] >= size[1] else 240, int(size[0] * f)), max(240, int(size[1] * f)))
            if size[0] < size[1]:
                size = (max(240, size[0]), max(320, size[1]))
        else:
            size = None
        scene = W.random_scene(rng, n_shapes=n, size=size)
        img = W.draw(scene, rng)
        nc = 1 if rng.random() < 0.5 else 4
        s, c = V.targets(scene)
        views.append(_quantize(V.global_view(img, nc)))
        shapes.append(s)
        colors.append(c)
        views.append(_quantize(V.global_view_ov_like(img, 5 - nc)))
        shapes.append(s)
        colors.append(c)
    return np.stack(views[:CHUNK]), np.stack(shapes[:CHUNK]), np.stack(colors[:CHUNK])


def _worker(first: int, step: int, last: int, q) -> None:
    import os

    os.nice(5)
    torch.set_num_threads(1)
    for k in range(first, last, step):
        q.put((k, make_chunk(k)))


_LUT = torch.from_numpy(pp._NORM_LUT)  # [3,256]


def to_input(u8: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(u8).long()  # [B,3,H,W]
    return torch.stack([_LUT[ch][t[:, ch]] for ch in range(3)], 1)


def train_vision(
    out: Path,
    steps: int,
    batch: int = 64,
    workers: int = 1,
    reuse: int = 2,
    window: int = 48,
    resume: int = 0,
) -> Path:
    """resume > 0: continue the saved classifier for `steps` more steps on fresh chunks, lower lr."""
    torch.manual_seed(SEED + resume)
    model = V.Vision()
    if resume:
        model.load_state_dict(torch.load(out / "vision.pt"))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4 if resume else 2e-3, weight_decay=0.01)
    warm = 20 if resume else 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    n_chunks = steps // reuse + 1
    ctx = mp.get_context("fork")
    q = ctx.Queue(maxsize=window)
    base = 1_000_000 * resume  # chunk ids of a resumed round: scenes not seen before
    procs = [
        ctx.Process(target=_worker, args=(base + i, workers, base + n_chunks, q), daemon=True)
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    chunks: dict[int, tuple] = {}
    rng = np.random.default_rng([SEED, resume] if resume else SEED)
    t0 = time.time()
    hist = []
    for step in range(steps):
        need = base + step // reuse
        while need not in chunks:
            k, data = q.get()
            chunks[k] = data
        lo = max(base, need - window + 1)
        for k in [k for k in chunks if k < lo]:
            del chunks[k]
        avail = list(range(lo, need + 1))
        pick_c = rng.choice(avail, batch)
        pick_i = rng.integers(0, CHUNK, batch)
        x = np.stack([chunks[c][0][i] for c, i in zip(pick_c, pick_i, strict=False)])
        ys = np.stack([chunks[c][1][i] for c, i in zip(pick_c, pick_i, strict=False)])
        yc = np.stack([chunks[c][2][i] for c, i in zip(pick_c, pick_i, strict=False)])
        flip = rng.random(batch) < 0.5  # mirror: left and right swap, shapes are symmetric
        x[flip] = x[flip][..., ::-1]
        ys[flip] = ys[flip][:, ::-1]
        yc[flip] = yc[flip][:, ::-1]
        logits = model(to_input(x))
        ls, lc = V.split_logits(logits)
        ts, tc = torch.from_numpy(ys.copy()), torch.from_numpy(yc.copy())
        loss = torch.nn.functional.cross_entropy(ls.reshape(-1, V.N_SHAPE), ts.reshape(-1))
        loss = loss + torch.nn.functional.cross_entropy(
            lc.reshape(-1, V.N_COLOR), tc.reshape(-1), ignore_index=-100
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            ok = (ls.argmax(-1) == ts) & ((lc.argmax(-1) == tc) | (tc < 0))
            hist.append(ok.all(-1).float().mean().item())
        if step % 50 == 0 or step == steps - 1:
            log.info(
                "vision step=%d loss=%.4f scene_acc(50)=%.3f chunks=%d %.1fs",
                step,
                loss.item(),
                float(np.mean(hist[-50:])),
                need,
                time.time() - t0,
            )
        if step % 500 == 499 or step == steps - 1:
            torch.save(model.state_dict(), out / "vision.pt")
    for p in procs:
        p.terminate()
    return out / "vision.pt"


# ----------------------------------------------------------------------------- stage 2


def decoder_config(ids, **extra):
    from fixture_models.hf_phi3 import phi3_config_kwargs
    from transformers import Phi3Config

    cfg = Phi3Config(**phi3_config_kwargs(ids, **{**DECODER_SIZES, **extra}))
    cfg._attn_implementation = "sdpa"
    return cfg


# Round 3 (train_bank.py): head dim stays 16, so the LongRoPE factor lists of the fixtures fit.
DECODER_SIZES = dict(
    hidden_size=192,
    num_attention_heads=12,
    num_key_value_heads=12,
    intermediate_size=512,
    num_hidden_layers=4,
    initializer_range=0.02,
)


def _ov_encoder(tokenizer_dir: Path):
    """OpenVINO Tokenizers' encoding of a text chunk (without <s>), from the same tokenizer.json."""
    import openvino_genai as ovg
    from fixture_models.ov_text import write_ov_tokenizer

    ov_dir = tokenizer_dir.parent / "ov-tokenizer"
    ov_dir.mkdir(exist_ok=True)
    write_ov_tokenizer(tokenizer_dir, ov_dir)
    tok = ovg.Tokenizer(str(ov_dir))

    def encode(text: str) -> list[int]:
        return [int(i) for i in tok.encode(text, add_special_tokens=False).input_ids.data[0]]

    return encode


def train_decoder(
    out: Path,
    tokenizer_dir: Path,
    ids,
    steps: int,
    scenes: int = 4,
    per_scene: int = 8,
    resume: int = 0,
    stop: int | None = None,
    task_weights=(0.35, 0.4, 0.25),
    question_weights=None,
    lr: float | None = None,
    seq_mean: bool = False,
    layers: int | None = None,
) -> Path:
    """resume > 0: continue from the saved decoder for `steps` more steps (seeded by `resume`) at a
    lower peak learning rate. A saved decoder with fewer layers than DECODER_SIZES is grown: the new
    layers go on top with zero output projections, so training starts from the saved model's answers.
    layers overrides DECODER_SIZES' layer count (round 1 trained 2).
    task_weights (caption, question, json) and question_weights (color, count, exists, where) set the
    curriculum."""
    from transformers import DynamicCache, Phi3ForCausalLM

    torch.manual_seed(SEED + 1 + resume)
    model = Phi3ForCausalLM(decoder_config(ids, **({"num_hidden_layers": layers} if layers else {})))
    proj = D.SceneProjection(model.config.hidden_size)
    if resume:
        from safetensors.torch import load_file

        missing = model.load_state_dict(
            load_file(str(out / "decoder-hf" / "model.safetensors")), strict=False
        ).missing_keys
        grown = sorted({int(k.split(".")[2]) for k in missing if k.startswith("model.layers.")})
        with torch.no_grad():
            for i in grown:  # a new layer starts as the identity (residual only)
                model.model.layers[i].self_attn.o_proj.weight.zero_()
                model.model.layers[i].mlp.down_proj.weight.zero_()
        if grown:
            log.info("grown decoder layers %s", grown)
        proj.load_state_dict(torch.load(out / "projection.pt"))
    params = list(model.parameters()) + list(proj.parameters())
    opt = torch.optim.AdamW(params, lr=lr or (1e-3 if resume else 3e-3), weight_decay=0.01)
    warm = 20 if resume else 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
        ),
    )
    enc = D.Encoder(str(tokenizer_dir / "tokenizer.json"), ids.bos, ids.end)
    ov_encode = _ov_encoder(tokenizer_dir)
    rng = np.random.default_rng([SEED + 1, resume] if resume else SEED + 1)
    emb_layer = model.get_input_embeddings()
    t0 = time.time()
    hist = []
    per_kind: dict[str, list] = {}
    for step in range(steps if stop is None else min(stop, steps)):
        r = rng.random()
        n_img = 313 if r < 0.45 else 757 if r < 0.9 else int(rng.integers(150, 900))
        # Prompt text as ORT GenAI's tokenizer encodes it (= HF tokenizers), or as OpenVINO
        # Tokenizers does (other merges around special tokens and newlines, <s> per chunk).
        ov_side = rng.random() < 0.5
        encode = ov_encode if ov_side else enc.encode
        p_bos = (0.8, 0.8) if ov_side else (0.2, 0.1)
        head = ([ids.bos] if rng.random() < p_bos[0] else []) + encode(D.USER_PIECE)
        codes, texts, starts, kinds = [], [], [], []
        for _ in range(scenes):
            scene = W.random_scene(rng)
            codes.append(D.code_from_scene(scene, rng, blur=0.25))
            for _ in range(per_scene):
                kind, prompt, answer = W.sample_task(scene, rng, task_weights, question_weights)
                kinds.append(kind)
                _, tail = D.prompt_pieces(prompt)
                t = ([ids.bos] if rng.random() < p_bos[1] else []) + encode(tail)
                starts.append(len(t))
                texts.append(t + enc.encode(answer) + [ids.end])
        vecs = proj(torch.from_numpy(np.stack(codes)))  # [S,3,H]
        prefix = emb_layer(torch.tensor(head))[None].expand(scenes, -1, -1)
        block = torch.cat([prefix, D.image_rows(vecs, n_img)], 1)
        base = model.model(inputs_embeds=block, use_cache=True)
        cache = DynamicCache()
        for i, layer in enumerate(base.past_key_values.layers):
            cache.update(
                layer.keys.repeat_interleave(per_scene, 0), layer.values.repeat_interleave(per_scene, 0), i
            )
        length = max(len(t) for t in texts)
        tok = torch.zeros((len(texts), length), dtype=torch.long)
        lab = torch.full((len(texts), length), -100, dtype=torch.long)
        for i, (t, s) in enumerate(zip(texts, starts, strict=False)):
            tok[i, : len(t)] = torch.tensor(t)
            lab[i, s - 1 : len(t) - 1] = torch.tensor(t[s:])
        p0 = block.shape[1]
        pos = torch.arange(p0, p0 + length)[None].expand(len(texts), -1)
        logits = model(inputs_embeds=emb_layer(tok), past_key_values=cache, position_ids=pos).logits
        tok_loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), lab.reshape(-1), reduction="none"
        ).reshape(lab.shape)
        n_lab = (lab >= 0).sum(-1).clamp(min=1)
        # seq_mean: each answer counts once, however long (short question answers are not drowned)
        loss = (tok_loss.sum(-1) / n_lab).mean() if seq_mean else tok_loss.sum() / n_lab.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            pred = logits.argmax(-1)
            ok_row = ((pred == lab) | (lab < 0)).all(-1)
            ok = ok_row.float().mean().item()
        hist.append(ok)
        for k, v in zip(kinds, ok_row.tolist(), strict=True):
            per_kind.setdefault(k, []).append(v)
        if step % 25 == 0 or step == steps - 1:
            log.info(
                "decoder step=%d n_img=%d loss=%.4f seq_exact(25)=%.3f %.1fs",
                step,
                n_img,
                loss.item(),
                float(np.mean(hist[-25:])),
                time.time() - t0,
            )
            log.info(
                "  by kind (last 400): %s",
                {k: round(float(np.mean(v[-400:])), 3) for k, v in sorted(per_kind.items())},
            )
        if step % 50 == 49 or step == steps - 1 or step == (stop or 0) - 1:
            model.save_pretrained(str(out / "decoder-hf"), safe_serialization=True)
            torch.save(proj.state_dict(), out / "projection.pt")
    return out / "decoder-hf"


def write_meta(out: Path, **kw) -> None:
    (out / "train_meta.json").write_text(json.dumps(kw, indent=2) + "\n", encoding="utf-8")
