"""Phi-3 / Phi-3.5 chat prompts, built by us rather than by each runtime's chat template.

Both runtimes can apply a chat template, but they disagree on details (system message handling,
where image tags go) and a model folder's template may be missing or different. Building the string
here makes the two backends send the same prompt for the same request.

Format (Phi-3.5-mini-instruct / Phi-3.5-vision-instruct):

    <|system|>\\n{system}<|end|>\\n            (only when a system prompt is set)
    <|user|>\\n<|image_1|>\\n...{prompt}<|end|>\\n<|assistant|>\\n

Image tags are numbered from 1 in the order of `request.images`. ONNX Runtime GenAI's phi3v
processor and OpenVINO GenAI's phi3_v embedder both use this native `<|image_N|>` tag; for ORT we
tokenize the text pieces ourselves and splice the image placeholders in (see `split_image_tags`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

SYSTEM = "<|system|>\n"
USER = "<|user|>\n"
ASSISTANT = "<|assistant|>\n"
END = "<|end|>\n"

IMAGE_TAG = re.compile(r"<\|image_(\d+)\|>")
# Tokens a user prompt must not smuggle in: they would fake turns or image slots.
_CONTROL = re.compile(r"<\|(?:system|user|assistant|end|endoftext|image(?:_\d+)?)\|>")


def image_tag(index: int) -> str:
    """The tag for the index-th image (0-based), followed by the newline both runtimes expect."""
    return f"<|image_{index + 1}|>\n"


def sanitize(text: str) -> str:
    """Neutralise chat control tokens in user text so a prompt cannot open its own turns or images.

    The tokens are kept readable (the model still sees the characters) but no longer match the
    tokenizer's special-token spelling. This is the fixed list; a loaded backend passes its
    tokenizer's full list (edge.inference.special_tokens) to `chat_prompt` instead.
    """
    return _CONTROL.sub(lambda m: m.group(0).replace("<|", "< |"), text)


def chat_prompt(
    prompt: str,
    *,
    system: str | None = None,
    num_images: int = 0,
    neutralise: Callable[[str], str] = sanitize,
) -> str:
    """The full Phi-3 chat prompt for one user turn, with `num_images` image tags before the text.

    `neutralise` breaks every special token in the user's text (and the system prompt)."""
    if num_images < 0:
        raise ValueError("num_images must be >= 0")
    tags = "".join(image_tag(i) for i in range(num_images))
    head = f"{SYSTEM}{neutralise(system)}{END}" if system else ""
    return f"{head}{USER}{tags}{neutralise(prompt)}{END}{ASSISTANT}"


@dataclass(frozen=True)
class ImageSlot:
    """Where image `index` (0-based) goes in a split prompt."""

    index: int


def split_image_tags(prompt: str) -> list[str | ImageSlot]:
    """Split a built prompt into text pieces and image slots, in order.

    ORT GenAI's processor does the same: every `<|image_N|>` becomes N's image tokens (negative ids)
    and the text between tags is tokenized piece by piece. Empty text pieces are dropped.
    """
    parts: list[str | ImageSlot] = []
    pos = 0
    for m in IMAGE_TAG.finditer(prompt):
        if m.start() > pos:
            parts.append(prompt[pos : m.start()])
        number = int(m.group(1))
        if number < 1:
            raise ValueError(f"image tags start at 1, got {m.group(0)}")
        parts.append(ImageSlot(number - 1))
        pos = m.end()
    if pos < len(prompt):
        parts.append(prompt[pos:])
    return parts
