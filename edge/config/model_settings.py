"""The model sections (`[model]`, `[text_model]`, each `[[model.fallback]]`): one class per backend.

A runtime reads only its own keys, so each backend has its own section, joined on `backend` into
the union `ModelSettings` (the way Frigate joins its detector plugins on `type`). A key of another
backend (`url` under ort-genai, `path` under http) is then an unknown key of that section, which the
loader reports as `model.url: not a setting of backend 'ort-genai' (it belongs to 'http')`, instead of
a value that is silently ignored. Without `backend` a section is ort-genai, as it always was.

    ModelBase                 generation and the fallback chain: what every backend has
    LocalModelSettings        a model folder run in this process's worker: path, providers, threads, num_crops
      OrtGenAIModelSettings     backend "ort-genai"
      OpenVINOModelSettings     backend "openvino" (+ cache_dir: OpenVINO's CACHE_DIR)
    HttpModelSettings         backend "http": an OpenAI-compatible server (url, name, key, tls, limits)
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, TypeAdapter, model_validator

from edge.config.section import Section, TLSSettings
from edge.core.kinds import BackendName

DEFAULT_BACKEND: BackendName = "ort-genai"
"""The backend of a model section that names none."""
DEFAULT_NUM_CROPS = 4
"""Phi-3.5-vision HD crops of a local model that sets none."""


class ModelBase(Section):
    """What every backend has: how to generate, and the chain of endpoints to fall back to."""

    backend: BackendName = Field(DEFAULT_BACKEND, description="Runtime to use.")
    max_new_tokens: int = Field(64, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=2, description="0 = greedy.")
    system_prompt: str | None = Field(None, description="Optional system message for every prompt.")
    fallback: list[ModelSettings] = Field(
        default_factory=list,
        description="Chain: the next model endpoints to use, in order, while this one cannot serve.",
    )
    retry_primary_s: float = Field(
        300.0, gt=0, description="Chain: on a fallback endpoint, try the first one again after this."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_key_in_settings(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("api_key" in data or "key" in data):
            raise ValueError(
                "api_key: an API key is never read from settings: put it in "
                "$CREDENTIALS_DIRECTORY/model_api_key or name its variable in api_key_env"
            )
        return data

    @model_validator(mode="after")
    def _flat_chain(self) -> ModelBase:
        """The chain is [model, *model.fallback]: the chain's own keys belong to its first endpoint."""
        for i, nxt in enumerate(self.fallback):
            if nxt.fallback:
                raise ValueError(f"fallback[{i}].fallback: a chain is one flat list, not nested")
            if "retry_primary_s" in nxt.model_fields_set:
                raise ValueError(
                    f"fallback[{i}].retry_primary_s: only the first endpoint's is used (set it beside fallback)"
                )
        return self


class LocalModelSettings(ModelBase):
    """A model folder loaded by a runtime in the worker process (ort-genai, openvino)."""

    path: Path | None = Field(None, description="Model folder (ORT GenAI or OpenVINO IR).")
    providers: list[str] = Field(
        default_factory=lambda: ["cpu"],
        min_length=1,
        description="Ordered fallback list: ORT cpu|cuda|OpenVINO|QNN|dml, OpenVINO CPU|GPU|NPU|AUTO.",
    )
    provider_options: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Options per provider, e.g. {QNN = {backend_path = '...'}}."
    )
    num_crops: int = Field(
        DEFAULT_NUM_CROPS, ge=1, le=16, description="Phi-3.5-vision HD crops (image token budget)."
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="CPU threads of the runtime (ORT intra_op_num_threads, OpenVINO INFERENCE_NUM_THREADS); "
        "unset = the runtime's default (all cores). `edge bench --choose` measures it.",
    )


class OrtGenAIModelSettings(LocalModelSettings):
    backend: Literal["ort-genai"] = Field("ort-genai", description="Runtime to use.")


class OpenVINOModelSettings(LocalModelSettings):
    # No default: a dump without defaults must keep the tag, or it would load back as ort-genai.
    backend: Literal["openvino"] = Field(description="Runtime to use.")
    cache_dir: Path | None = Field(
        None,
        description="Compiled-model cache (OpenVINO CACHE_DIR) and the num_crops shadow folders; "
        "unset = $CACHE_DIRECTORY (systemd CacheDirectory=) if set, else none.",
    )


class HttpModelSettings(ModelBase):
    """An OpenAI-compatible chat-completions server (Ollama, llama.cpp, NIM, ...)."""

    backend: Literal["http"] = Field(description="Runtime to use.")
    url: str = Field(description="Base URL, e.g. http://jetson.lan:11434/v1.")
    name: str = Field(min_length=1, description="The server's model name.")
    api_key_credential: str = Field(
        "model_api_key", description="API key file in $CREDENTIALS_DIRECTORY (never in settings)."
    )
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key (if no credential file)."
    )
    timeout_s: float = Field(30.0, gt=0, le=3600, description="Connect and per-read timeout.")
    tls: TLSSettings | None = Field(None, description="TLS options for an https:// url.")
    allow_remote: bool = Field(
        False, description="Required for a non-loopback url: frames and prompts leave the device."
    )
    image_max_edge: int | None = Field(
        1344, ge=64, description="Frames are downscaled to this before JPEG encoding."
    )
    image_max_kb: int = Field(512, ge=8, description="Each JPEG data URL is capped at this.")
    max_response_kb: int = Field(1024, ge=1, description="A larger answer stream is cut off.")

    @model_validator(mode="after")
    def _endpoint(self) -> HttpModelSettings:
        scheme, host = url_host(self.url)
        if scheme not in ("http", "https") or not host:
            raise ValueError(f"url {self.url!r} is not an http:// or https:// URL with a host")
        if "@" in self.url.split("//", 1)[1].split("/", 1)[0]:
            raise ValueError("url must not carry credentials (user:password@)")
        if not is_loopback_host(host) and not self.allow_remote:
            raise ValueError(
                f"url host {host!r} is not this machine: frames and prompts would leave the device; "
                "set allow_remote = true to allow it"
            )
        if self.tls is not None and scheme != "https":
            raise ValueError("tls is set but url is not https://")
        if self.api_key_env is not None and self.api_key_env.upper().startswith("EDGE_"):
            raise ValueError(
                f"api_key_env {self.api_key_env!r}: EDGE_* variables are settings; use another name"
            )
        if "/" in self.api_key_credential or self.api_key_credential.startswith("."):
            raise ValueError(f"api_key_credential {self.api_key_credential!r} is not a plain file name")
        return self


def _backend_of(value: Any) -> Any:
    """The tag of a model section: its `backend`, ort-genai when it names none."""
    if isinstance(value, dict):
        return value.get("backend", DEFAULT_BACKEND)
    return getattr(value, "backend", DEFAULT_BACKEND)


ModelSettings = Annotated[
    Annotated[OrtGenAIModelSettings, Tag("ort-genai")]
    | Annotated[OpenVINOModelSettings, Tag("openvino")]
    | Annotated[HttpModelSettings, Tag("http")],
    Discriminator(_backend_of),
]
"""A model section: the class of its backend."""

SECTIONS: dict[str, type[ModelBase]] = {
    "ort-genai": OrtGenAIModelSettings,
    "openvino": OpenVINOModelSettings,
    "http": HttpModelSettings,
}
"""Each backend's section class, by the name `backend` gives it."""

SHARED_KEYS = frozenset(ModelBase.model_fields)
"""The keys every backend has; any other key belongs to some backends only."""


def backends_with(key: str) -> list[str]:
    """The backends whose section has `key` (for an error that says where a key belongs)."""
    return [name for name, cls in SECTIONS.items() if key in cls.model_fields]


for _cls in (ModelBase, LocalModelSettings, OrtGenAIModelSettings, OpenVINOModelSettings, HttpModelSettings):
    _cls.model_rebuild()  # `fallback` names the union, defined after the classes

_ADAPTER: TypeAdapter[ModelSettings] = TypeAdapter(ModelSettings)


def model_settings(**values: Any) -> ModelSettings:
    """A model section from keyword values, of the class its `backend` names (default ort-genai)."""
    return _ADAPTER.validate_python(values)


def providers_of(model: ModelSettings) -> list[str]:
    """The ordered providers a model section loads on: a local runtime's `providers`; an http
    endpoint is one ("http": the server chooses its own hardware)."""
    return list(model.providers) if isinstance(model, LocalModelSettings) else ["http"]


def with_providers(model: ModelSettings, providers: list[str]) -> ModelSettings:
    """`model` loading on `providers` (what is left of its chain); an http endpoint has none to change."""
    return (
        model.model_copy(update={"providers": providers}) if isinstance(model, LocalModelSettings) else model
    )


def path_of(model: ModelSettings) -> Path | None:
    """A local model's folder; an http endpoint has none."""
    return model.path if isinstance(model, LocalModelSettings) else None


def num_crops_of(model: ModelSettings) -> int:
    """A local model's num_crops. An http server sizes images itself; for it the default only
    stands in where a count is needed (the deadline scaling of a multi-frame prompt)."""
    return model.num_crops if isinstance(model, LocalModelSettings) else DEFAULT_NUM_CROPS


def url_host(url: str) -> tuple[str, str]:
    """(scheme, host) of a URL, lower case; IPv6 brackets removed."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        return parts.scheme.lower(), (parts.hostname or "").lower()
    except ValueError:
        return "", ""


def is_loopback_host(host: str) -> bool:
    """localhost or a loopback address: the only hosts frames may go to without allow_remote."""
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
