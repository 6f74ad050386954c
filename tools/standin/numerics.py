"""Check that the exported vision graphs compute what the trained torch modules compute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge.inference import phi3v_preprocess as pp

from . import decoder as D
from . import vision as V
from .export import GLOBAL_ROWS, load_weights


def _ov_layout(feats: np.ndarray, hc: int, wc: int, sub_gn: np.ndarray, glb_gn: np.ndarray) -> np.ndarray:
    """OpenVINO GenAI's phi3_v hd_feature_transform in numpy: [1+hc*wc,576,1024] -> [1,L,4096]."""

    def merge(f, h, w):
        n, _, c = f.shape
        x = f.reshape(n, 12, 2, 12, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, 144, 4 * c)
        x = x.reshape(1, h, w, 12, 12, 4 * c).transpose(0, 1, 3, 2, 4, 5).reshape(1, h * 12, w * 12, 4 * c)
        return x

    def newline(x):
        n, h, w, c = x.shape
        gn = np.broadcast_to(sub_gn.reshape(1, 1, 1, c), (n, h, 1, c))
        return np.concatenate([x, gn], 2).reshape(n, h * (w + 1), c)

    glob = newline(merge(feats[:1], 1, 1))
    sub = newline(merge(feats[1 : 1 + hc * wc], hc, wc))
    return np.concatenate([sub, glb_gn.reshape(1, 1, -1), glob], 1)


def check(work: Path, out: Path, bgr: np.ndarray, num_crops: int) -> dict[str, float]:
    import json

    import onnxruntime as ort
    import openvino as ov

    w = load_weights(work)
    model = V.Vision()
    model.load_state_dict(torch.load(work / "vision.pt"))
    proj = D.SceneProjection(w["proj.fc2.weight"].shape[0])
    proj.load_state_dict(torch.load(work / "projection.pt"))
    hd = pp.hd_transform(bgr, num_crops)
    with torch.no_grad():
        g = torch.from_numpy(hd.pixel_values[:1])
        vecs = proj(V.scene_code(model(g)))
        ref = D.image_rows(vecs, hd.num_tokens)[0].numpy()
        g2 = torch.from_numpy(V.global_view(bgr, num_crops)[None])
        same_view = float((g - g2).abs().max())
    sess = ort.InferenceSession(str(out / "ort-phi3v-standin" / "phi-3.5-v-instruct-vision.onnx"))
    feats = sess.run(
        None, {"pixel_values": hd.pixel_values[None], "image_sizes": np.array([hd.size], np.int64)}
    )[0]
    core = ov.Core()
    ovd = out / "ov-phi3v-standin"
    emb = core.compile_model(str(ovd / "openvino_vision_embeddings_model.xml"), "CPU")
    prj = core.compile_model(str(ovd / "openvino_vision_projection_model.xml"), "CPU")
    n_sub = (hd.size[0] // 336) * (hd.size[1] // 336)
    f = emb(hd.pixel_values[: 1 + n_sub])[0]
    cfg = json.loads((ovd / "config.json").read_text())
    lay = _ov_layout(
        f,
        hd.size[0] // 336,
        hd.size[1] // 336,
        np.array(cfg["sub_GN"], np.float32),
        np.array(cfg["glb_GN"], np.float32),
    )
    assert lay.shape[1] >= GLOBAL_ROWS
    y = prj(lay)[0][0]
    return {
        "global_view_vs_hd_transform": same_view,
        "ort_rows": feats.shape[0],
        "expected_rows": hd.num_tokens,
        "ort_max_diff": float(np.abs(feats - ref).max()),
        "ov_rows": y.shape[0],
        "ov_max_diff": float(np.abs(y - ref).max()),
    }


def check_text(work: Path, out: Path, length: int = 400) -> dict[str, float]:
    """Max |logits| difference of both exported decoders against transformers on random embeddings."""
    import onnxruntime as ort
    import openvino as ov
    from transformers import Phi3ForCausalLM

    hf = Phi3ForCausalLM.from_pretrained(str(work / "decoder-hf")).eval()
    cfg = hf.config
    torch.manual_seed(0)
    x = torch.randn(1, length, cfg.hidden_size) * 0.05
    with torch.no_grad():
        ref = hf(inputs_embeds=x).logits.numpy()
    sess = ort.InferenceSession(str(out / "ort-phi3v-standin" / "phi-3.5-v-instruct-text.onnx"))
    heads, dim = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    feeds = {"inputs_embeds": x.numpy(), "attention_mask": np.ones((1, length), np.int64)}
    for i in sess.get_inputs():
        if i.name.startswith("past_key_values"):
            feeds[i.name] = np.zeros((1, heads, 0, dim), np.float32)
    ort_logits = sess.run(["logits"], feeds)[0]
    lm = ov.Core().read_model(str(out / "ov-phi3v-standin" / "openvino_language_model.xml"))
    names = {p.get_any_name() for p in lm.inputs}
    req = ov.Core().compile_model(lm, "CPU").create_infer_request()
    inputs = {
        "inputs_embeds": x.numpy(),
        "attention_mask": np.ones((1, length), np.int64),
        "position_ids": np.arange(length, dtype=np.int64)[None],
    }
    if "beam_idx" in names:
        inputs["beam_idx"] = np.zeros(1, np.int32)
    ov_logits = req.infer({k: v for k, v in inputs.items() if k in names})["logits"]
    return {
        "ort_logits_max_diff": float(np.abs(ort_logits - ref).max()),
        "ov_logits_max_diff": float(np.abs(ov_logits - ref).max()),
        "logits_max_abs": float(np.abs(ref).max()),
    }
