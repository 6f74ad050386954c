"""ONNX Runtime GenAI Phi-3.5-vision (genai_config type phi3v) in the real release layout.

  text      phi-3.5-v-instruct-text.onnx(+.data)       the real model builder, exclude_embeds=true
  embedding phi-3.5-v-instruct-embedding.onnx(+.data)  hand-made: token embeddings + image rows
  vision    phi-3.5-v-instruct-vision.onnx(+.data)     hand-made: Phi-3 HD token count from image_sizes

The runtime checks that the vision model returns exactly as many feature rows as the prompt has image
tokens, so the tiny vision graph computes that count from image_sizes instead of running a CLIP; its
features still depend on the pixels so different frames give different answers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from . import spec
from .ort_text import run_builder
from .tokenizer import copy_tokenizer

log = logging.getLogger(__name__)

PREFIX = spec.PHI3V_ORT_PREFIX
_OPSET = 17
_IR_VERSION = 8


def _save(model, path: Path, size_threshold: int) -> None:
    """Save with weights in <name>.data; small int64 constants stay inline because ORT's shape
    inference could not read them from external data."""
    import onnx

    onnx.checker.check_model(model)
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
        size_threshold=size_threshold,
    )


def _i64(name: str, value):
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array(value, dtype=np.int64), name)


def embedding_model(embed_tokens):
    """input_ids [b,s] + image_features [n,H] -> inputs_embeds [b,s,H].

    Negative ids are image tokens; the k-th one takes image row k. Must accept n = 0 (every decode
    step after the prefill sends no image rows).
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    hidden = embed_tokens.shape[1]
    node = helper.make_node
    nodes = [
        node("Less", ["input_ids", "zero"], ["is_img"]),
        node("Where", ["is_img", "zero", "input_ids"], ["text_ids"]),
        node("Gather", ["embed_tokens", "text_ids"], ["text_emb"], axis=0),
        node("Reshape", ["is_img", "minus1"], ["is_img_flat"]),
        node("Cast", ["is_img_flat"], ["is_img_i64"], to=TensorProto.INT64),
        node("CumSum", ["is_img_i64", "zero"], ["img_count"]),
        node("Sub", ["img_count", "one"], ["img_row"]),
        node("Shape", ["image_features"], ["n_rows"], start=0, end=1),
        node("Where", ["is_img_flat", "img_row", "n_rows"], ["row_idx"]),  # text -> the zero row
        node("Concat", ["image_features", "zero_row"], ["rows"], axis=0),
        node("Gather", ["rows", "row_idx"], ["img_flat"], axis=0),
        node("Shape", ["text_emb"], ["emb_shape"]),
        node("Reshape", ["img_flat", "emb_shape"], ["img_emb"]),
        node("Unsqueeze", ["is_img", "minus1"], ["is_img3"]),
        node("Where", ["is_img3", "img_emb", "text_emb"], ["inputs_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "phi3v_embedding",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
            helper.make_tensor_value_info("image_features", TensorProto.FLOAT, ["num_image_tokens", hidden]),
        ],
        [
            helper.make_tensor_value_info(
                "inputs_embeds", TensorProto.FLOAT, ["batch_size", "sequence_length", hidden]
            )
        ],
        [
            numpy_helper.from_array(embed_tokens.astype(np.float32), "embed_tokens"),
            _i64("zero", 0),
            _i64("one", 1),
            _i64("minus1", [-1]),
            numpy_helper.from_array(np.zeros((1, hidden), np.float32), "zero_row"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], ir_version=_IR_VERSION)


def vision_model(hidden: int):
    """pixel_values [n,crops,3,h,w] + image_sizes [n,2] -> image_features [N,H].

    N = sum over images of ((h/336)(w/336)+1)*144 + 1 + (h/336+1)*12 (see spec.phi3_hd_image_tokens).
    Row r of image i = tanh(channel means of image i @ W + b) + 0.1 * sin(r * freq).
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(spec.SEED)
    node = helper.make_node
    nodes = [
        node("Div", ["image_sizes", "crop_px"], ["crops_hw"]),
        node("Gather", ["crops_hw", "zero"], ["hc"], axis=1),
        node("Gather", ["crops_hw", "one"], ["wc"], axis=1),
        node("Mul", ["hc", "wc"], ["n_sub"]),
        node("Add", ["n_sub", "one"], ["n_crops"]),
        node("Mul", ["n_crops", "tokens_per_crop"], ["t_crops"]),
        node("Add", ["hc", "one"], ["rows"]),
        node("Mul", ["rows", "newline_tokens"], ["t_newlines"]),
        node("Add", ["t_crops", "t_newlines"], ["t_no_sep"]),
        node("Add", ["t_no_sep", "one"], ["n_tok"]),  # [n] tokens per image
        node("ReduceSum", ["n_tok"], ["n_total"], keepdims=0),
        node("Range", ["zero", "n_total", "one"], ["pos"]),  # [N]
        node("CumSum", ["n_tok", "zero"], ["ends"]),
        node("Unsqueeze", ["pos", "axis1"], ["pos_col"]),  # [N,1]
        node("Unsqueeze", ["ends", "axis0"], ["ends_row"]),  # [1,n]
        node("GreaterOrEqual", ["pos_col", "ends_row"], ["past_end"]),
        node("Cast", ["past_end"], ["past_end_i64"], to=TensorProto.INT64),
        node("ReduceSum", ["past_end_i64", "axis1"], ["image_of_row"], keepdims=0),  # [N]
        node("ReduceMean", ["pixel_values"], ["chan_mean"], axes=[1, 3, 4], keepdims=0),  # [n,3]
        node("MatMul", ["chan_mean", "proj_w"], ["img_lin"]),
        node("Add", ["img_lin", "proj_b"], ["img_pre"]),
        node("Tanh", ["img_pre"], ["img_vec"]),  # [n,H]
        node("Gather", ["img_vec", "image_of_row"], ["row_img"], axis=0),  # [N,H]
        node("Cast", ["pos_col"], ["pos_f"], to=TensorProto.FLOAT),
        node("Mul", ["pos_f", "freq"], ["phase"]),
        node("Sin", ["phase"], ["pe"]),
        node("Mul", ["pe", "pe_scale"], ["pe_scaled"]),
        node("Add", ["row_img", "pe_scaled"], ["image_features"]),
    ]
    graph = helper.make_graph(
        nodes,
        "phi3v_vision",
        [
            helper.make_tensor_value_info(
                "pixel_values", TensorProto.FLOAT, ["num_images", "max_num_crops", 3, "height", "width"]
            ),
            helper.make_tensor_value_info("image_sizes", TensorProto.INT64, ["num_images", 2]),
        ],
        [helper.make_tensor_value_info("image_features", TensorProto.FLOAT, ["num_image_tokens", hidden])],
        [
            _i64("crop_px", spec.CROP_PX),
            _i64("tokens_per_crop", spec.NUM_IMG_TOKENS),
            _i64("newline_tokens", 12),
            _i64("zero", 0),
            _i64("one", 1),
            _i64("axis0", [0]),
            _i64("axis1", [1]),
            numpy_helper.from_array(rng.normal(0, 1, (3, hidden)).astype(np.float32), "proj_w"),
            numpy_helper.from_array(rng.normal(0, 0.1, (hidden,)).astype(np.float32), "proj_b"),
            numpy_helper.from_array(rng.uniform(0.01, 0.5, (1, hidden)).astype(np.float32), "freq"),
            numpy_helper.from_array(np.array(0.1, np.float32), "pe_scale"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], ir_version=_IR_VERSION)


def processor_config(num_crops: int = spec.NUM_CROPS) -> dict:
    """processor_config.json exactly as in the Phi-3.5-vision ONNX release."""
    ext = "com.microsoft.extensions"
    return {
        "processor": {
            "name": "image_processing",
            "transforms": [
                {
                    "operation": {
                        "name": "decode_image",
                        "domain": ext,
                        "type": "DecodeImage",
                        "attrs": {"color_space": "BGR"},
                    }
                },
                {"operation": {"name": "convert_to_rgb", "domain": ext, "type": "ConvertRGB"}},
                {
                    "operation": {
                        "name": "phi3_image_transform",
                        "domain": ext,
                        "type": "Phi3ImageTransform",
                        "attrs": {"num_crops": num_crops, "num_img_tokens": spec.NUM_IMG_TOKENS},
                    }
                },
            ],
        }
    }


def build_phi3v(
    hf_vision_dir: Path, out: Path, cache: Path, tokenizer_dir: Path, precision: str = "fp32"
) -> Path:
    """The phi3v folder; hf_vision_dir is the tiny checkpoint saved with architecture Phi3VForCausalLM."""
    from safetensors.numpy import load_file

    run_builder(hf_vision_dir, out, cache, precision, ["exclude_embeds=true", f"filename={PREFIX}-text.onnx"])
    weights = load_file(str(hf_vision_dir / "model.safetensors"))
    embed = weights["model.embed_tokens.weight"]
    _save(embedding_model(embed), out / f"{PREFIX}-embedding.onnx", size_threshold=1024)
    # Threshold 512: the float weights go to .data like the release, the int64 scalars stay inline.
    _save(vision_model(embed.shape[1]), out / f"{PREFIX}-vision.onnx", size_threshold=512)

    gc_path = out / "genai_config.json"
    gc = json.loads(gc_path.read_text(encoding="utf-8"))
    if gc["model"]["type"] != "phi3v":
        raise RuntimeError(f"builder wrote model type {gc['model']['type']!r}, expected phi3v")
    gc["model"]["embedding"] = {
        "filename": f"{PREFIX}-embedding.onnx",
        "inputs": {"input_ids": "input_ids", "image_features": "image_features"},
        "outputs": {"inputs_embeds": "inputs_embeds"},
    }
    gc["model"]["vision"] = {
        "filename": f"{PREFIX}-vision.onnx",
        "inputs": {"pixel_values": "pixel_values", "image_sizes": "image_sizes"},
        "outputs": {"image_features": "image_features"},
    }
    gc["model"]["decoder"].pop("sliding_window", None)  # the release config has none
    gc_path.write_text(json.dumps(gc, indent=4) + "\n", encoding="utf-8")
    (out / "processor_config.json").write_text(
        json.dumps(processor_config(), indent=2) + "\n", encoding="utf-8"
    )
    copy_tokenizer(tokenizer_dir, out)
    log.info("phi3v built out=%s precision=%s", out, precision)
    return out
