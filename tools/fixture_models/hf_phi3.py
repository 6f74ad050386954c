"""Tiny random Phi-3.5-mini-shaped Hugging Face checkpoint: the source of every decoder.

The ORT GenAI model builder and optimum-intel only read HF checkpoints, so the fixture starts from
one; it lives in a temp/cache dir and is never committed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from . import spec
from .spec import TokenIds
from .tokenizer import copy_tokenizer

log = logging.getLogger(__name__)


def phi3_config_kwargs(ids: TokenIds, **overrides) -> dict:
    """Phi3Config arguments shared by the HF checkpoint and the OpenVINO phi3_v language model.

    `overrides` replace entries (the trained stand-in model uses its own sizes).
    """
    half = spec.HEAD_DIM // 2
    kwargs = {
        "vocab_size": ids.vocab_size,
        "hidden_size": spec.HIDDEN,
        "intermediate_size": spec.INTERMEDIATE,
        "num_hidden_layers": spec.LAYERS,
        "num_attention_heads": spec.HEADS,
        "num_key_value_heads": spec.HEADS,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "bos_token_id": ids.bos,
        "eos_token_id": ids.endoftext,
        "pad_token_id": ids.endoftext,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "sliding_window": 262144,
        # Large init spreads the logits so greedy decoding walks the vocab instead of repeating.
        "initializer_range": 0.5,
        "max_position_embeddings": spec.MAX_POSITIONS,
        "original_max_position_embeddings": spec.ORIGINAL_MAX_POSITIONS,
        "rope_scaling": {
            "type": "longrope",
            "rope_type": "longrope",
            "short_factor": [1.0 + 0.01 * i for i in range(half)],
            "long_factor": [1.0 + 0.5 * i for i in range(half)],
            "rope_theta": spec.ROPE_THETA,
        },
    }
    kwargs.update(overrides)
    return kwargs


def write_checkpoint(
    out: Path, ids: TokenIds, tokenizer_dir: Path, *, architecture: str = "Phi3ForCausalLM"
) -> Path:
    """Save the tiny checkpoint (seeded, so every run gives the same weights) with the tokenizer.

    architecture "Phi3VForCausalLM" keeps model_type phi3 (loads without remote code) but makes the
    ORT GenAI builder emit a phi3v genai_config.
    """
    import torch
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    config = Phi3Config(**phi3_config_kwargs(ids))
    config.architectures = ["Phi3ForCausalLM"]
    torch.manual_seed(spec.SEED)
    model = Phi3ForCausalLM(config).eval()
    model.save_pretrained(str(out), safe_serialization=True)
    GenerationConfig(
        bos_token_id=ids.bos,
        eos_token_id=[ids.end, ids.assistant, ids.endoftext],
        pad_token_id=ids.endoftext,
    ).save_pretrained(str(out))
    copy_tokenizer(tokenizer_dir, out)
    if architecture != "Phi3ForCausalLM":
        cfg_path = out / "config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["architectures"] = [architecture]
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    log.info(
        "hf checkpoint dir=%s arch=%s params=%s",
        out,
        architecture,
        sum(p.numel() for p in model.parameters()),
    )
    return out
