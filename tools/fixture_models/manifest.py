"""manifest.json: what each fixture folder is, for tests and tools that pick models by property.

Also owns the final tidy-up (file modes, stray files), because the manifest is written last, over a
finished tree.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from .spec import TokenIds

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class FixtureModel:
    """One committed model folder."""

    name: str
    kind: str  # "text" | "vision"
    backend: str  # "ort-genai" | "openvino"
    eos_biased: bool  # first generated token is <|end|>
    precision: str  # weights: "fp32" | "int4"


FIXTURES = (
    FixtureModel("ort-phi3-fp32", "text", "ort-genai", False, "fp32"),
    FixtureModel("ort-phi3-int4", "text", "ort-genai", False, "int4"),
    FixtureModel("ort-phi3-eos", "text", "ort-genai", True, "fp32"),
    FixtureModel("ort-phi3v-fp32", "vision", "ort-genai", False, "fp32"),
    FixtureModel("ort-phi3v-eos", "vision", "ort-genai", True, "fp32"),
    FixtureModel("ov-phi3", "text", "openvino", False, "fp32"),
    FixtureModel("ov-phi3v", "vision", "openvino", False, "fp32"),
)


def fix_modes(root: Path) -> None:
    """Every file 0644, every folder 0755: onnx writes external data as 0600, which a service user
    reading a checked-out copy cannot open."""
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def write_manifest(root: Path, ids: TokenIds, versions: dict[str, str]) -> list[FixtureModel]:
    """List the known folders present under root, with the token ids tests need."""
    present = [m for m in FIXTURES if (root / m.name).is_dir()]
    doc = {
        "version": MANIFEST_VERSION,
        "note": "random tiny models: output text is noise; assert structure, counts and stop reasons",
        "tokens": {
            "bos": ids.bos,
            "endoftext": ids.endoftext,
            "assistant": ids.assistant,
            "system": ids.system,
            "end": ids.end,
            "user": ids.user,
            "image": ids.image,
        },
        "vocab_size": ids.vocab_size,
        "generated_with": versions,
        "models": [asdict(m) for m in present],
    }
    (root / MANIFEST).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    log.info("manifest written models=%s", [m.name for m in present])
    return present
