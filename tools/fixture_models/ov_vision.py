"""OpenVINO IR folder of a tiny Phi-3.5-vision (model_type phi3_v) for openvino_genai.VLMPipeline.

Phi-3.5-vision's exporter needs the model's hub remote code, so this folder is assembled instead:
  * language + text embeddings: the tiny Phi-3 decoder (same weights as every other fixture) exported
    through optimum-intel's llava path, which writes the same two IRs the phi3_v path does;
  * vision embeddings [N,3,336,336] -> [N,576,1024] and projection [1,L,4096] -> [1,L,H]: small random
    graphs built with the OpenVINO op API, with the exact I/O contract GenAI's phi3_v code asserts;
  * config.json (glb_GN / sub_GN separators), preprocessor_config.json and generation_config.json in
    the layout of OpenVINO/Phi-3.5-vision-instruct-*-ov.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from . import spec
from .hf_phi3 import phi3_config_kwargs
from .ov_text import export_ir, write_ov_tokenizer
from .spec import TokenIds
from .tokenizer import copy_tokenizer

log = logging.getLogger(__name__)

CLIP_DIM = 1024  # CLIP ViT-L/14-336 hidden size
CLIP_PATCHES = (spec.CROP_PX // 14) ** 2  # 576
HD_DIM = 4 * CLIP_DIM  # 2x2 patch merge before the projection


def _export_language_model(
    hf_text_dir: Path, out: Path, work: Path, ids: TokenIds, config_overrides: dict | None = None
) -> None:
    """Wrap the Phi-3 decoder in a tiny llava so optimum-intel exports it as a VLM language model."""
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, Phi3Config
    from transformers.models.llava import modeling_llava

    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=Phi3Config(**phi3_config_kwargs(ids, **(config_overrides or {}))),
        image_token_index=ids.image,
    )
    torch.manual_seed(spec.SEED)
    model = LlavaForConditionalGeneration(config).eval()
    weights = load_file(str(hf_text_dir / "model.safetensors"))
    decoder = {k.removeprefix("model."): v for k, v in weights.items() if k.startswith("model.")}
    model.model.language_model.load_state_dict(decoder)
    model.lm_head.load_state_dict({"weight": weights["lm_head.weight"]})

    src = work / "ov-phi3v-llava-hf"
    staging = work / "ov-phi3v-export"
    for path in (src, staging):
        if path.exists():
            shutil.rmtree(path)
    model.save_pretrained(str(src))
    copy_tokenizer(hf_text_dir, src)
    # optimum's Phi3 patcher walks model.model.layers; LlavaModel keeps them under .language_model.
    modeling_llava.LlavaModel.layers = property(lambda self: self.language_model.layers)
    try:
        export_ir(src, staging, "image-text-to-text")
    finally:
        del modeling_llava.LlavaModel.layers
    for stem in ("openvino_language_model", "openvino_text_embeddings_model"):
        for ext in ("xml", "bin"):
            shutil.copy(staging / f"{stem}.{ext}", out / f"{stem}.{ext}")


def _write_vision_graphs(out: Path, hidden: int, rng) -> None:
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    def weight(shape, scale):
        return ops.convert(ops.constant((rng.standard_normal(shape) * scale).astype(np.float16)), "f32")

    pixels = ops.parameter([-1, 3, -1, -1], ov.Type.f32, name="pixel_values")
    patches = ops.convolution(
        pixels,
        weight([16, 3, 14, 14], 0.05),
        strides=[14, 14],
        pads_begin=[0, 0],
        pads_end=[0, 0],
        dilations=[1, 1],
    )
    seq = ops.reshape(patches, ops.constant(np.array([0, 16, -1], np.int64)), special_zero=True)  # [N,16,576]
    seq = ops.transpose(seq, ops.constant(np.array([0, 2, 1], np.int64)))  # [N,576,16]
    feats = ops.gelu(ops.matmul(seq, weight([16, CLIP_DIM], 0.2), False, False), "erf")  # [N,576,1024]
    feats.output(0).get_tensor().set_names({"last_hidden_state"})
    ov.save_model(
        ov.Model([feats], [pixels], "phi3v_vision_embeddings"),
        str(out / "openvino_vision_embeddings_model.xml"),
        compress_to_fp16=True,
    )

    x = ops.parameter([-1, -1, HD_DIM], ov.Type.f32, name="input")
    h = ops.gelu(
        ops.add(ops.matmul(x, weight([HD_DIM, hidden], 0.02), False, False), weight([hidden], 0.02)), "erf"
    )
    y = ops.add(ops.matmul(h, weight([hidden, hidden], 0.02), False, False), weight([hidden], 0.02))
    y.output(0).get_tensor().set_names({"last_hidden_state"})
    ov.save_model(
        ov.Model([y], [x], "phi3v_vision_projection"),
        str(out / "openvino_vision_projection_model.xml"),
        compress_to_fp16=True,
    )


def _write_configs(out: Path, ids: TokenIds, rng, config_overrides: dict | None = None) -> None:
    text = phi3_config_kwargs(ids, **(config_overrides or {}))
    rope = dict(text.pop("rope_scaling"))
    config = {
        "_name_or_path": "Phi-3.5-vision-instruct",
        "architectures": ["Phi3VForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_phi3_v.Phi3VConfig",
            "AutoModelForCausalLM": "modeling_phi3_v.Phi3VForCausalLM",
        },
        "model_type": "phi3_v",
        **text,
        "rope_theta": spec.ROPE_THETA,
        "rope_scaling": {
            "type": "longrope",
            "short_factor": rope["short_factor"],
            "long_factor": rope["long_factor"],
        },
        "embd_layer": {
            "embedding_cls": "image",
            "hd_transform_order": "sub_glb",
            "projection_cls": "mlp",
            "use_hd_transform": True,
            "with_learnable_separator": True,
        },
        "img_processor": {
            "image_dim_out": CLIP_DIM,
            "model_name": "openai/clip-vit-large-patch14-336",
            "name": "clip_vision_model",
            "num_img_tokens": spec.NUM_IMG_TOKENS,
        },
        "glb_GN": (rng.standard_normal((1, 1, HD_DIM)) * 0.02).round(5).tolist(),
        "sub_GN": (rng.standard_normal((1, 1, 1, HD_DIM)) * 0.02).round(5).tolist(),
        "torch_dtype": "float32",
        "use_cache": True,
    }
    generation = {
        "bos_token_id": ids.bos,
        "eos_token_id": [ids.end, ids.endoftext],
        "pad_token_id": ids.endoftext,
    }
    preprocessor = {
        "auto_map": {
            "AutoImageProcessor": "image_processing_phi3_v.Phi3VImageProcessor",
            "AutoProcessor": "processing_phi3_v.Phi3VProcessor",
        },
        "do_convert_rgb": True,
        "image_mean": list(spec.CLIP_MEAN),
        "image_processor_type": "Phi3VImageProcessor",
        "image_std": list(spec.CLIP_STD),
        "num_crops": spec.NUM_CROPS,
        "num_img_tokens": spec.NUM_IMG_TOKENS,
        "processor_class": "Phi3VProcessor",
    }
    for name, doc in (
        ("config.json", config),
        ("generation_config.json", generation),
        ("preprocessor_config.json", preprocessor),
    ):
        (out / name).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def build_phi3v(hf_text_dir: Path, out: Path, work: Path, ids: TokenIds, tokenizer_dir: Path) -> Path:
    """The ov-phi3v folder."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.SEED)
    _export_language_model(hf_text_dir, out, work, ids)
    _write_vision_graphs(out, spec.HIDDEN, rng)
    _write_configs(out, ids, rng)
    copy_tokenizer(tokenizer_dir, out)
    write_ov_tokenizer(tokenizer_dir, out)
    log.info("openvino phi3_v built out=%s", out)
    return out
