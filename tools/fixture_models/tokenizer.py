"""The one tokenizer every fixture model shares, in the real Phi-3.5 tokenizer.json layout.

Phi-3.5 ships a Llama SentencePiece model converted to tokenizer.json: byte-fallback BPE with a
Prepend/Replace("▁") normalizer, no pre-tokenizer, and the Phi-3 chat tokens as added tokens after the
base vocab. Runtimes take different code paths for other layouts (ORT GenAI's SPM-BPE, OpenVINO
Tokenizers' Llama converter), so the fixture copies this layout rather than a simpler byte-level BPE.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from .spec import TokenIds

log = logging.getLogger(__name__)

FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A camera frame shows a person standing near a door in the hallway.",
    "Describe the image. There is a red car parked on the street next to a tree.",
    "The temperature sensor reports 21 degrees and the humidity is 40 percent.",
    "Hello, how can I help you today? I am an assistant running on an edge device.",
    "Objects detected: person, car, bicycle, dog, cat, chair, table, bottle, cup, laptop.",
    "No motion detected. The room is empty and the lights are off.",
    "Summarize the scene in one sentence and answer in JSON.",
    '{"label": "person", "confidence": 0.93, "count": 2}',
    "0 1 2 3 4 5 6 7 8 9 10 100 1000",
] * 20
_BASE_VOCAB = 512
_BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]
# Phi-3.5's added tokens, in its order (<|endoftext|> = base + 0 ... <|user|> = base + 10), then the
# vision model's <|image|>. <|image_N|> prompt tags are split out by the runtimes' processors.
_SPECIALS = [
    "<|endoftext|>",
    "<|assistant|>",
    "<|placeholder1|>",
    "<|placeholder2|>",
    "<|placeholder3|>",
    "<|placeholder4|>",
    "<|system|>",
    "<|end|>",
    "<|placeholder5|>",
    "<|placeholder6|>",
    "<|user|>",
    "<|image|>",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)


def _train(corpus: list[str] | None = None) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # Train with a SentencePiece-like split (merges stay inside words, digits and punctuation
    # isolated) so ORT GenAI's and HF's encoders agree; Phi-3.5 itself has no pre-tokenizer.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True),
            pre_tokenizers.Punctuation("isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=_BASE_VOCAB,
        special_tokens=["<unk>", "<s>", "</s>", *_BYTE_TOKENS],
        show_progress=False,
        limit_alphabet=200,
    )
    tok.train_from_iterator(_CORPUS if corpus is None else corpus, trainer=trainer)
    tok.pre_tokenizer = None
    tok.add_special_tokens(
        [
            AddedToken(s, special=True, normalized=False, rstrip=s == "<|assistant|>" or "placeholder" in s)
            for s in _SPECIALS
        ]
    )
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in ("<unk>", "<s>")])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return tok


def _to_phi35_layout(raw: dict) -> dict:
    """Byte tokens are plain vocab entries in Phi-3.5 (listed as special, ORT GenAI's decode drops
    them), </s> is not special, and merges are "a b" strings."""
    raw["added_tokens"] = [
        t for t in raw["added_tokens"] if not re.fullmatch(r"<0x[0-9A-F]{2}>", t["content"])
    ]
    for t in raw["added_tokens"]:
        if t["content"] == "</s>":
            t["special"] = False
    raw["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in raw["model"]["merges"]]
    return raw


def write_tokenizer(out: Path, corpus: list[str] | None = None) -> TokenIds:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `out`.

    `corpus` replaces the BPE training text (the trained stand-in model uses its own words).
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / "tokenizer.json"
    _train(corpus).save(str(path))
    raw = _to_phi35_layout(json.loads(path.read_text(encoding="utf-8")))
    path.write_text(json.dumps(raw, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    vocab = Tokenizer.from_file(str(path)).get_vocab()
    named = ["<unk>", "<s>", "</s>", *_SPECIALS]
    added_decoder = {
        str(vocab[s]): {
            "content": s,
            "lstrip": False,
            "normalized": False,
            "rstrip": s == "<|assistant|>" or "placeholder" in s,
            "single_word": False,
            "special": s != "</s>",
        }
        for s in named
    }
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": added_decoder,
        "bos_token": "<s>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "legacy": False,
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    special_map = {
        "bos_token": "<s>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<unk>",
    }
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n", encoding="utf-8")

    ids = TokenIds(
        unk=vocab["<unk>"],
        bos=vocab["<s>"],
        eos_text=vocab["</s>"],
        endoftext=vocab["<|endoftext|>"],
        assistant=vocab["<|assistant|>"],
        system=vocab["<|system|>"],
        end=vocab["<|end|>"],
        user=vocab["<|user|>"],
        image=vocab["<|image|>"],
        vocab_used=max(vocab.values()) + 1,
    )
    log.info("tokenizer written dir=%s vocab_used=%s end_id=%s", out, ids.vocab_used, ids.end)
    return ids


def copy_tokenizer(src: Path, dst: Path) -> None:
    """Put the original tokenizer files into a model folder.

    transformers 5 rewrites tokenizer_config on save (class TokenizersBackend, template moved to
    chat_template.jinja); the runtimes and the real releases use the Phi-3.5 originals.
    """
    for name in FILES:
        (dst / name).write_bytes((src / name).read_bytes())
    stray = dst / "chat_template.jinja"
    if stray.exists():
        stray.unlink()
