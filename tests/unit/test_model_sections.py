"""Model sections are one class per backend, joined on `backend`: a key of another backend is an
error naming the key, the backend and its source; a layer that changes the backend starts the
section over for the new runtime instead of inheriting the old one's keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.assets import package_file
from edge.cli.config_check import offline_problems
from edge.config.model_settings import DEFAULT_NUM_CROPS, num_crops_of, providers_of
from edge.config.render import render
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


# --------------------------------------------------------------------------- the layering rule


@pytest.mark.parametrize("profile", PROFILES)
def test_an_http_config_over_each_shipped_profile_drops_the_profiles_local_keys(
    tmp_path: Path, profile: str
) -> None:
    cfg = write(tmp_path / "edge.toml", HTTP)
    loaded = load_settings(config=cfg, profile=profile, environ={})
    model = loaded.settings.model
    assert isinstance(model, HttpModelSettings) and (model.url, model.name) == (
        "http://127.0.0.1:8080/v1",
        "phi",
    )
    assert not [
        p for p in loaded.origins if p[:2] in {("model", k) for k in ("path", "providers", "num_crops")}
    ]
    shown = render(loaded)
    assert '\nbackend = "http"' in shown and "\npath = " not in shown and "providers" not in shown
    assert offline_problems(loaded) == []


def test_the_shared_keys_of_the_earlier_layers_stay(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", HTTP)
    loaded = load_settings(config=cfg, profile="demo", overrides=["model.max_new_tokens=40"], environ={})
    loaded_plain = load_settings(config=cfg, profile="rpi5", environ={})
    assert loaded.settings.model.max_new_tokens == 40
    assert loaded_plain.origin(("model", "max_new_tokens")).startswith("profile ")  # kept from the profile


def test_a_switch_between_local_runtimes_keeps_the_keys_both_have(tmp_path: Path) -> None:
    loaded = load_settings(profile="intel-core-ultra-npu", overrides=["model.backend=ort-genai"], environ={})
    model = loaded.settings.model
    assert isinstance(model, OrtGenAIModelSettings)  # cache_dir (OpenVINO's) is gone, path stays
    assert str(model.path) == "/opt/models/Phi-3.5-vision-instruct-int4-ov"
    assert loaded.origin(("model", "path")).startswith("profile ")


def test_a_key_of_the_old_backend_in_the_switching_layer_is_still_an_error(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", HTTP + 'providers = ["cuda"]\n')
    assert problems(config=cfg, profile="x86-cpu") == [
        f"model.providers: not a setting of backend 'http' (it belongs to 'ort-genai' and 'openvino') (from {cfg})"
    ]


def test_a_later_layer_back_to_a_local_backend_needs_its_own_keys(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", HTTP)
    model = load_settings(
        config=cfg, profile="demo", overrides=["model.backend=ort-genai", "model.path=/opt/m"], environ={}
    ).settings.model
    assert isinstance(model, OrtGenAIModelSettings) and str(model.path) == "/opt/m"


# --------------------------------------------------------------------------- what readers see


def test_an_http_entry_has_no_providers_or_crops_of_its_own() -> None:
    http = model_settings(backend="http", url="http://127.0.0.1/v1", name="phi")
    assert providers_of(http) == ["http"] and num_crops_of(http) == DEFAULT_NUM_CROPS
    request = GenerationRequest(prompt="hi", task_num_crops=2)
    assert bind(GenerationRequest(prompt="hi"), http).num_crops == DEFAULT_NUM_CROPS
    assert bind(request, http).num_crops == 2
    assert bind(GenerationRequest(prompt="hi"), model_settings(num_crops=1)).num_crops == 1


def test_bench_choose_jobs_carry_the_candidates_num_crops() -> None:
    """num_crops is resolved once, by bind; a backend never picks it from its own settings for a
    bench job (the candidate's value is in the request, as in a daemon job)."""
    from edge.cli.bench.choose import _request

    request = _request(None, "hi", model_settings(num_crops=2, system_prompt="brief"), 8)
    assert (request.num_crops, request.system, request.max_new_tokens, request.temperature) == (
        2,
        "brief",
        8,
        0.0,
    )


def test_config_show_lists_a_mixed_chain_each_entry_with_its_own_keys(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "edge.toml",
        HTTP
        + '[[model.fallback]]\npath = "m/ort"\n[[model.fallback]]\nbackend = "openvino"\npath = "m/ov"\n',
    )
    (line,) = [
        x for x in render(load_settings(config=cfg, environ={})).splitlines() if x.startswith("fallback = ")
    ]
    assert 'backend = "ort-genai"' in line and 'backend = "openvino"' in line and "url" not in line
    assert line.count("cache_dir") == 0 and line.count("path = ") == 2  # unset keys are left out


def test_the_chains_own_keys_belong_to_its_first_endpoint(tmp_path: Path) -> None:
    cfg = write(tmp_path / "edge.toml", HTTP + '[[model.fallback]]\npath = "m"\nretry_primary_s = 60\n')
    assert problems(config=cfg) == [
        f"model: fallback[0].retry_primary_s: only the first endpoint's is used (set it beside fallback) (from {cfg})"
    ]
