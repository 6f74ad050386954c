"""ONNX Runtime GenAI backend (Phi-3.5-mini `phi3`, Phi-3.5-vision `phi3v`).

The only module that imports onnxruntime_genai, lazily. Frames never reach ORT's image decoder
(garbage kills the process, a truncated JPEG hangs it): they are validated arrays preprocessed by
phi3v_preprocess and fed as NamedTensors, which also makes num_crops work (the 0.18 processor
ignores it), per request. Several images go in one prompt: `<|image_1|>…<|image_N|>`, pixel_values
[N, crops+1, 3, 336, 336], image_sizes [N, 2], num_image_tokens [N, 1]; N frames at num_crops k cost
N x tokens(k) image tokens. Generation is a plain append/generate_next_token loop; nothing native can be
interrupted, so cancel and the soft deadline are checked between tokens and the hard limits belong
to the supervisor, which kills the worker process.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from typing import Any, Final

import numpy as np

from edge.config.settings import OrtGenAIModelSettings
from edge.core.errors import BackendUnavailable, GenerationError
from edge.core.messages import Generation, GenerationRequest
from edge.imaging.imageio import validate_array
from edge.inference import phi3v_preprocess, special_tokens, structured
from edge.inference.base import BackendInfo, TokenCallback
from edge.inference.model_folder import ModelFolder, validate_for
from edge.inference.prompts import ImageSlot, chat_prompt, split_image_tags
from edge.inference.providers import canonical, first_line, load_first, options_for
from edge.inference.token_clock import TokenClock

log = logging.getLogger(__name__)

BACKEND: Final = "ort-genai"
INSTALL_HINT = "pip install 'edge-vlm-agent[ort]'"
# configured name (lower case) -> ORT GenAI's spelling; "cpu" means no execution provider appended
PROVIDERS = {"cpu": "cpu", "cuda": "cuda", "openvino": "OpenVINO", "qnn": "QNN", "dml": "dml"}

_plugin_lock = threading.Lock()
_ov_plugin: str | None = None  # None: not tried; "" registered; else why not


def _sdk() -> Any:
    try:
        import onnxruntime_genai as og
    except ImportError as err:
        raise BackendUnavailable(f"ONNX Runtime GenAI is not installed ({err}): {INSTALL_HINT}") from None
    return og


def sdk_available() -> bool | str:
    """True, or why the SDK cannot be imported (for `edge devices` / `edge doctor`)."""
    try:
        _sdk()
    except BackendUnavailable as err:
        return str(err)
    return True


def _register_openvino_plugin(og: Any) -> str:
    """Register the OpenVINO plugin EP once; '' when registered, else why it is not available."""
    global _ov_plugin
    with _plugin_lock:
        if _ov_plugin is None:
            try:
                import onnxruntime_ep_openvino as ovep
            except ImportError:
                _ov_plugin = "onnxruntime-ep-openvino is not installed (pip install onnxruntime-ep-openvino)"
            else:
                try:
                    og.register_execution_provider_library(
                        "OpenVINOExecutionProvider", ovep.get_library_path()
                    )
                    _ov_plugin = ""
                except Exception as err:
                    _ov_plugin = f"registering onnxruntime-ep-openvino failed: {first_line(err)}"
        return _ov_plugin


def thread_overlay(genai_config: dict[str, Any], threads: int) -> str:
    """A genai_config overlay setting intra_op_num_threads on each of the folder's sessions."""
    model = genai_config.get("model", {})
    sections = [k for k in ("decoder", "vision", "embedding", "speech") if isinstance(model.get(k), dict)]
    return json.dumps(
        {"model": {k: {"session_options": {"intra_op_num_threads": int(threads)}} for k in sections}}
    )


def _load_model(
    og: Any, folder: ModelFolder, provider: str, options: dict[str, str], threads: int | None = None
) -> Any:
    name = canonical(provider, PROVIDERS, BACKEND)
    plugin_note = ""
    if name == "OpenVINO":
        plugin_note = _register_openvino_plugin(og)
    config = og.Config(str(folder.path))
    config.clear_providers()
    if threads:
        genai = json.loads((folder.path / "genai_config.json").read_text(encoding="utf-8"))
        config.overlay(thread_overlay(genai, threads))
    try:
        if name != "cpu":
            config.append_provider(name)
            for key, value in options.items():
                config.set_provider_option(name, key, str(value))
        return og.Model(config)
    except Exception as err:
        if plugin_note:
            raise RuntimeError(f"{first_line(err)} ({plugin_note})") from None
        raise


class OrtGenAIBackend:
    """One loaded ORT GenAI model on one provider; used from one thread (cancel from any)."""

    def __init__(
        self, og: Any, model: Any, folder: ModelFolder, settings: OrtGenAIModelSettings, info: BackendInfo
    ):
        self._og = og
        self._model = model
        self._tokenizer = og.Tokenizer(model)
        self._folder = folder
        self._settings = settings
        self.info = info
        self._guidance = structured.Guidance("JSON guidance")

    @functools.cached_property
    def _special(self) -> special_tokens.SpecialTokens:
        """The tokenizer's special tokens, asked of it once, at the first prompt."""
        return special_tokens.from_tokenizer(lambda t: list(self._tokenizer.encode(t)), self._folder.path)

    # ------------------------------------------------------------------ inputs
    def _inputs(self, request: GenerationRequest, images: list[np.ndarray]) -> tuple[Any, int, int]:
        """(ids array or NamedTensors, prompt tokens incl. image tokens, image tokens)."""
        text = request.prompt
        if request.json_schema:
            text = structured.schema_prompt(text, request.json_schema)
        system = request.system if request.system is not None else self._settings.system_prompt
        prompt = chat_prompt(text, system=system, num_images=len(images), neutralise=self._special.neutralise)
        if not images:
            ids = np.asarray(self._tokenizer.encode(prompt), np.int32)
            return ids, int(ids.shape[-1]), 0
        pieces = [p.index if isinstance(p, ImageSlot) else p for p in split_image_tags(prompt)]
        num_crops = request.num_crops or self._settings.num_crops  # per task, else the model's
        vi = phi3v_preprocess.prepare(images, num_crops, pieces, self._tokenizer.encode)
        named = self._og.NamedTensors()
        named["input_ids"] = vi.input_ids
        named["pixel_values"] = vi.pixel_values
        named["image_sizes"] = vi.image_sizes
        named["num_image_tokens"] = vi.num_image_tokens
        return named, int(vi.input_ids.shape[-1]), vi.image_tokens

    def _params(self, request: GenerationRequest, prompt_len: int) -> tuple[Any, int]:
        max_new = request.max_new_tokens
        ctx = self._folder.context_length
        if ctx is not None:
            if prompt_len >= ctx:
                raise GenerationError(f"prompt is {prompt_len} tokens but the model's context is {ctx}")
            max_new = min(max_new, ctx - prompt_len)
        params = self._og.GeneratorParams(self._model)
        options: dict[str, Any] = {"max_length": prompt_len + max_new}
        if request.temperature > 0:
            options.update(do_sample=True, temperature=float(request.temperature))
        else:
            options.update(do_sample=False)
        params.set_search_options(**options)
        if request.json_schema:
            self._guidance.apply(request.json_schema, lambda text: params.set_guidance("json_schema", text))
        return params, max_new

    # ------------------------------------------------------------------ generate
    def generate(
        self,
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        if self._model is None:
            raise GenerationError("backend is closed")
        clock = TokenClock(on_token, cancel, request.deadline_s)
        images = [validate_array(img) for img in request.images]  # FrameError before anything else
        if images and not self.info.vision:
            raise GenerationError(f"model {self.info.name} is text-only and cannot take images")
        if clock.cancelled_before_start():
            return self._result("", clock, 0, 0, 0, request)
        try:
            inputs, prompt_len, image_tokens = self._inputs(request, images)
            params, max_new = self._params(request, prompt_len)
            gen = self._og.Generator(self._model, params)
            if isinstance(inputs, np.ndarray):
                gen.append_tokens(inputs)  # the prefill runs here
            else:
                gen.set_inputs(inputs)  # vision + embedding + decoder prefill
            tick = clock.tick
            while not gen.is_done():
                gen.generate_next_token()
                if tick() is not None:
                    break
            out = gen.get_sequence(0)[prompt_len:]
            del gen
        except GenerationError:
            raise
        except RuntimeError as err:
            raise GenerationError(f"ORT GenAI generation failed: {first_line(err)}") from None
        text = self._tokenizer.decode(out) if len(out) else ""
        if text.startswith(" "):  # SentencePiece's word marker on the first piece, as HF strips it
            text = text[1:]
        return self._result(text, clock, prompt_len, image_tokens, len(out), request, max_new)

    def _result(
        self,
        text: str,
        clock: TokenClock,
        prompt_len: int,
        image_tokens: int,
        new_tokens: int,
        request: GenerationRequest,
        max_new: int | None = None,
    ) -> Generation:
        stats = clock.finish(
            prompt_tokens=prompt_len,
            image_tokens=image_tokens,
            new_tokens=new_tokens,
            max_new_tokens=request.max_new_tokens if max_new is None else max_new,
        )
        data, error = (None, None)
        if request.json_schema:
            data, error = structured.parse(text, request.json_schema)
        return Generation(text=text, stats=stats, data=data, schema_error=error)

    def close(self) -> None:
        self._tokenizer = None
        self._model = None


def load(settings: OrtGenAIModelSettings) -> OrtGenAIBackend:
    """Validate the folder, then load on the first configured provider that works."""
    folder = validate_for(settings.path, BACKEND)
    og = _sdk()
    for p in settings.providers:  # typos fail before anything loads
        canonical(p, PROVIDERS, BACKEND)
    t0 = time.perf_counter()
    model, used, tried = load_first(
        settings.providers,
        lambda p: _load_model(og, folder, p, options_for(p, settings.provider_options), settings.threads),
        what=f"{folder.name} with {BACKEND}",
    )
    load_ms = (time.perf_counter() - t0) * 1000.0
    info = BackendInfo(
        name=folder.name,
        backend=BACKEND,
        provider=used,
        vision=folder.vision,
        load_ms=round(load_ms, 1),
        providers_tried=tried,
    )
    backend = OrtGenAIBackend(og, model, folder, settings, info)
    log.info("loaded %s (%s) with %s on %s in %.0f ms", folder.name, folder.kind, BACKEND, used, load_ms)
    return backend
