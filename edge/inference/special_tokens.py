"""The special tokens of the loaded tokenizer, and user text with every one of them neutralised.

A fixed list of Phi-3's chat tokens misses the rest of what a tokenizer treats as atomic: `<s>`,
`</s>`, `<unk>`, `<|placeholder1|>`... typed into a question they reach the model as control ids
(BOS, EOS, reserved slots). So the list is taken from the tokenizer: its added-token table (the
`added_tokens` of the model folder's tokenizer.json, what both runtimes load, or the vocabulary the
runtime exposes when no such file is there), each candidate kept only if the live tokenizer encodes
it, inside text, as one id of its own. Neutralising keeps the characters readable (a space after the
first one) so the model still sees what was typed, but no longer as the token.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

Encode = Callable[[str], Sequence[int]]

# The chat tokens our own prompt format uses: always neutralised, whatever the tokenizer says.
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>", "<|image|>")
_IMAGE_TAG = re.compile(r"<\|image(?:_\d+)?\|>")
# Where no added-token table exists: vocabulary entries spelled like control tokens.
_CONTROL_SPELLING = re.compile(r"<\|[^<>|\s]{1,64}\|>|</?s>|<unk>|<pad>|<mask>|<\|?[a-z_]{1,32}\|?>")
_PROBE = "q"  # surrounds a candidate: atomic only if the tokenizer keeps it whole inside text


def _neutral(token: str) -> str:
    return f"{token[0]} {token[1:]}"


@dataclass(frozen=True)
class SpecialTokens:
    """Special token spellings (longest first) and their ids, as the loaded tokenizer has them."""

    texts: tuple[str, ...]
    ids: frozenset[int] = frozenset()
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        alternatives = "|".join(re.escape(t) for t in sorted(set(self.texts), key=len, reverse=True))
        object.__setattr__(self, "_pattern", re.compile(f"{alternatives}|{_IMAGE_TAG.pattern}"))

    def neutralise(self, text: str) -> str:
        """`text` with every special token (and any image tag) broken so it tokenizes as text."""
        return self._pattern.sub(lambda m: _neutral(m.group(0)), text)


FIXED = SpecialTokens(CHAT_TOKENS)  # before a tokenizer is loaded (pure prompt building, tests)


def added_tokens(folder: Path) -> list[str]:
    """The added-token table of a model folder: tokenizer.json `added_tokens`, tokenizer_config.json
    `added_tokens_decoder` and the strings of special_tokens_map.json."""
    found: list[str] = []
    for name, read in (
        ("tokenizer.json", lambda d: [t.get("content") for t in d.get("added_tokens", [])]),
        (
            "tokenizer_config.json",
            lambda d: [t.get("content") for t in d.get("added_tokens_decoder", {}).values()],
        ),
        ("special_tokens_map.json", _map_strings),
    ):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        try:
            found += [t for t in read(data) if isinstance(t, str) and t]
        except (AttributeError, TypeError):
            log.debug("%s/%s: no readable token table", folder, name)
    return found


def _map_strings(data: Mapping[str, object]) -> list[str]:
    out: list[str] = []
    for value in data.values():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and isinstance(item.get("content"), str):
                out.append(item["content"])
    return out


def from_tokenizer(
    encode: Encode, folder: Path | None = None, vocabulary: Iterable[str] = ()
) -> SpecialTokens:
    """Ask the live tokenizer which candidates are atomic: `encode(probe + token + probe)` must hold
    the id `encode(token)` gives alone. Candidates: the folder's added-token table, else the
    vocabulary entries spelled like control tokens; the chat tokens always."""
    candidates = added_tokens(folder) if folder is not None else []
    if not candidates:
        candidates = [v for v in vocabulary if _CONTROL_SPELLING.fullmatch(v)]
    texts: list[str] = []
    ids: set[int] = set()
    for token in dict.fromkeys(candidates):
        if len(token) < 2:
            continue
        try:
            alone = [int(i) for i in encode(token)]
            inside = [int(i) for i in encode(f"{_PROBE}{token}{_PROBE}")]
        except Exception as err:  # a tokenizer that cannot encode it cannot be fooled by it either
            log.debug("special token %r not encodable: %s", token, err)
            continue
        if len(alone) == 1 and alone[0] in inside:
            texts.append(token)
            ids.add(alone[0])
    log.debug("special tokens from the tokenizer: %d (%s)", len(texts), " ".join(texts[:20]))
    return SpecialTokens((*CHAT_TOKENS, *texts), frozenset(ids))
