"""Train the stand-in's decoder and projection from a bank (bank.py): torch and numpy only, CPU or GPU.

    python tools/standin/train_bank.py --bank BANK.npz --out DIR [--steps N | --minutes M] [--device cuda]

What round 1 and 2 taught (tools/standin/README.md): with 313-757 image tokens in front of the
question, the answer positions of a decoder trained only at those lengths never learned to read
the question words (attention starts spread over ~330-760 positions, so the gradient towards a
question word is ~1/N). So the image-token count follows a curriculum: a few tokens per image first
(the attention to the question forms), then mixed lengths, then mostly the real counts of
num_crops 1 and 4 (313 and 757 for 4:3..16:9 frames). Two-image "what changed" examples have both
images at the same count (one camera).

Scene codes are made here from the bank's per-third classes, blurred like a confident classifier
(decoder.code_from_scene). Checkpoints (decoder.pt: Phi3ForCausalLM's state dict; projection.pt)
are written every --save-every steps and at the end, with log lines of teacher-forced exact answers
per kind on the validation split at the real counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from phi3_torch import N_COLOR, N_SHAPE, Phi3, Phi3Sizes, SceneProjection  # noqa: E402

log = logging.getLogger("train_bank")
SEED = 1235
# Probability of a <s> before a text piece: ORT side (first piece, others), OpenVINO side (each piece).
P_BOS = {"ort": (0.2, 0.1), "ov": (0.8, 0.8)}


class Bank:
    def __init__(self, path: Path) -> None:
        z = np.load(path)
        self.meta = json.loads(bytes(z["meta"]).decode())
        self.z = {k: z[k] for k in z.files}
        self.kinds: list[str] = self.meta["kinds"]
        train = self.split("train")
        json_answer = train["answer"][train["kind"] == self.kinds.index("json")][0]
        self.space = int(self.answer(int(json_answer))[0])  # the "▁" before "{" of every JSON answer
        self.names = [*self.kinds, "json:nospace"]

    def split(self, name: str) -> dict[str, np.ndarray]:
        return {k[len(name) + 1 :]: v for k, v in self.z.items() if k.startswith(name + "_")}

    def prompt(self, side: str, i: int) -> np.ndarray:
        off = self.z[f"prompt_off_{side}"]
        return self.z[f"prompt_tok_{side}"][off[i] : off[i + 1]]

    def answer(self, i: int) -> np.ndarray:
        off = self.z["answer_off"]
        return self.z["answer_tok"][off[i] : off[i + 1]]


def image_count(rng: np.random.Generator, frac: float) -> int:
    """Image tokens per image at training progress `frac` (0..1): the curriculum."""
    r = rng.random()
    if frac < 0.2:
        return int(rng.integers(3, 40))
    if frac < 0.45:
        return int(rng.integers(3, 120)) if r < 0.5 else int(np.exp(rng.uniform(np.log(120), np.log(900))))
    if r < 0.4:
        return 313
    if r < 0.8:
        return 757
    return int(rng.integers(3, 120)) if r < 0.85 else int(rng.integers(120, 900))


def codes(shapes: torch.Tensor, colors: torch.Tensor, gen: torch.Generator, blur: float) -> torch.Tensor:
    """Per-third classes [...,3] -> scene codes [...,30] (decoder.code_from_scene, on any device)."""
    dev = shapes.device
    s1 = F.one_hot(shapes.long(), N_SHAPE).float()
    empty = colors < 0
    c1 = F.one_hot(colors.clamp(min=0).long(), N_COLOR).float()
    dir_c = torch.distributions.Dirichlet(torch.ones(N_COLOR, device=dev))
    dir_s = torch.distributions.Dirichlet(torch.ones(N_SHAPE, device=dev))
    c1 = torch.where(empty[..., None], dir_c.sample(c1.shape[:-1]), c1)
    if blur > 0:
        es = torch.rand(s1.shape[:-1] + (1,), device=dev, generator=gen) * blur
        ec = torch.rand(c1.shape[:-1] + (1,), device=dev, generator=gen) * blur
        s1 = (1 - es) * s1 + es * dir_s.sample(s1.shape[:-1])
        c1 = (1 - ec) * c1 + ec * dir_c.sample(c1.shape[:-1])
    return torch.cat([s1.flatten(-2), c1.flatten(-2)], -1)


def make_batch(
    bank: Bank,
    split: dict,
    idx: np.ndarray,
    n: int,
    rng: np.random.Generator,
    device,
    sides=None,
    nospace=0.5,
):
    """Token ids [B,L], labels [B,L] (-100 outside answers), image refs [B,L] and the kinds.

    img_ref[b, p] = image k (0/1) * 3 + third (r mod 3 of the image's row r) at image positions, -1
    at text (image positions hold token 0 in ids; forward() puts the projected vectors there)."""
    bos, end = bank.meta["bos"], bank.meta["end"]
    json_kind = bank.kinds.index("json")
    rows, refs, starts, kinds = [], [], [], []
    third = np.arange(n, dtype=np.int64) % 3
    for j, i in enumerate(idx):
        side = sides[j] if sides is not None else ("ort" if rng.random() < 0.5 else "ov")
        p_first, p_other = P_BOS[side]
        toks: list[np.ndarray] = []
        ref: list[np.ndarray] = []

        def text(ids: np.ndarray, p: float, toks=toks, ref=ref) -> None:
            piece = np.concatenate([[bos], ids]) if rng.random() < p else ids
            toks.append(piece.astype(np.int64))
            ref.append(np.full(len(piece), -1, np.int64))

        text(bank.z[f"head_{side}"], p_first)
        for k in range(int(split["n_img"][i])):
            if k:
                text(bank.z[f"mid_{side}"], p_other)
            toks.append(np.zeros(n, np.int64))
            ref.append(third + 3 * k)
        text(bank.prompt(side, int(split["prompt"][i])), p_other)
        starts.append(sum(len(t) for t in toks))
        answer = np.concatenate([bank.answer(int(split["answer"][i])), [end]]).astype(np.int64)
        kind = int(split["kind"][i])
        if kind == json_kind and rng.random() < nospace:
            # Constrained decoding (both runtimes' JSON grammars) does not allow the leading "▁" the
            # tokenizer puts before "{": the answer then starts at "{" (kind "json:nospace").
            answer = answer[1:] if answer[0] == bank.space else answer
            kind = len(bank.kinds)
        toks.append(answer)
        ref.append(np.full(len(answer), -1, np.int64))
        rows.append(np.concatenate(toks))
        refs.append(np.concatenate(ref))
        kinds.append(kind)
    length = max(len(r) for r in rows)
    ids = np.zeros((len(rows), length), np.int64)
    lab = np.full((len(rows), length), -100, np.int64)
    ref_a = np.full((len(rows), length), -1, np.int64)
    for b, (r, f, st) in enumerate(zip(rows, refs, starts, strict=True)):
        ids[b, : len(r)] = r
        ref_a[b, : len(r)] = f
        lab[b, st - 1 : len(r) - 1] = r[st:]
    t = lambda a: torch.from_numpy(a).to(device, non_blocking=True)  # noqa: E731
    return t(ids), t(lab), t(ref_a), kinds


def forward(model: Phi3, proj: SceneProjection, ids, refs, shapes, colors, gen, blur):
    """Logits for a batch: text embeddings, image positions replaced by their projected third vector."""
    emb = model.model.embed_tokens(ids)
    code = codes(shapes, colors, gen, blur)  # [B,2,30]
    vecs = proj(code).reshape(ids.shape[0], 6, -1)  # [B, image*3 + third, H]
    img = refs >= 0
    picked = torch.gather(vecs, 1, refs.clamp(min=0)[..., None].expand(-1, -1, vecs.shape[-1]))
    emb = torch.where(img[..., None], picked.to(emb.dtype), emb)
    return model(emb)


def exact(logits, labels):
    pred = logits.argmax(-1)
    return ((pred == labels) | (labels < 0)).all(-1)


def evaluate(bank, model, proj, device, n_per=(313, 757), limit=600, batch=64) -> dict[str, float]:
    """Teacher-forced exact answers per kind on the validation split, at the real image counts."""
    val = bank.split("val")
    rng = np.random.default_rng(7)
    gen = torch.Generator(device=device).manual_seed(7)
    idx_all = np.arange(min(limit, len(val["kind"])))
    res: dict[str, list[bool]] = {}
    model.eval()
    with torch.no_grad():
        for n in n_per:
            for s in range(0, len(idx_all), batch):
                idx = idx_all[s : s + batch]
                ids, labs, refs, kinds = make_batch(bank, val, idx, n, rng, device)
                sh = torch.as_tensor(val["shapes"][idx], device=device)
                co = torch.as_tensor(val["colors"][idx], device=device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    logits = forward(model, proj, ids, refs, sh, co, gen, 0.15)
                for k, ok in zip(kinds, exact(logits.float(), labs).tolist(), strict=True):
                    res.setdefault(bank.names[k], []).append(ok)
    model.train()
    out = {k: round(float(np.mean(v)), 3) for k, v in sorted(res.items())}
    out["all"] = round(float(np.mean([x for v in res.values() for x in v])), 3)
    return out


def save(out: Path, model, proj, step: int, note: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "decoder.pt.tmp"
    torch.save({k: v.detach().float().cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(out / "decoder.pt")
    torch.save({k: v.detach().float().cpu() for k, v in proj.state_dict().items()}, out / "projection.pt")
    (out / "train_state.json").write_text(json.dumps({"step": step, **note}, indent=2) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, help="total steps (default: what --minutes allows, measured)")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--init", type=Path, help="start from this checkpoint folder (decoder.pt, projection.pt)")
    ap.add_argument("--start-frac", type=float, default=0.0, help="curriculum position of step 0 (0..1)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument(
        "--nospace", type=float, default=1.0, help="share of JSON answers without the leading space"
    )
    ap.add_argument("--eval-limit", type=int, default=1500, help="validation examples in the final eval")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bank = Bank(args.bank)
    sizes = Phi3Sizes.from_hf(bank.meta["hf_config"])
    torch.manual_seed(SEED)
    model = Phi3(sizes).to(device)
    init = bank.meta["hf_config"].get("initializer_range", 0.02)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, init)
    proj = SceneProjection(sizes.hidden_size).to(device)
    if args.init:
        model.load_state_dict(torch.load(args.init / "decoder.pt", map_location=device))
        proj.load_state_dict(torch.load(args.init / "projection.pt", map_location=device))
        log.info("initialised from %s", args.init)
    params = list(model.parameters()) + list(proj.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    train = bank.split("train")
    n_train = len(train["kind"])
    rng = np.random.default_rng(SEED)
    gen = torch.Generator(device=device).manual_seed(SEED)
    total = args.steps or 0
    t0 = time.time()
    hist: dict[str, list[bool]] = {}
    losses: list[float] = []
    step = 0
    warm = args.warmup
    log.info("device=%s params=%d bank=%d examples", device, sum(p.numel() for p in params), n_train)
    while True:
        if not total and step == 40:  # measure, then fix the schedule (logged: rerun with --steps)
            rate = 40 / (time.time() - t0)
            total = max(200, int(rate * args.minutes * 60 * 0.93))
            log.info("measured %.2f steps/s: total steps %d", rate, total)
        frac = step / total if total else 0.0
        if total and step >= total:
            break
        lr = (
            args.lr
            * min(1.0, (step + 1) / warm)
            * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        )
        for g in opt.param_groups:
            g["lr"] = lr
        n = image_count(rng, args.start_frac + (1 - args.start_frac) * frac)
        # long sequences: fewer examples per batch (same tokens per step, about)
        b = args.batch if n < 200 else max(4, args.batch // 2) if n < 500 else max(4, args.batch // 3)
        idx = rng.integers(0, n_train, b)
        ids, labs, refs, kinds = make_batch(bank, train, idx, n, rng, device, nospace=args.nospace)
        sh = torch.as_tensor(train["shapes"][idx], device=device)
        co = torch.as_tensor(train["colors"][idx], device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = forward(model, proj, ids, refs, sh, co, gen, 0.25)
        logits = logits.float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labs.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        with torch.no_grad():
            for k, ok in zip(kinds, exact(logits, labs).tolist(), strict=True):
                hist.setdefault(bank.names[k], []).append(ok)
        if step % args.log_every == 0:
            log.info(
                "step=%d/%d n_img=%d b=%d lr=%.2e loss=%.4f %.0fs exact(last 300/kind)=%s",
                step,
                total,
                n,
                b,
                lr,
                float(np.mean(losses[-100:])),
                time.time() - t0,
                {k: round(float(np.mean(v[-300:])), 2) for k, v in sorted(hist.items())},
            )
        step += 1
        if step % args.save_every == 0:
            save(args.out, model, proj, step, {"total": total})
        if step % args.eval_every == 0 and frac > 0.4:
            log.info("eval step=%d %s", step, evaluate(bank, model, proj, device))
    save(args.out, model, proj, step, {"total": total, "seconds": round(time.time() - t0)})
    final = evaluate(bank, model, proj, device, limit=args.eval_limit)
    log.info("final eval step=%d %s", step, final)
    (args.out / "final_eval.json").write_text(json.dumps(final, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
