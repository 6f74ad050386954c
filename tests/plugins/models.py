"""Paths of the committed tiny fixture models (tests/fixtures/models, see its README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parent.parent / "fixtures" / "models"


def model_dir(name: str) -> Path:
    path = MODELS / name
    if not path.is_dir():
        pytest.fail(f"fixture model {name} missing under {MODELS}: run tools/make_fixture_models.py")
    return path


def manifest() -> dict:
    return json.loads((MODELS / "manifest.json").read_text())


@pytest.fixture(scope="session")
def fixture_models() -> Path:
    return MODELS
