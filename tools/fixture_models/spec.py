"""Shapes, seeds and names shared by every fixture model.

All folders share one tokenizer and one set of decoder weights so that a test can compare backends on
the same prompt; only the folder layout differs per runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

SEED = 0

HIDDEN = 64
LAYERS = 2
HEADS = 4
INTERMEDIATE = 128
HEAD_DIM = HIDDEN // HEADS
# LongRoPE like Phi-3.5-mini (128K over 4K), scaled down: the ORT builder bakes cos/sin caches of
# max_position_embeddings rows into the model, so 131072 would cost megabytes; prompts over 2048
# tokens (big images with the runtime processor) still take the long-factor path.
MAX_POSITIONS = 4096
ORIGINAL_MAX_POSITIONS = 2048
ROPE_THETA = 10000.0

# Phi-3 HD image transform constants (Phi-3.5-vision): 336 px crops, 144 tokens per crop.
CROP_PX = 336
NUM_IMG_TOKENS = 144
NUM_CROPS = 4
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Real Phi-3.5-vision ONNX release file prefix.
PHI3V_ORT_PREFIX = "phi-3.5-v-instruct"

# Logit added to <|end|> in the *-eos variants: dwarfs any random logit, so the first token is <|end|>.
EOS_BIAS = 1000.0


@dataclass(frozen=True)
class TokenIds:
    """Ids of the tokens the configs and tests refer to (assigned by the tokenizer build)."""

    unk: int
    bos: int
    eos_text: int  # </s>, a plain token as in Phi-3.5
    endoftext: int
    assistant: int
    system: int
    end: int
    user: int
    image: int
    vocab_used: int  # ids below this are defined by the tokenizer

    @property
    def vocab_size(self) -> int:
        """Model vocab, padded to a multiple of 64 like Phi-3.5 (32011 used -> 32064)."""
        return (self.vocab_used + 63) // 64 * 64


def phi3_hd_image_tokens(height: int, width: int) -> int:
    """Image tokens for a padded HD image of height x width px (both multiples of 336).

    Sub-image crops plus the global crop (144 each), one separator, and a newline token per crop
    row (h/336 + 1 rows of 12): the count Phi-3.5-vision's runtimes expect from the vision model.
    """
    hc, wc = height // CROP_PX, width // CROP_PX
    return (hc * wc + 1) * NUM_IMG_TOKENS + 1 + (hc + 1) * 12
