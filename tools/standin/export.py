"""Export the trained stand-in into the real folder formats of both runtimes.

ORT GenAI phi3v: tools/fixture_models/ort_vision.build_phi3v (the real model builder on the trained
HF checkpoint, the embedding graph, genai_config, processor_config, tokenizer), then the vision graph
is replaced by the trained one: trunk + head + projection on crop 0 (the global view) of each image,
its vector repeated over that image's Phi-3 HD token count.

OpenVINO phi3_v: the language and text-embedding IRs through fixture_models.ov_vision (optimum-intel
llava path), and the trained vision graphs with the OpenVINO op API: vision embeddings
[N,3,336,336] -> [N,576,1024] (the trunk, channels zero-padded to CLIP's 1024) and projection
[1,L,4096] -> [1,L,H], which reads the global view from the last 12x13 rows (12 merged rows, each
followed by sub_GN) of the HD feature layout GenAI builds, and repeats the vector over all L rows.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from . import vision as V

log = logging.getLogger(__name__)

CLIP_DIM = 1024
GLOBAL_ROWS = V.MERGED * (V.MERGED + 1)  # 156


def load_weights(work: Path) -> dict[str, np.ndarray]:
    vis = torch.load(work / "vision.pt", map_location="cpu")
    proj = torch.load(work / "projection.pt", map_location="cpu")
    w = {f"vision.{k}": v.numpy().astype(np.float32) for k, v in vis.items()}
    w.update({f"proj.{k}": v.numpy().astype(np.float32) for k, v in proj.items()})
    return w


def merged_channel_index(c: int = CLIP_DIM) -> np.ndarray:
    """Channels of a 4*c merged token holding the trunk's TRUNK_CH channels, in merge_2x2 order."""
    return np.array(
        [dy * 2 * c + dx * c + ch for dy in (0, 1) for dx in (0, 1) for ch in range(V.TRUNK_CH)], np.int64
    )


# ----------------------------------------------------------------------------- ONNX (ORT GenAI)


def ort_vision_model(w: dict[str, np.ndarray]):
    import onnx
    from fixture_models.ort_vision import _IR_VERSION, _OPSET, _i64
    from onnx import TensorProto, helper, numpy_helper

    hidden = w["proj.fc2.weight"].shape[0]
    node = helper.make_node
    inits = [
        numpy_helper.from_array(w["vision.trunk.conv1.weight"], "c1w"),
        numpy_helper.from_array(w["vision.trunk.conv1.bias"], "c1b"),
        numpy_helper.from_array(w["vision.trunk.conv2.weight"], "c2w"),
        numpy_helper.from_array(w["vision.trunk.conv2.bias"], "c2b"),
        numpy_helper.from_array(w["vision.trunk.conv3.weight"], "c3w"),
        numpy_helper.from_array(w["vision.trunk.conv3.bias"], "c3b"),
        numpy_helper.from_array(w["vision.head.fc1.weight"].T.copy(), "h1w"),
        numpy_helper.from_array(w["vision.head.fc1.bias"], "h1b"),
        numpy_helper.from_array(w["vision.head.fc2.weight"].T.copy(), "h2w"),
        numpy_helper.from_array(w["vision.head.fc2.bias"], "h2b"),
        numpy_helper.from_array(w["proj.fc1.weight"].T.copy(), "p1w"),
        numpy_helper.from_array(w["proj.fc1.bias"], "p1b"),
        numpy_helper.from_array(w["proj.fc2.weight"].T.copy(), "p2w"),
        numpy_helper.from_array(w["proj.fc2.bias"], "p2b"),
        _i64("crop_px", V.CROP),
        _i64("tokens_per_crop", V.MERGED * V.MERGED),
        _i64("newline_tokens", V.MERGED),
        _i64("zero", 0),
        _i64("one", 1),
        _i64("axis0", [0]),
        _i64("axis1", [1]),
        _i64("shape_nhw", [0, V.MERGED, 2, V.MERGED, 2, V.TRUNK_CH]),
        _i64("shape_flat", [0, -1]),
        _i64("shape_s", [0, 3, V.N_SHAPE]),
        _i64("shape_c", [0, 3, V.N_COLOR]),
        _i64("split", [3 * V.N_SHAPE, 3 * V.N_COLOR]),
        _i64("zero1", [0]),
        _i64("three1", [3]),
        _i64("two1", [2]),
        _i64("three", 3),
        _i64("shape_rows", [-1, hidden]),
        numpy_helper.from_array(np.array(0.0, np.float32), "fzero"),
        numpy_helper.from_array(np.eye(3, dtype=np.float32), "eye3"),
    ]
    nodes = [
        node("Gather", ["pixel_values", "zero"], ["glob"], axis=1),  # [n,3,336,336] global views
        node("Conv", ["glob", "c1w", "c1b"], ["x1"], kernel_shape=[14, 14], strides=[14, 14]),
        node("Relu", ["x1"], ["r1"]),
        node("Conv", ["r1", "c2w", "c2b"], ["x2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        node("Relu", ["x2"], ["r2"]),
        node("Conv", ["r2", "c3w", "c3b"], ["x3"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        node("Relu", ["x3"], ["feat"]),  # [n,8,24,24]
        node("Transpose", ["feat"], ["nhwc"], perm=[0, 2, 3, 1]),
        node("Reshape", ["nhwc", "shape_nhw"], ["six"]),
        node("Transpose", ["six"], ["merged6"], perm=[0, 1, 3, 2, 4, 5]),
        node("Reshape", ["merged6", "shape_flat"], ["flat"]),  # [n,4608]
        node("MatMul", ["flat", "h1w"], ["h1"]),
        node("Add", ["h1", "h1b"], ["h1a"]),
        node("Relu", ["h1a"], ["h1r"]),
        node("MatMul", ["h1r", "h2w"], ["h2"]),
        node("Add", ["h2", "h2b"], ["logits"]),  # [n,30]
        node("Split", ["logits", "split"], ["ls", "lc"], axis=1),
        node("Reshape", ["ls", "shape_s"], ["ls3"]),
        node("Softmax", ["ls3"], ["ps3"], axis=-1),
        node("Reshape", ["ps3", "shape_flat"], ["ps"]),
        node("Reshape", ["lc", "shape_c"], ["lc3"]),
        node("Softmax", ["lc3"], ["pc3"], axis=-1),
        node("Reshape", ["pc3", "shape_flat"], ["pc"]),
        # per-third codes (one-hot third, shape probs, color probs) -> three vectors per image
        node("Slice", ["ps3", "zero1", "three1", "two1"], ["ps3_head"]),
        node("Mul", ["ps3_head", "fzero"], ["zeros3"]),
        node("Add", ["zeros3", "eye3"], ["eyes"]),  # [n,3,3]
        node("Concat", ["eyes", "ps3", "pc3"], ["third_code"], axis=2),  # [n,3,13]
        node("MatMul", ["third_code", "p1w"], ["q1"]),
        node("Add", ["q1", "p1b"], ["q1a"]),
        node("Relu", ["q1a"], ["q1r"]),
        node("MatMul", ["q1r", "p2w"], ["q2"]),
        node("Add", ["q2", "p2b"], ["vecs"]),  # [n,3,H]
        node("Reshape", ["vecs", "shape_rows"], ["table"]),  # [n*3,H]
        # rows per image: ((h/336)(w/336)+1)*144 + 1 + (h/336+1)*12, as the runtime expects
        node("Div", ["image_sizes", "crop_px"], ["crops_hw"]),
        node("Gather", ["crops_hw", "zero"], ["hc"], axis=1),
        node("Gather", ["crops_hw", "one"], ["wc"], axis=1),
        node("Mul", ["hc", "wc"], ["n_sub"]),
        node("Add", ["n_sub", "one"], ["n_crops"]),
        node("Mul", ["n_crops", "tokens_per_crop"], ["t_crops"]),
        node("Add", ["hc", "one"], ["rows"]),
        node("Mul", ["rows", "newline_tokens"], ["t_newlines"]),
        node("Add", ["t_crops", "t_newlines"], ["t_no_sep"]),
        node("Add", ["t_no_sep", "one"], ["n_tok"]),
        node("ReduceSum", ["n_tok"], ["n_total"], keepdims=0),
        node("Range", ["zero", "n_total", "one"], ["pos"]),
        node("CumSum", ["n_tok", "zero"], ["ends"]),
        node("Unsqueeze", ["pos", "axis1"], ["pos_col"]),
        node("Unsqueeze", ["ends", "axis0"], ["ends_row"]),
        node("GreaterOrEqual", ["pos_col", "ends_row"], ["past_end"]),
        node("Cast", ["past_end"], ["past_end_i64"], to=TensorProto.INT64),
        node("ReduceSum", ["past_end_i64", "axis1"], ["image_of_row"], keepdims=0),
        # row r of an image (counted from its first row) carries that image's vector r mod 3
        node("Sub", ["ends", "n_tok"], ["starts"]),
        node("Gather", ["starts", "image_of_row"], ["row_start"], axis=0),
        node("Sub", ["pos", "row_start"], ["local"]),
        node("Mod", ["local", "three"], ["third_of_row"]),
        node("Mul", ["image_of_row", "three"], ["table_base"]),
        node("Add", ["table_base", "third_of_row"], ["table_row"]),
        node("Gather", ["table", "table_row"], ["image_features"], axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "standin_phi3v_vision",
        [
            helper.make_tensor_value_info(
                "pixel_values", TensorProto.FLOAT, ["num_images", "max_num_crops", 3, "height", "width"]
            ),
            helper.make_tensor_value_info("image_sizes", TensorProto.INT64, ["num_images", 2]),
        ],
        [helper.make_tensor_value_info("image_features", TensorProto.FLOAT, ["num_image_tokens", hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], ir_version=_IR_VERSION)
    onnx.checker.check_model(model)
    return model


# ----------------------------------------------------------------------------- OpenVINO


def ov_vision_graphs(w: dict[str, np.ndarray], out: Path) -> None:
    import openvino as ov
    from openvino import opset13 as ops

    def const(a):
        return ops.constant(np.ascontiguousarray(a))

    def i64(v):
        return ops.constant(np.array(v, np.int64))

    def conv(x, name, pad):
        y = ops.convolution(
            x,
            const(w[f"vision.trunk.{name}.weight"]),
            strides=[14, 14] if pad == 0 else [1, 1],
            pads_begin=[pad, pad],
            pads_end=[pad, pad],
            dilations=[1, 1],
        )
        return ops.relu(ops.add(y, const(w[f"vision.trunk.{name}.bias"].reshape(1, -1, 1, 1))))

    def linear(x, name, relu):
        y = ops.add(ops.matmul(x, const(w[f"{name}.weight"]), False, True), const(w[f"{name}.bias"]))
        return ops.relu(y) if relu else y

    pixels = ops.parameter([-1, 3, -1, -1], ov.Type.f32, name="pixel_values")
    feat = conv(conv(conv(pixels, "conv1", 0), "conv2", 1), "conv3", 1)  # [N,8,24,24]
    seq = ops.transpose(ops.reshape(feat, i64([0, V.TRUNK_CH, -1]), special_zero=True), i64([0, 2, 1]))
    padded = ops.pad(
        seq, i64([0, 0, 0]), i64([0, 0, CLIP_DIM - V.TRUNK_CH]), "constant", ops.constant(np.float32(0))
    )
    padded.output(0).get_tensor().set_names({"last_hidden_state"})
    ov.save_model(
        ov.Model([padded], [pixels], "standin_phi3v_vision_embeddings"),
        str(out / "openvino_vision_embeddings_model.xml"),
        compress_to_fp16=False,
    )

    x = ops.parameter([-1, -1, 4 * CLIP_DIM], ov.Type.f32, name="input")
    glob = ops.slice(
        x, i64([-GLOBAL_ROWS]), i64([np.iinfo(np.int64).max]), i64([1]), i64([1])
    )  # [B,156,4096]
    grid = ops.reshape(glob, i64([0, V.MERGED, V.MERGED + 1, 4 * CLIP_DIM]), special_zero=True)
    tokens = ops.slice(grid, i64([0]), i64([V.MERGED]), i64([1]), i64([2]))  # drop sub_GN column
    tokens = ops.gather(tokens, i64(merged_channel_index()), i64(3))  # [B,12,12,32]
    flat = ops.reshape(tokens, i64([0, -1]), special_zero=True)  # [B,4608]
    logits = linear(linear(flat, "vision.head.fc1", True), "vision.head.fc2", False)
    ls, lc = ops.variadic_split(logits, i64(1), i64([3 * V.N_SHAPE, 3 * V.N_COLOR])).outputs()
    ps3 = ops.softmax(ops.reshape(ls, i64([0, 3, V.N_SHAPE]), True), -1)
    pc3 = ops.softmax(ops.reshape(lc, i64([0, 3, V.N_COLOR]), True), -1)
    zeros3 = ops.multiply(ops.slice(ps3, i64([0]), i64([3]), i64([1]), i64([2])), ops.constant(np.float32(0)))
    eyes = ops.add(zeros3, ops.constant(np.eye(3, dtype=np.float32)[None]))
    third_code = ops.concat([eyes, ps3, pc3], 2)  # [B,3,13]
    vecs = linear(linear(third_code, "proj.fc1", True), "proj.fc2", False)  # [B,3,H]
    length = ops.gather(ops.shape_of(x), i64([1]), i64(0))  # [1]
    reps = ops.divide(ops.add(length, i64([2])), i64([3]))
    tiled = ops.tile(vecs, ops.concat([i64([1]), reps, i64([1])], 0))  # [B,3*reps,H]
    y = ops.slice(tiled, i64([0]), length, i64([1]), i64([1]))  # row r = vecs[r % 3]
    y.output(0).get_tensor().set_names({"last_hidden_state"})
    ov.save_model(
        ov.Model([y], [x], "standin_phi3v_vision_projection"),
        str(out / "openvino_vision_projection_model.xml"),
        compress_to_fp16=False,
    )


# ----------------------------------------------------------------------------- folders


def fix_lm_head_input(text_onnx: Path) -> bool:
    """Wire the logits MatMul to the final norm, where ORT GenAI 0.18's model builder may not.

    The builder takes any nn.Linear with out_features == vocab_size for the LM head
    (builders/base.py has_lm_head); with hidden 192 the fused qkv_proj has 3 x 192 = 576 outputs,
    the padded vocab, so the builder starts an LM head inside layer 0 and the logits node keeps that
    input (the real lm_head weights, layer 0's post-attention norm). Returns whether it rewired;
    numerics.check_text compares the logits with transformers afterwards.
    """
    import onnx

    model = onnx.load(str(text_onnx), load_external_data=False)
    nodes = model.graph.node
    logits = next(n for n in nodes if "logits" in n.output)
    final = next(o for n in nodes for o in n.output if o.endswith("final_norm_layernorm/output_0"))
    if logits.input[0] == final:
        return False
    log.warning("ORT builder wired the LM head to %s; rewiring it to %s", logits.input[0], final)
    logits.input[0] = final
    onnx.save(model, str(text_onnx))
    return True


def hf_checkpoint(work: Path, ids, dst: Path) -> Path:
    """The trained decoder as an HF checkpoint the ORT builder reads as a phi3v text model."""
    from fixture_models.tokenizer import copy_tokenizer
    from transformers import GenerationConfig

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(work / "decoder-hf", dst)
    GenerationConfig(
        bos_token_id=ids.bos, eos_token_id=[ids.end, ids.assistant, ids.endoftext], pad_token_id=ids.endoftext
    ).save_pretrained(str(dst))
    copy_tokenizer(work / "tokenizer", dst)
    cfg_path = dst / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["architectures"] = ["Phi3VForCausalLM"]
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return dst


def export_all(work: Path, out: Path) -> tuple[Path, Path]:
    from fixture_models import ort_vision, ov_vision
    from fixture_models.ov_text import write_ov_tokenizer
    from fixture_models.tokenizer import copy_tokenizer

    from .pipeline import tokenizer
    from .train import DECODER_SIZES

    ids = tokenizer(work)
    w = load_weights(work)
    hf = hf_checkpoint(work, ids, work / "hf-phi3v")

    ort_dir = out / "ort-phi3v-standin"
    if ort_dir.exists():
        shutil.rmtree(ort_dir)
    ort_vision.build_phi3v(hf, ort_dir, work / "ort-cache", work / "tokenizer")
    fix_lm_head_input(ort_dir / f"{ort_vision.PREFIX}-text.onnx")
    for stale in ort_dir.glob(f"{ort_vision.PREFIX}-vision.onnx*"):
        stale.unlink()
    ort_vision._save(ort_vision_model(w), ort_dir / f"{ort_vision.PREFIX}-vision.onnx", size_threshold=512)

    ov_dir = out / "ov-phi3v-standin"
    if ov_dir.exists():
        shutil.rmtree(ov_dir)
    ov_dir.mkdir(parents=True)
    cfg = {k: v for k, v in DECODER_SIZES.items() if k != "initializer_range"}
    cfg["num_hidden_layers"] = json.loads((work / "decoder-hf" / "config.json").read_text())[
        "num_hidden_layers"
    ]
    ov_vision._export_language_model(hf, ov_dir, work, ids, config_overrides=cfg)
    ov_vision_graphs(w, ov_dir)
    ov_vision._write_configs(ov_dir, ids, np.random.default_rng(0), config_overrides=cfg)
    copy_tokenizer(work / "tokenizer", ov_dir)
    write_ov_tokenizer(work / "tokenizer", ov_dir)
    for d in (ort_dir, ov_dir):
        for f in d.iterdir():
            f.chmod(0o644)
    write_manifest(work, out)
    for d in (ort_dir, ov_dir):
        shutil.copy(out / "manifest.json", d / "standin-manifest.json")
        (d / "standin-manifest.json").chmod(0o644)
    log.info("exported %s %s", ort_dir, ov_dir)
    return ort_dir, ov_dir


def write_manifest(work: Path, out: Path) -> None:
    """manifest.json + README.md beside the folders: the world, the prompts, the answer forms."""
    from . import world as W
    from .train import DECODER_SIZES

    meta = json.loads((work / "train_meta.json").read_text()) if (work / "train_meta.json").exists() else {}
    manifest = {
        "what": "a tiny Phi-3.5-vision-format model trained on synthetic shapes (not Phi-3.5-vision)",
        "folders": {"ort-genai": "ort-phi3v-standin", "openvino": "ov-phi3v-standin"},
        "world": {
            "background": "uniform grey 64-192, mild noise",
            "frame": "320x240 .. 1920x1080, landscape or portrait, JPEG quality 70-95",
            "shapes": list(W.SHAPES),
            "colors": list(W.COLORS),
            "positions": list(W.POSITIONS),
            "rule": "0-3 shapes, at most one per horizontal third, size 8-20% of the height (fits its third)",
            "overlay": "the demo camera's digital clock text (bottom left) is ignored",
        },
        "caption_prompts": list(W.CAPTION_PROMPTS),
        "caption_form": "A red circle on the left, a blue square in the center and a green triangle on the right.",
        "questions": {
            "What color is the <shape>?": "red | red and blue | there is no <shape>",
            "How many shapes are there?": "zero | one | two | three",
            "Is there a <color> <shape>?": "yes | no",
            "Where is the <color> <shape>?": "on the left | in the center | on the right | there is no <color> <shape>",
        },
        "two_images": {
            "what": "what changed between two frames of one camera (before, after): 0-2 edits",
            "prompts": list(W.CHANGE_PROMPTS),
            "answer_form": "The red circle moved from the left to the right and a blue square appeared in "
            "the center. | The green triangle on the left disappeared. | Nothing changed.",
        },
        "structured_prompts": list(W.JSON_PROMPTS),
        "schema": W.SCHEMA,
        "json_form": '{"shapes":[{"shape":"circle","color":"red","position":"left"}]}',
        "decoder": {
            **{k: v for k, v in DECODER_SIZES.items() if k != "initializer_range"},
            "num_hidden_layers": json.loads((work / "decoder-hf" / "config.json").read_text())[
                "num_hidden_layers"
            ],
        },
        "training": meta,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def write_choose_cases(models: Path, n: int = 8) -> Path:
    """`models`/manifest.json + eval/*.jpg: held-out scenes with a prompt and the one right answer each,
    the accuracy cases `edge bench --choose` reads beside a model folder (edge/cli/bench/choose.py:
    a manifest.json above the folder with an "eval" list), shared by demo-ort and demo-ov."""
    import cv2

    from . import world as W

    eval_dir = models / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for i in range(n):
        rng = np.random.default_rng([31337, i])
        scene = W.random_scene(rng, n_shapes=1 + i % 3)
        image = W.draw(scene, rng)
        name = f"eval/scene{i}.jpg"
        cv2.imwrite(str(models / name), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if i % 2 == 0:
            prompt, answer = W.CAPTION_PROMPTS[0], W.caption(scene)
        else:
            from edge.capture.demo_world import QUESTION_KINDS, question

            prompt, answer = question(scene, QUESTION_KINDS[i // 2 % len(QUESTION_KINDS)], rng)
        cases.append({"image": name, "prompt": prompt, "answer": answer, "size": [scene.width, scene.height]})
    doc = {
        "what": "accuracy cases of the demo models (demo-ort, demo-ov) for `edge bench --choose`: held-out "
        "scenes of their world (tools/standin/world.py), one prompt and the one right answer each",
        "eval": cases,
    }
    path = models / "manifest.json"
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path
