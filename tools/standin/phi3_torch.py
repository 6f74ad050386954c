"""A Phi-3 decoder in plain torch, with Hugging Face's parameter names, and the stand-in's projection.

Why not transformers' Phi3ForCausalLM: the decoder is trained where only torch is installed (a GPU
machine that reaches no package registry), from a bank of token ids made here (bank.py). The state
dict loads unchanged into transformers' Phi3ForCausalLM (strict), which the exporters read; the
numerics (LongRoPE short factors with the attention factor, RMSNorm in float32, fused qkv and
gate/up projections) match it, checked by `python -m standin.phi3_torch` against transformers.

This module imports nothing but torch, so it can be copied alone with train_bank.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

N_SHAPE = 4  # empty, circle, square, triangle (vision.N_SHAPE)
N_COLOR = 6  # vision.N_COLOR
THIRD_CODE = 3 + N_SHAPE + N_COLOR


@dataclass(frozen=True)
class Phi3Sizes:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    rms_norm_eps: float
    rope_theta: float
    short_factor: tuple[float, ...]
    max_position_embeddings: int
    original_max_position_embeddings: int

    @classmethod
    def from_hf(cls, cfg: dict) -> Phi3Sizes:
        rs = cfg.get("rope_scaling") or cfg["rope_parameters"]  # transformers 5 renamed it
        return cls(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=cfg["num_hidden_layers"],
            num_attention_heads=cfg["num_attention_heads"],
            rms_norm_eps=cfg["rms_norm_eps"],
            rope_theta=rs.get("rope_theta", cfg.get("rope_theta", 10000.0)),
            short_factor=tuple(rs["short_factor"]),
            max_position_embeddings=cfg["max_position_embeddings"],
            original_max_position_embeddings=cfg["original_max_position_embeddings"],
        )


class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, s: Phi3Sizes) -> None:
        super().__init__()
        self.heads = s.num_attention_heads
        self.head_dim = s.hidden_size // s.num_attention_heads
        self.qkv_proj = nn.Linear(s.hidden_size, 3 * s.hidden_size, bias=False)
        self.o_proj = nn.Linear(s.hidden_size, s.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        q, k, v = self.qkv_proj(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q = (q * cos + _rotate_half(q) * sin).to(v.dtype)  # under autocast: stay bf16 (flash attention)
        k = (k * cos + _rotate_half(k) * sin).to(v.dtype)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, n, h))


class MLP(nn.Module):
    def __init__(self, s: Phi3Sizes) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(s.hidden_size, 2 * s.intermediate_size, bias=False)
        self.down_proj = nn.Linear(s.intermediate_size, s.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(up * F.silu(gate))


class Layer(nn.Module):
    def __init__(self, s: Phi3Sizes) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.self_attn = Attention(s)
        self.post_attention_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.mlp = MLP(s)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, s: Phi3Sizes) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(s.vocab_size, s.hidden_size)
        self.layers = nn.ModuleList(Layer(s) for _ in range(s.num_hidden_layers))
        self.norm = RMSNorm(s.hidden_size, s.rms_norm_eps)


class Phi3(nn.Module):
    """Phi3ForCausalLM's parameters (model.*, lm_head) and forward for sequences up to
    original_max_position_embeddings (the short-factor LongRoPE branch; longer prompts are not trained)."""

    def __init__(self, s: Phi3Sizes) -> None:
        super().__init__()
        self.sizes = s
        self.model = Body(s)
        self.lm_head = nn.Linear(s.hidden_size, s.vocab_size, bias=False)
        dim = s.hidden_size // s.num_attention_heads
        inv = 1.0 / (
            torch.tensor(s.short_factor, dtype=torch.float32)
            * s.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        )
        self.register_buffer("inv_freq", inv, persistent=False)
        factor = s.max_position_embeddings / s.original_max_position_embeddings
        self.attention_factor = (
            math.sqrt(1 + math.log(factor) / math.log(s.original_max_position_embeddings))
            if factor > 1
            else 1.0
        )

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        n = embeds.shape[1]
        pos = torch.arange(n, device=embeds.device, dtype=torch.float32)
        freqs = pos[:, None] * self.inv_freq[None]
        emb = torch.cat((freqs, freqs), -1)
        cos = (emb.cos() * self.attention_factor).to(embeds.dtype)
        sin = (emb.sin() * self.attention_factor).to(embeds.dtype)
        x = embeds
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.model.norm(x))


def third_codes(code: torch.Tensor) -> torch.Tensor:
    """Scene codes [...,30] (3x4 shape probabilities, then 3x6 color probabilities) -> per-third
    codes [...,3,13]: (one-hot third, shape probs, color probs), as decoder.third_codes."""
    lead = code.shape[:-1]
    shape = code[..., : 3 * N_SHAPE].reshape(*lead, 3, N_SHAPE)
    color = code[..., 3 * N_SHAPE :].reshape(*lead, 3, N_COLOR)
    eye = torch.eye(3, dtype=code.dtype, device=code.device).expand(*lead, 3, 3)
    return torch.cat([eye, shape, color], -1)


class SceneProjection(nn.Module):
    """decoder.SceneProjection (same parameter names): per-third code -> one image-token vector."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(THIRD_CODE, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(third_codes(code))))


def _check_against_transformers() -> None:  # pragma: no cover - a developer check
    from transformers import Phi3Config, Phi3ForCausalLM

    cfg = Phi3Config(
        vocab_size=320,
        hidden_size=96,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=6,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        max_position_embeddings=4096,
        original_max_position_embeddings=2048,
        rope_scaling={
            "type": "longrope",
            "rope_type": "longrope",
            "short_factor": [1.0 + 0.01 * i for i in range(8)],
            "long_factor": [1.0 + 0.5 * i for i in range(8)],
            "rope_theta": 10000.0,
        },
        initializer_range=0.3,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    hf = Phi3ForCausalLM(cfg).eval()
    mine = Phi3(Phi3Sizes.from_hf(cfg.to_dict())).eval()
    mine.load_state_dict(hf.state_dict(), strict=True)
    x = torch.randn(2, 700, 96)
    with torch.no_grad():
        a = hf(inputs_embeds=x).logits
        b = mine(x)
    err = (a - b).abs().max().item()
    print(f"max |transformers - phi3_torch| = {err:.2e}")
    assert err < 1e-4, err


if __name__ == "__main__":
    _check_against_transformers()
