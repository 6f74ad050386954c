"""Every special token of the loaded tokenizer is neutralised in user text, on both backends.

Checked with each runtime's own tokenizer on the shipped demo models and the test fixtures: before,
`<s>`, `</s>` and `<|placeholder1|>` in a question reached the model as control ids (BOS, EOS, a
reserved slot) because the sanitizer knew only the chat tokens.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from edge.config.settings import OpenVINOModelSettings, OrtGenAIModelSettings
from edge.inference import openvino_genai, ort_genai, special_tokens
from edge.inference.prompts import chat_prompt
from tests.plugins.models import model_dir

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "edge" / "assets" / "models"
INJECTED = [
    "<s>",
    "</s>",
    "<unk>",
    "<|placeholder1|>",
    "<|placeholder6|>",
    "<|endoftext|>",
    "<|end|>",
    "<|image_1|>",
]


def _added(folder: Path) -> list[str]:
    return [t["content"] for t in json.loads((folder / "tokenizer.json").read_text())["added_tokens"]]


def _ort(folder: Path) -> tuple[Callable[[str], Sequence[int]], special_tokens.SpecialTokens]:
    backend = ort_genai.load(OrtGenAIModelSettings(path=folder, backend="ort-genai"))
    tok = backend._tokenizer

    def encode(text: str) -> list[int]:
        return [int(i) for i in tok.encode(text)]

    return encode, backend._special


def _ov(folder: Path) -> tuple[Callable[[str], Sequence[int]], special_tokens.SpecialTokens]:
    backend = openvino_genai.load(OpenVINOModelSettings(path=folder, backend="openvino", providers=["cpu"]))
    tok = backend._pipe.get_tokenizer()

    def encode(text: str) -> list[int]:
        return [int(i) for i in tok.encode(text, add_special_tokens=False).input_ids.data[0]]

    return encode, backend._special


CASES = [
    ("ort", DEMO / "demo-ort"),
    ("ov", DEMO / "demo-ov"),
    ("ort", Path(model_dir("ort-phi3v-fp32"))),
    ("ov", Path(model_dir("ov-phi3"))),
]


@pytest.mark.parametrize(("runtime", "folder"), CASES, ids=[f"{r}-{f.name}" for r, f in CASES])
def test_every_special_token_of_the_tokenizer_is_neutralised(runtime: str, folder: Path) -> None:
    encode, special = (_ort if runtime == "ort" else _ov)(folder)
    added = _added(folder)
    assert set(added) <= set(special.texts)  # the tokenizer's whole table, not a fixed list
    special_ids = {encode(t)[0] for t in added}
    assert special.ids >= special_ids
    question = "before " + " mid ".join([*INJECTED, *added]) + " after"
    # the fixed list of chat tokens leaves some through: this is what the test guards against
    assert special_ids & set(encode(chat_prompt(question)))
    prompt = chat_prompt(question, neutralise=special.neutralise)
    user = prompt.removeprefix("<|user|>\n").removesuffix("<|end|>\n<|assistant|>\n")
    assert not special_ids & set(encode(user)), "a special token survived in the user's text"
    assert "before" in user and "after" in user and "placeholder1" in user  # still readable
    # the frame of the prompt itself still uses the real tokens
    assert set(encode("<|user|>\n")) & special_ids


def test_ordinary_text_is_left_alone() -> None:
    special = special_tokens.SpecialTokens(("<s>", "</s>", "<|placeholder1|>"))
    text = "a < b | c > d, {json: [1, 2]} <b>html</b> <span>"
    assert special.neutralise(text) == text
    assert special.neutralise("x<s>y</s>") == "x< s>y< /s>"
