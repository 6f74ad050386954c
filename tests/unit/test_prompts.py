"""Phi-3 chat prompt building and image-tag splitting (pure string logic)."""

from __future__ import annotations

import pytest

from edge.inference.prompts import ImageSlot, chat_prompt, image_tag, sanitize, split_image_tags


def test_text_only_prompt_is_phi3_chat_format() -> None:
    assert chat_prompt("Describe the frame.") == "<|user|>\nDescribe the frame.<|end|>\n<|assistant|>\n"


def test_system_prompt_comes_first() -> None:
    p = chat_prompt("Hi", system="Be terse.")
    assert p == "<|system|>\nBe terse.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"


def test_empty_system_prompt_is_left_out() -> None:
    assert chat_prompt("Hi", system="") == chat_prompt("Hi")


def test_image_tags_are_numbered_from_one_before_the_text() -> None:
    p = chat_prompt("Compare.", num_images=2)
    assert p == "<|user|>\n<|image_1|>\n<|image_2|>\nCompare.<|end|>\n<|assistant|>\n"
    assert image_tag(0) == "<|image_1|>\n"


def test_negative_image_count_is_refused() -> None:
    with pytest.raises(ValueError):
        chat_prompt("x", num_images=-1)


@pytest.mark.parametrize(
    "token", ["<|image_1|>", "<|end|>", "<|assistant|>", "<|system|>", "<|user|>", "<|image|>"]
)
def test_user_text_cannot_inject_control_tokens(token: str) -> None:
    p = chat_prompt(f"before {token} after", num_images=0)
    assert token not in p.removeprefix("<|user|>\n").removesuffix("<|end|>\n<|assistant|>\n")
    assert "before" in p and "after" in p
    assert split_image_tags(p) == [p]  # no image slot smuggled in


def test_sanitize_leaves_ordinary_text_alone() -> None:
    text = "a < b | c > d, {json: [1, 2]} <b>html</b>"
    assert sanitize(text) == text


def test_split_image_tags_orders_text_and_slots() -> None:
    p = chat_prompt("Compare.", system="S", num_images=2)
    parts = split_image_tags(p)
    assert parts == [
        "<|system|>\nS<|end|>\n<|user|>\n",
        ImageSlot(0),
        "\n",
        ImageSlot(1),
        "\nCompare.<|end|>\n<|assistant|>\n",
    ]
    assert "".join(x if isinstance(x, str) else f"<|image_{x.index + 1}|>" for x in parts) == p


def test_split_without_tags_is_one_piece() -> None:
    assert split_image_tags("plain") == ["plain"]
    assert split_image_tags("") == []


def test_split_refuses_image_zero() -> None:
    with pytest.raises(ValueError):
        split_image_tags("<|image_0|>")
