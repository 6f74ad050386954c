"""Model sections are one class per backend, joined on `backend`: a key of another backend is an
error naming the key, the backend and its source."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.assets import package_file
from edge.config.model_settings import DEFAULT_NUM_CROPS, num_crops_of, providers_of
from edge.config.settings import (
    HttpModelSettings,
    OpenVINOModelSettings,
    OrtGenAIModelSettings,
    model_settings,
)
from edge.config.sources import load_settings
from edge.core.errors import ConfigError
from edge.core.messages import GenerationRequest
from edge.inference.requests import bind

HTTP = '[model]\nbackend = "http"\nurl = "http://127.0.0.1:8080/v1"\nname = "phi"\n'
PROFILES = sorted(p.stem for p in package_file("config/profiles").glob("*.toml"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def problems(**kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={}, **kwargs)  # type: ignore[arg-type]
    return exc.value.problems


# --------------------------------------------------------------------------- a key of another backend


@pytest.mark.parametrize(
    ("section", "key", "belongs"),
    [
        ('backend = "ort-genai"', 'url = "http://127.0.0.1/v1"', "'http'"),
        ("", 'url = "http://127.0.0.1/v1"', "'http'"),  # no backend: ort-genai
        ('backend = "ort-genai"', 'cache_dir = "/var/cache/edge"', "'openvino'"),
        ('backend = "openvino"', 'api_key_env = "MODEL_KEY"', "'http'"),
        (HTTP.removeprefix("[model]\n"), 'path = "/opt/models/phi"', "'ort-genai' and 'openvino'"),
        (HTTP.removeprefix("[model]\n"), "num_crops = 2", "'ort-genai' and 'openvino'"),
        (HTTP.removeprefix("[model]\n"), 'providers = ["cuda"]', "'ort-genai' and 'openvino'"),
    ],
)
def test_a_key_of_another_backend_names_key_backend_and_file(
    tmp_path: Path, section: str, key: str, belongs: str
) -> None:
    cfg = write(tmp_path / "edge.toml", f"[model]\n{section}\n{key}\n")
    backend = section.split('"')[1] if section else "ort-genai"
    name = key.split(" ")[0]
    assert problems(config=cfg) == [
        f"model.{name}: not a setting of backend {backend!r} (it belongs to {belongs}) (from {cfg})"
    ]


def test_a_key_of_another_backend_from_env_or_set_names_that_source(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", HTTP)
    assert problems(config=cfg, overrides=["model.threads=2"]) == [
        "model.threads: not a setting of backend 'http' (it belongs to 'ort-genai' and 'openvino') "
        "(from --set model.threads)"
    ]
    with pytest.raises(ConfigError) as exc:
        load_settings(profile="demo", environ={"EDGE_MODEL__NAME": "phi"})
    assert exc.value.problems == [
        "model.name: not a setting of backend 'ort-genai' (it belongs to 'http') (from env EDGE_MODEL__NAME)"
    ]


def test_a_key_of_no_backend_is_an_unknown_key(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", "[model]\nnum_crop = 2\n")
    assert problems(config=cfg) == [f"model.num_crop: unknown key (from {cfg})"]


def test_an_unknown_backend_names_the_choices(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", '[model]\nbackend = "onnx"\npath = "/x"\n')
    assert problems(config=cfg) == [
        f"model.backend: must be one of 'ort-genai', 'openvino', 'http' (got 'onnx') (from {cfg})"
    ]


def test_http_without_url_names_the_missing_key_and_the_section_source(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", '[model]\nbackend = "http"\nname = "phi"\n')
    (line,) = problems(config=cfg)
    assert line.startswith("model.url: backend 'http' needs url (base URL, e.g. ") and line.endswith(
        f"(from {cfg})"
    )


# --------------------------------------------------------------------------- the default backend


def test_without_backend_a_section_is_ort_genai(tmp_path: Path) -> None:
    assert isinstance(
        load_settings(config=write(tmp_path / "e.toml", ""), environ={}).settings.model, OrtGenAIModelSettings
    )
    cfg = write(tmp_path / "edge.toml", '[model]\npath = "models/phi"\nthreads = 2\n')
    model = load_settings(config=cfg, environ={}).settings.model
    assert isinstance(model, OrtGenAIModelSettings)
    assert (model.backend, model.path, model.threads) == ("ort-genai", tmp_path / "models/phi", 2)
    assert isinstance(model_settings(), OrtGenAIModelSettings)


def test_a_dump_without_defaults_loads_back_as_the_same_backend() -> None:
    for model in (
        model_settings(path="/m"),
        model_settings(backend="openvino", path="/m", cache_dir="/c"),
        model_settings(backend="http", url="http://127.0.0.1/v1", name="phi"),
    ):
        again = model_settings(**model.model_dump(exclude_defaults=True))
        assert type(again) is type(model) and again == model


# --------------------------------------------------------------------------- a fallback chain


def test_a_chain_mixes_backends_each_entry_its_own_class(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "edge.toml",
        HTTP + '[[model.fallback]]\npath = "m/ort"\nnum_crops = 1\n'
        '[[model.fallback]]\nbackend = "openvino"\npath = "m/ov"\ncache_dir = "cache"\n'
        '[[model.fallback]]\nbackend = "http"\nurl = "http://localhost:11434/v1"\nname = "small"\n',
    )
    model = load_settings(config=cfg, environ={}).settings.model
    assert isinstance(model, HttpModelSettings)
    ort, ov, http = model.fallback
    assert isinstance(ort, OrtGenAIModelSettings) and (ort.path, ort.num_crops) == (tmp_path / "m/ort", 1)
    assert isinstance(ov, OpenVINOModelSettings) and ov.cache_dir == tmp_path / "cache"
    assert isinstance(http, HttpModelSettings) and http.name == "small"


def test_a_chain_entry_with_a_key_of_another_backend_names_the_entry(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "edge.toml",
        HTTP + '[[model.fallback]]\nbackend = "openvino"\npath = "m/ov"\nurl = "http://127.0.0.1/v1"\n',
    )
    assert problems(config=cfg) == [
        f"model.fallback.0.url: not a setting of backend 'openvino' (it belongs to 'http') (from {cfg})"
    ]


# --------------------------------------------------------------------------- what readers see


def test_an_http_entry_has_no_providers_or_crops_of_its_own() -> None:
    http = model_settings(backend="http", url="http://127.0.0.1/v1", name="phi")
    assert providers_of(http) == ["http"] and num_crops_of(http) == DEFAULT_NUM_CROPS
    request = GenerationRequest(prompt="hi", task_num_crops=2)
    assert bind(GenerationRequest(prompt="hi"), http).num_crops == DEFAULT_NUM_CROPS
    assert bind(request, http).num_crops == 2
    assert bind(GenerationRequest(prompt="hi"), model_settings(num_crops=1)).num_crops == 1
