"""OpenVINO GenAI backend: LLMPipeline for Phi-3.5-mini IR, VLMPipeline for Phi-3.5-vision (phi3_v).

The only module that imports openvino / openvino_genai, lazily. Devices are tried in the configured
order by constructing the pipeline (NPU/GPU that are absent fail there, AUTO falls back to CPU).
Compiled blobs go to CACHE_DIR under model.cache_dir (unset: systemd's $CACHE_DIRECTORY) so a
restart does not recompile (minutes on an NPU). Generation streams through a StreamerBase whose write() runs once per token: that is the
heartbeat, and returning STOP is how cancel and the soft deadline end a run (1-2 tokens late).

num_crops: VLMPipeline reads it from preprocessor_config.json and ignores it at generate time, so a
different model.num_crops is applied through a "shadow" folder of symlinks with a rewritten
preprocessor_config.json; the model files are never copied or modified. A request may ask for
another num_crops (a task's own `num_crops`, e.g. 1 for multi-frame events): the first such request
builds one more pipeline through that value's shadow folder on the device already in use, kept for
the life of the backend (one per distinct value; the configured tasks bound how many). Its cost:
one more compile and the pipeline's runtime memory; on CPU the weights are mmapped from the same
files, so the page cache holds them once. Several images go in as a list of tensors, tagged
`<|image_1|>…<|image_N|>` in the prompt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

import numpy as np

from edge.config.settings import OpenVINOModelSettings
from edge.core.errors import BackendUnavailable, ConfigError, GenerationError, ModelError
from edge.core.messages import Generation, GenerationRequest
from edge.imaging.imageio import validate_array
from edge.inference import special_tokens, structured
from edge.inference.base import BackendInfo, TokenCallback
from edge.inference.model_folder import ModelFolder, validate_for
from edge.inference.phi3v_preprocess import hd_size, image_token_count
from edge.inference.prompts import chat_prompt
from edge.inference.providers import first_line, load_first, options_for
from edge.inference.token_clock import TokenClock

log = logging.getLogger(__name__)

BACKEND: Final = "openvino"
INSTALL_HINT = "pip install 'edge-vlm-agent[openvino]'"
DEVICES = ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI")
# NPU compiles the language model for static shapes: the prompt and answer budgets it must fit.
_INT_OPTIONS = {"MAX_PROMPT_LEN", "MIN_RESPONSE_LEN", "NUM_STREAMS", "INFERENCE_NUM_THREADS"}


def _sdk() -> tuple[Any, Any]:
    try:
        import openvino as ov
        import openvino_genai as ovg
    except ImportError as err:
        raise BackendUnavailable(f"OpenVINO GenAI is not installed ({err}): {INSTALL_HINT}") from None
    return ov, ovg


def sdk_available() -> bool | str:
    """True, or why the SDK cannot be imported (for `edge devices` / `edge doctor`)."""
    try:
        _sdk()
    except BackendUnavailable as err:
        return str(err)
    return True


def device_name(name: str) -> str:
    """OpenVINO's spelling of a configured device (cpu -> CPU, AUTO:GPU,CPU kept); ConfigError if unknown."""
    dev = name.strip().upper()
    head = dev.split(":", 1)[0].split(".", 1)[0]
    if head not in DEVICES:
        raise ConfigError(
            [f"model.providers: unknown OpenVINO device {name!r} (known: {', '.join(DEVICES)})"]
        )
    return dev


def ov_image_tokens(height: int, width: int, num_crops: int) -> int:
    """Image tokens VLMPipeline (2026.4) gives a height x width frame.

    It stores the padded HD size as {width, height} and so counts the 12 newline tokens per crop
    *column* + 1: for square grids this equals the Phi-3 formula, for others it differs (measured).
    """
    _, _, pad_h, pad_w = hd_size(height, width, num_crops)
    return image_token_count(pad_w, pad_h)


def cache_root(settings: OpenVINOModelSettings, environ: dict[str, str] | None = None) -> Path | None:
    """model.cache_dir; unset, systemd's $CACHE_DIRECTORY (the unit's CacheDirectory=edge), so that a
    service keeps its compiled blobs without a setting that only OpenVINO has; else none."""
    if settings.cache_dir is not None:
        return Path(settings.cache_dir).expanduser()
    systemd = (os.environ if environ is None else environ).get("CACHE_DIRECTORY", "")
    return Path(systemd.split(":")[0]) if systemd else None  # several CacheDirectory= are ':'-joined


def _properties(settings: OpenVINOModelSettings, device: str, folder: ModelFolder) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if (root := cache_root(settings)) is not None:
        cache = root / "openvino"
        cache.mkdir(parents=True, exist_ok=True)
        props["CACHE_DIR"] = str(cache)
    if device.startswith("NPU"):
        worst_image = (settings.num_crops + 1) * 156 + 13 if folder.vision else 0
        props["MAX_PROMPT_LEN"] = max(1024, -(-(worst_image + 256) // 256) * 256)
        props["MIN_RESPONSE_LEN"] = settings.max_new_tokens
    if settings.threads and device.startswith("CPU"):
        props["INFERENCE_NUM_THREADS"] = int(settings.threads)  # provider_options may still override it
    for key, value in options_for(device, settings.provider_options).items():
        props[key] = int(value) if key in _INT_OPTIONS and str(value).strip().isdigit() else value
    return props


def _crops_folder(folder: ModelFolder, num_crops: int, cache_dir: Path | None) -> tuple[Path, bool]:
    """(folder to load, is_temporary): the model folder itself, or a symlink shadow with num_crops."""
    if not folder.vision or folder.num_crops == num_crops:
        return folder.path, False
    if cache_dir is not None:
        shadow = Path(cache_dir).expanduser() / "openvino-crops" / f"{folder.name}-crops{num_crops}"
        shutil.rmtree(shadow, ignore_errors=True)
        shadow.mkdir(parents=True)
        temporary = False
    else:
        shadow = Path(tempfile.mkdtemp(prefix=f"edge-{folder.name}-crops{num_crops}-"))
        temporary = True
    src = folder.path.resolve()
    for entry in src.iterdir():
        if entry.name != "preprocessor_config.json":
            os.symlink(entry, shadow / entry.name)
    config = json.loads((src / "preprocessor_config.json").read_text(encoding="utf-8"))
    config["num_crops"] = num_crops
    (shadow / "preprocessor_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    log.info("num_crops %d (folder has %s): loading through %s", num_crops, folder.num_crops, shadow)
    return shadow, temporary


def _special_tokens(pipe: Any, folder: Path) -> special_tokens.SpecialTokens:
    """The pipeline's own tokenizer says which of its tokens are special (see special_tokens)."""
    try:
        tok = pipe.get_tokenizer()
    except Exception as err:
        log.warning("no tokenizer from the pipeline (%s): neutralising the chat tokens only", err)
        return special_tokens.FIXED

    def encode(text: str) -> list[int]:
        return [int(i) for i in tok.encode(text, add_special_tokens=False).input_ids.data[0]]

    try:
        vocabulary = list(tok.get_vocab())
    except Exception:
        vocabulary = []
    return special_tokens.from_tokenizer(encode, folder, vocabulary)


def _streamer_type(ovg: Any) -> type:
    running, stop = ovg.StreamingStatus.RUNNING, ovg.StreamingStatus.STOP

    class _ClockStreamer(ovg.StreamerBase):  # type: ignore[misc]
        """write() runs once per token on OpenVINO's streaming thread: heartbeat, cancel, deadline.

        An exception escaping write() into the runtime aborts the whole process (std::terminate),
        so it is caught here, generation is stopped, and generate() re-raises it afterwards.
        """

        def __init__(self, clock: TokenClock) -> None:
            super().__init__()
            self._tick = clock.tick
            self.error: BaseException | None = None

        def write(self, token: Any) -> Any:
            try:
                return running if self._tick() is None else stop
            except BaseException as err:
                self.error = err
                return stop

        def end(self) -> None:
            return None

    return _ClockStreamer


class OpenVINOBackend:
    """One loaded OpenVINO GenAI pipeline on one device; used from one thread (cancel from any)."""

    def __init__(
        self,
        ov: Any,
        ovg: Any,
        pipe: Any,
        folder: ModelFolder,
        settings: OpenVINOModelSettings,
        info: BackendInfo,
        temp_dir: Path | None = None,
        make_pipe: Any = None,
    ):
        self._ov = ov
        self._ovg = ovg
        self._pipe = pipe
        self._folder = folder
        self._settings = settings
        self._streamer = _streamer_type(ovg)
        self._num_crops = settings.num_crops if folder.vision else 0
        self._guidance = structured.Guidance("structured output")
        self._temp_dir = temp_dir  # a shadow folder of ours, removed on close
        self._make_pipe = make_pipe  # num_crops -> (pipeline, temporary shadow or None)
        self._extra: dict[int, tuple[Any, Path | None]] = {}  # pipelines for other num_crops values
        self.info = info
        self._special = _special_tokens(pipe, folder.path)

    def _pipe_for(self, num_crops: int) -> Any:
        """The pipeline that preprocesses images with `num_crops` (built on first use, then kept)."""
        if num_crops == self._num_crops or not self.info.vision:
            return self._pipe
        if num_crops not in self._extra:
            if self._make_pipe is None:
                raise GenerationError(f"num_crops {num_crops} is not available on this backend")
            t0 = time.perf_counter()
            self._extra[num_crops] = self._make_pipe(num_crops)
            log.info(
                "num_crops %d: extra pipeline built in %.0f ms", num_crops, (time.perf_counter() - t0) * 1e3
            )
        return self._extra[num_crops][0]

    def _config(self, request: GenerationRequest) -> Any:
        cfg = self._pipe.get_generation_config()  # keeps the folder's eos / stop token ids
        cfg.max_new_tokens = request.max_new_tokens
        cfg.apply_chat_template = False  # the prompt is already in Phi-3 chat format
        if request.temperature > 0:
            cfg.do_sample = True
            cfg.temperature = float(request.temperature)
        else:
            cfg.do_sample = False
        if request.json_schema:

            def constrain(text: str) -> None:
                cfg.structured_output_config = self._ovg.StructuredOutputConfig(json_schema=text)

            self._guidance.apply(request.json_schema, constrain)
        return cfg

    def generate(
        self,
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        if self._pipe is None:
            raise GenerationError("backend is closed")
        clock = TokenClock(on_token, cancel, request.deadline_s)
        images = [validate_array(img) for img in request.images]  # FrameError before anything else
        if images and not self.info.vision:
            raise GenerationError(f"model {self.info.name} is text-only and cannot take images")
        num_crops = (request.num_crops or self._num_crops) if self.info.vision else 0
        image_tokens = sum(ov_image_tokens(i.shape[0], i.shape[1], num_crops) for i in images)
        if clock.cancelled_before_start():
            return self._result("", clock, 0, image_tokens, 0, request)
        text = request.prompt
        if request.json_schema:
            text = structured.schema_prompt(text, request.json_schema)
        system = request.system if request.system is not None else self._settings.system_prompt
        prompt = chat_prompt(text, system=system, num_images=len(images), neutralise=self._special.neutralise)
        cfg = self._config(request)
        streamer = self._streamer(clock)
        try:
            if self.info.vision:
                # VLMPipeline wants RGB uint8 HWC, one tensor per image (a batched tensor fails for phi3_v)
                tensors = [self._ov.Tensor(np.ascontiguousarray(i[:, :, ::-1])) for i in images]
                pipe = self._pipe_for(num_crops) if images else self._pipe
                res = pipe.generate(prompt, images=tensors, generation_config=cfg, streamer=streamer)
            else:
                res = self._pipe.generate([prompt], cfg, streamer)
        except RuntimeError as err:
            raise GenerationError(f"OpenVINO GenAI generation failed: {first_line(err)}") from None
        if streamer.error is not None:
            raise streamer.error
        metrics = res.perf_metrics
        new_tokens = int(metrics.get_num_generated_tokens())
        return self._result(
            res.texts[0], clock, int(metrics.get_num_input_tokens()), image_tokens, new_tokens, request
        )

    def _result(
        self,
        text: str,
        clock: TokenClock,
        prompt_len: int,
        image_tokens: int,
        new_tokens: int,
        request: GenerationRequest,
    ) -> Generation:
        stats = clock.finish(
            prompt_tokens=prompt_len,
            image_tokens=image_tokens,
            new_tokens=new_tokens,
            max_new_tokens=request.max_new_tokens,
        )
        data, error = (None, None)
        if request.json_schema:
            data, error = structured.parse(text, request.json_schema)
        return Generation(text=text, stats=stats, data=data, schema_error=error)

    def close(self) -> None:
        self._pipe = None
        for _, temp in self._extra.values():
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)
        self._extra.clear()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


def load(settings: OpenVINOModelSettings) -> OpenVINOBackend:
    """Validate the folder, then build the pipeline on the first configured device that works."""
    folder = validate_for(settings.path, BACKEND)
    ov, ovg = _sdk()
    devices = [device_name(p) for p in settings.providers]  # typos fail before anything loads
    by_device = dict(zip(devices, settings.providers, strict=True))
    try:
        path, temporary = _crops_folder(folder, settings.num_crops, cache_root(settings))
    except OSError as err:
        raise ModelError(f"cannot prepare num_crops={settings.num_crops} for {folder.path}: {err}") from None
    pipeline = ovg.VLMPipeline if folder.vision else ovg.LLMPipeline

    def load_one(device: str) -> Any:
        return pipeline(str(path), device, **_properties(settings, device, folder))

    t0 = time.perf_counter()
    try:
        pipe, used, tried = load_first(devices, load_one, what=f"{folder.name} with {BACKEND}")
    except Exception:
        if temporary:
            shutil.rmtree(path, ignore_errors=True)
        raise
    load_ms = (time.perf_counter() - t0) * 1000.0
    info = BackendInfo(
        name=folder.name,
        backend=BACKEND,
        provider=by_device.get(used, used),
        vision=folder.vision,
        load_ms=round(load_ms, 1),
        providers_tried=tuple((by_device.get(d, d), why) for d, why in tried),
    )
    device_used = used

    def make_pipe(num_crops: int) -> tuple[Any, Path | None]:
        try:
            shadow, temp = _crops_folder(folder, num_crops, cache_root(settings))
        except OSError as err:
            raise GenerationError(f"cannot prepare num_crops={num_crops} for {folder.path}: {err}") from None
        try:
            return pipeline(str(shadow), device_used, **_properties(settings, device_used, folder)), (
                shadow if temp else None
            )
        except Exception:
            if temp:
                shutil.rmtree(shadow, ignore_errors=True)
            raise

    backend = OpenVINOBackend(
        ov, ovg, pipe, folder, settings, info, temp_dir=path if temporary else None, make_pipe=make_pipe
    )
    log.info("loaded %s (%s) with %s on %s in %.0f ms", folder.name, folder.kind, BACKEND, used, load_ms)
    return backend
