"""Narrowing a model section (the union on `backend`) in tests that know which backend they loaded."""

from __future__ import annotations

from edge.config.settings import HttpModelSettings, LocalModelSettings, ModelSettings


def local(model: ModelSettings | None) -> LocalModelSettings:
    assert isinstance(model, LocalModelSettings), f"not a local model section: {model!r}"
    return model


def http(model: ModelSettings | None) -> HttpModelSettings:
    assert isinstance(model, HttpModelSettings), f"not an http model section: {model!r}"
    return model
