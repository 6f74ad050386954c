"""Remote backend: an OpenAI-compatible chat-completions server (Ollama, llama.cpp, NIM, GitHub Models).

The only module that imports httpx / httpx-sse, lazily. It runs inside the worker child like the local
backends, so the supervisor's deadlines, heartbeat and kill work unchanged: the answer is streamed and
every content event is one `tick()` (heartbeat, cancel, soft deadline). Frames are validated, scaled to
`image_max_edge` and sent as JPEG data URLs; structured tasks ask for `response_format: json_schema`
(dropped for that schema if the server refuses it) and are validated afterwards either way.

Every failure is one line naming the endpoint and never the API key. Failures that mean "this endpoint
cannot serve now" (unreachable, TLS, 401/403, 404, 429, 5xx, timeouts, a model name the server does not
serve) raise EndpointUnavailable, which a chain of endpoints (`[[model.fallback]]`) moves on from; a
429's Retry-After is honoured by failing fast until it has passed. A server's 4xx is read by what its
body says, not by status alone: servers answer a wrong model name with 400 as often as with 404.

Real servers differ in two ways that would otherwise pass silently. Some accept `response_format` and
ignore it (200, unconstrained text): the first structured answer that fails validation while a schema
was sent marks the endpoint, says so once, and from then on the schema travels in the prompt only (it
always does) and every answer is validated. Some serve a text-only model and drop images without a
word: at load the backend compares the prompt tokens of the same prompt with and without a small
image, and a text-only endpoint refuses image jobs by name instead of "captioning" a picture it never saw.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np

from edge.config.settings import HttpModelSettings, is_loopback_host, url_host
from edge.core.errors import BackendUnavailable, EndpointUnavailable, GenerationError, ModelError
from edge.core.messages import Generation, GenerationRequest, StatsPayload
from edge.imaging.frames import prepare_image
from edge.imaging.imageio import encode_jpeg
from edge.inference import structured
from edge.inference.base import BackendInfo, TokenCallback
from edge.inference.http_answers import ModelNotServed as ModelNotServed
from edge.inference.http_answers import retry_after_s, server_message, status_error
from edge.inference.token_clock import TokenClock

log = logging.getLogger(__name__)

BACKEND: Final = "http"
INSTALL_HINT = "pip install 'edge-vlm-agent[http]'"
_WARNED_PLAIN: set[str] = set()  # plain http:// to another host: said once per process
_EXTRA_TOKENS = 16  # a server that ignores max_tokens is cut off this many events later
_PROBE_IMAGE_EDGE = 64  # the small grey picture of the vision probe


def _sdk() -> tuple[Any, Any]:
    try:
        import httpx
        import httpx_sse
    except ImportError as err:
        raise BackendUnavailable(
            f"the http backend's client is not installed ({err}): {INSTALL_HINT}"
        ) from None
    return httpx, httpx_sse


def sdk_available() -> bool | str:
    try:
        _sdk()
    except BackendUnavailable as err:
        return str(err)
    return True


# --------------------------------------------------------------------------- settings helpers


def api_key(settings: HttpModelSettings, environ: dict[str, str] | None = None) -> str | None:
    """$CREDENTIALS_DIRECTORY/<api_key_credential>, else the variable named by api_key_env, else None."""
    env = dict(os.environ) if environ is None else environ
    directory = env.get("CREDENTIALS_DIRECTORY")
    if directory:
        f = Path(directory) / settings.api_key_credential
        if f.is_file():
            try:
                return f.read_text().strip() or None
            except OSError as err:
                raise ModelError(f"cannot read credential {f}: {err.strerror}") from None
    if settings.api_key_env:
        return env.get(settings.api_key_env) or None
    return None


def endpoint(settings: HttpModelSettings) -> str:
    """The base URL without a trailing slash (what messages name)."""
    return (settings.url or "").rstrip("/")


def warn_plain(settings: HttpModelSettings) -> str | None:
    """The warning for plain http:// to another host (logged once per process), or None."""
    scheme, host = url_host(settings.url or "")
    if scheme != "http" or is_loopback_host(host):
        return None
    text = (
        f"model endpoint {endpoint(settings)} is plain http://: frames, prompts and the API key "
        "travel unencrypted; use https:// with [model.tls]"
    )
    if host not in _WARNED_PLAIN:
        _WARNED_PLAIN.add(host)
        log.warning("%s", text)
    return text


def _tls_context(settings: HttpModelSettings) -> ssl.SSLContext | bool:
    tls = settings.tls
    if tls is None:
        return True  # the system store, hostname checks on
    try:
        ctx = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
        if tls.cert is not None:
            password = tls.key_password.get_secret_value() if tls.key_password else None
            ctx.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None, password)
    except (OSError, ssl.SSLError) as err:
        raise ModelError(f"model.tls: cannot load the CA/certificate: {err}") from None
    if tls.insecure:
        log.warning("model.tls.insecure: the server's certificate and hostname are NOT checked")
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def new_client(settings: HttpModelSettings) -> Any:
    """An httpx.Client for the endpoint: base URL, key header, timeouts, TLS, no redirects."""
    httpx, _ = _sdk()
    headers = {"Accept": "application/json"}
    key = api_key(settings)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    timeout = httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 10.0))
    return httpx.Client(
        base_url=endpoint(settings) + "/",
        headers=headers,
        timeout=timeout,
        verify=_tls_context(settings),
        follow_redirects=False,  # a redirect must not carry frames and the key to another host
        trust_env=False,  # no proxy from the environment: frames go where the settings say
    )


# --------------------------------------------------------------------------- errors


def _cause(err: BaseException) -> BaseException:
    """The innermost cause (socket.gaierror, ssl.SSLError, ...) of an httpx error."""
    seen = err
    while seen.__cause__ is not None or seen.__context__ is not None:
        nxt = seen.__cause__ or seen.__context__
        assert nxt is not None
        seen = nxt
    return seen


def transport_error(err: BaseException, where: str) -> EndpointUnavailable:
    """One line for a connection-level failure: DNS, refused, TLS, timeout."""
    httpx, _ = _sdk()
    root = _cause(err)
    detail = " ".join(str(root).split()) or type(root).__name__
    if isinstance(root, socket.gaierror):
        what = "DNS lookup failed"
    elif isinstance(root, ssl.SSLError) or "SSL" in detail or "CERTIFICATE" in detail:
        what = "TLS handshake failed"
    elif isinstance(err, httpx.ConnectTimeout):
        what = "connect timed out"
    elif isinstance(err, httpx.ReadTimeout):
        what = "no data within timeout_s (read timed out)"
    elif isinstance(err, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(root, ConnectionRefusedError) or "refused" in detail.lower():
        what = "connection refused (server down?)"
    elif isinstance(err, httpx.RemoteProtocolError):
        what = "the server broke the connection"
    else:
        what = "cannot reach the server"
    return EndpointUnavailable(f"{where}: {what}: {detail}"[:500])


class _Capped:
    """The response as httpx-sse reads it (headers, iter_text), refusing more than `limit` bytes."""

    def __init__(self, response: Any, limit: int) -> None:
        self.headers = response.headers
        self._response = response
        self._limit = limit

    def iter_text(self) -> Iterator[str]:
        for text in self._response.iter_text():
            if self._response.num_bytes_downloaded > self._limit:
                raise GenerationError(
                    f"response is over model.max_response_kb={self._limit // 1024} (cut off)"
                )
            yield text


# --------------------------------------------------------------------------- the backend


class HttpBackend:
    """One model on one OpenAI-compatible endpoint; used from one thread (cancel from any)."""

    def __init__(self, settings: HttpModelSettings, client: Any, info: BackendInfo) -> None:
        self._settings = settings
        self._client = client
        self.info = info
        self._where = f"{endpoint(settings)} model {settings.name}"
        self._no_schema: set[str] = set()  # schemas the server refused as response_format
        self.ignores_format = False  # answers 200 to response_format without following it
        self._retry_at = 0.0  # a 429's Retry-After: fail fast until then
        self._lock = threading.Lock()

    def _content(self, request: GenerationRequest) -> list[dict[str, Any]] | str:
        text = request.prompt
        if request.json_schema:
            text = structured.schema_prompt(text, request.json_schema)
        if not request.images:
            return text
        s = self._settings
        parts: list[dict[str, Any]] = []
        for image in request.images:  # validated (FrameError) and scaled like every frame
            jpeg = encode_jpeg(prepare_image(image, s.image_max_edge), s.image_max_kb * 1024)
            url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        parts.append({"type": "text", "text": text})
        return parts

    def body(self, request: GenerationRequest, with_schema: bool = True) -> dict[str, Any]:
        """The chat-completions request (public for the request-schema test)."""
        messages: list[dict[str, Any]] = []
        system = request.system if request.system is not None else self._settings.system_prompt
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": self._content(request)})
        body: dict[str, Any] = {
            "model": self._settings.name,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": request.max_new_tokens,
            "temperature": float(request.temperature),
        }
        schema = request.json_schema
        sent = not self.ignores_format and with_schema and schema
        if sent and structured.schema_text(schema) not in self._no_schema:  # type: ignore[arg-type]
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "result", "schema": schema, "strict": False},
            }
        return body

    def generate(
        self,
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        if self._client is None:
            raise GenerationError("backend is closed")
        if request.images and not self.info.vision:
            raise GenerationError(
                f"{self._where} is a text-only endpoint (an image does not change its prompt tokens): "
                "image tasks need a vision model there"
            )
        clock = TokenClock(on_token, cancel, request.deadline_s)
        body = self.body(request)  # FrameError for a bad frame, before anything is sent
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise EndpointUnavailable(f"{self._where}: rate limited; not sent (retry after {wait:.0f} s)")
        if clock.cancelled_before_start():
            return self._result("", clock, {}, None, request)
        try:
            result = self._stream(body, clock, request)
        except ModelNotServed as err:
            raise ModelNotServed(f"{err}{self._served_hint()}") from None
        except GenerationError as err:
            schema = request.json_schema
            refused = "HTTP 400" in str(err) and not isinstance(err, EndpointUnavailable)
            if schema and "response_format" in body and refused and not clock.n:
                # A server without JSON-schema output: run unconstrained, validate after (as always).
                log.warning("%s refused response_format json_schema; validating after instead: %s",
                            self._where, err)  # fmt: skip
                with self._lock:
                    self._no_schema.add(structured.schema_text(schema))
                return self._stream(self.body(request), clock, request)
            raise
        if "response_format" in body and result.schema_error is not None and not self.ignores_format:
            # 200 with output the schema rejects: the server accepted response_format and ignored it.
            self.ignores_format = True
            log.warning("%s ignores response_format (answered with output that fails the schema: %s); "
                        "structured tasks now carry the schema in the prompt only and every answer is "
                        "validated", self._where, result.schema_error)  # fmt: skip
        if request.json_schema and "response_format" not in body and result.schema_error is not None:
            result = dataclasses.replace(
                result,
                schema_error=f"{result.schema_error} (unconstrained: the schema was in the prompt only)",
            )
        return result

    def _served_hint(self) -> str:
        """The served model names from GET /models, or nothing when the server cannot say."""
        try:
            return _served(list_models(self._client, endpoint(self._settings)))
        except GenerationError:
            return ""

    def _stream(self, body: dict[str, Any], clock: TokenClock, request: GenerationRequest) -> Generation:
        httpx, httpx_sse = _sdk()
        limit = self._settings.max_response_kb * 1024
        pieces: list[str] = []
        usage: dict[str, Any] = {}
        finish: str | None = None
        cap = request.max_new_tokens + _EXTRA_TOKENS
        try:
            with self._client.stream(
                "POST", "chat/completions", json=body, headers={"Accept": "text/event-stream"}
            ) as resp:
                if resp.status_code != 200:
                    retry = retry_after_s(resp.headers.get("retry-after"))
                    raw = b""
                    for chunk in resp.iter_bytes():  # the error body, bounded
                        raw += chunk
                        if len(raw) > 16384:
                            break
                    if resp.status_code == 429 and retry:
                        self._retry_at = time.monotonic() + retry
                    raise status_error(resp.status_code, resp.reason_phrase, raw, self._where,
                                       str(self._settings.name), retry)  # fmt: skip
                ctype = resp.headers.get("content-type", "")
                if "text/event-stream" not in ctype:
                    # A server that ignored stream=true: one JSON answer, read within the cap.
                    raw = b""
                    for chunk in resp.iter_bytes():
                        raw += chunk
                        if len(raw) > limit:
                            raise GenerationError(
                                f"{self._where}: response is over model.max_response_kb="
                                f"{self._settings.max_response_kb} (cut off)"
                            )
                    finish = self._whole(raw, ctype, pieces, usage, clock)
                else:
                    source = httpx_sse.EventSource(_Capped(resp, limit))
                    for event in source.iter_sse():
                        data = event.data.strip()
                        if not data:
                            continue
                        if data == "[DONE]":
                            break
                        before = len(pieces)
                        finish = self._event(data, pieces, usage) or finish
                        if len(pieces) > before:  # one content event = one token: heartbeat
                            if clock.tick() is not None:
                                break
                            if clock.n >= cap:  # the server ignores max_tokens
                                finish = "length"
                                break
        except GenerationError as err:
            if isinstance(err, EndpointUnavailable) or self._where in str(err):
                raise
            raise GenerationError(f"{self._where}: {err}") from None
        except httpx_sse.SSEError as err:
            raise GenerationError(f"{self._where}: malformed event stream: {err}") from None
        except httpx.HTTPError as err:
            raise transport_error(err, self._where) from None
        return self._result("".join(pieces), clock, usage, finish, request)

    def _event(self, data: str, pieces: list[str], usage: dict[str, Any]) -> str | None:
        """Fold one stream event into pieces/usage; its finish_reason, if any. One new piece = one tick."""
        try:
            chunk = json.loads(data)
        except ValueError:
            shown = data if len(data) <= 80 else data[:77] + "..."
            raise GenerationError(f"malformed stream event (not JSON): {shown!r}") from None
        if not isinstance(chunk, dict):
            raise GenerationError(f"malformed stream event (not an object): {type(chunk).__name__}")
        if chunk.get("error"):
            raise GenerationError(f"the server reported an error mid-stream: {server_message(data.encode())}")
        if isinstance(chunk.get("usage"), dict):
            usage.update(chunk["usage"])
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise GenerationError("malformed stream event: choices is not a list")
        reason: str | None = None
        for choice in choices:
            if not isinstance(choice, dict):
                raise GenerationError("malformed stream event: a choice is not an object")
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                pieces.append(content)
            if choice.get("finish_reason"):
                reason = str(choice["finish_reason"])
        return reason

    def _whole(
        self, raw: bytes, ctype: str, pieces: list[str], usage: dict[str, Any], clock: TokenClock
    ) -> str | None:
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise GenerationError(
                f"unexpected answer ({ctype or 'no content-type'}, {len(raw)} bytes): not a chat completion"
            ) from None
        pieces.append(str(text))
        if isinstance(data.get("usage"), dict):
            usage.update(data["usage"])
        clock.tick()
        reason = choice.get("finish_reason")
        return None if reason is None else str(reason)

    def _result(
        self,
        text: str,
        clock: TokenClock,
        usage: dict[str, Any],
        finish: str | None,
        request: GenerationRequest,
    ) -> Generation:
        new_tokens = _int(usage.get("completion_tokens"), clock.n)
        stats: StatsPayload = clock.finish(
            prompt_tokens=_int(usage.get("prompt_tokens"), 0),
            image_tokens=0,  # the server does not say
            new_tokens=new_tokens,
            max_new_tokens=request.max_new_tokens,
        )
        if clock.stopped is None:
            reason = "max_tokens" if finish == "length" else "eos"
            if reason != stats.stop_reason:
                stats = stats.model_copy(update={"stop_reason": reason})
        data, error = (None, None)
        if request.json_schema:
            data, error = structured.parse(text, request.json_schema)
        return Generation(text=text, stats=stats, data=data, schema_error=error)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and value >= 0 else default


def _served(models: list[str] | None) -> str:
    if not models:
        return ""
    return f" (the server has: {', '.join(models[:10])}; set model.name to one of those)"


def list_models(client: Any, where: str) -> list[str] | None:
    """GET /models: the served model ids, or None when the server has no such endpoint (404/405).

    Raises EndpointUnavailable (unreachable, TLS, key refused, 5xx) with one line.
    """
    httpx, _ = _sdk()
    try:
        resp = client.get("models")
    except httpx.HTTPError as err:
        raise transport_error(err, where) from None
    if resp.status_code in (404, 405):
        return None
    if resp.status_code != 200:
        raise status_error(resp.status_code, resp.reason_phrase, resp.content[:16384], where, "", None)
    try:
        data = resp.json().get("data") or resp.json().get("models") or []
        return [str(m.get("id") or m.get("name")) for m in data if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return None


def _complete(
    client: Any, settings: HttpModelSettings, content: Any, extra: dict[str, Any] | None = None
) -> Any:
    """One small non-streamed chat completion (the probes); the parsed answer. Raises GenerationError."""
    httpx, _ = _sdk()
    where = endpoint(settings)
    body = {"model": settings.name, "messages": [{"role": "user", "content": content}], "stream": False,
            "max_tokens": 1, "temperature": 0.0, **(extra or {})}  # fmt: skip
    try:
        resp = client.post("chat/completions", json=body)
    except httpx.HTTPError as err:
        raise transport_error(err, where) from None
    if resp.status_code != 200:
        raise status_error(resp.status_code, resp.reason_phrase, resp.content[:16384], where,
                           str(settings.name), None)  # fmt: skip
    try:
        return resp.json()
    except ValueError:
        raise GenerationError(f"{where}: the answer to a probe is not JSON") from None


def _prompt_tokens(answer: Any) -> int | None:
    usage = answer.get("usage") if isinstance(answer, dict) else None
    value = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def probe_vision(client: Any, settings: HttpModelSettings) -> tuple[bool | None, str]:
    """Whether the endpoint sees images: the same prompt's tokens with and without a small picture.

    (True, why): they grow (the image became tokens). (False, why): they are equal (the server dropped
    the image) or the server refuses images with a 4xx. (None, why): the server reports no usage.
    Raises EndpointUnavailable when the endpoint cannot answer at all.
    """
    text = "Describe the picture."
    plain = _prompt_tokens(_complete(client, settings, text))
    picture = np.full((_PROBE_IMAGE_EDGE, _PROBE_IMAGE_EDGE, 3), 128, np.uint8)
    url = "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(picture, 65536)).decode("ascii")
    parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    try:
        with_image = _prompt_tokens(_complete(client, settings, parts))
    except GenerationError as err:
        return False, f"it refuses an image: {err}"
    if plain is None or with_image is None:
        return None, "the server reports no usage.prompt_tokens: cannot tell whether it sees images"
    if with_image > plain:
        return True, f"an image adds {with_image - plain} prompt tokens"
    return False, f"an image adds no prompt tokens ({plain} with and without): the server drops it"


PROBE_SCHEMA: Final = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


def probe_format(client: Any, settings: HttpModelSettings) -> tuple[bool | None, str]:
    """Whether the server follows `response_format: json_schema` (True), ignores or refuses it (False)."""
    fmt = {"type": "json_schema", "json_schema": {"name": "result", "schema": PROBE_SCHEMA, "strict": False}}
    try:
        answer = _complete(client, settings, "Is the sky blue? Answer in JSON.",
                           {"response_format": fmt, "max_tokens": 24})  # fmt: skip
    except EndpointUnavailable:
        raise
    except GenerationError as err:
        return False, f"it refuses response_format ({err}): structured answers are validated after"
    try:
        text = answer["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        return None, "the answer is not a chat completion: cannot tell"
    _, error = structured.parse(str(text), PROBE_SCHEMA)
    if error is None:
        return True, "answers follow response_format json_schema"
    return False, (
        f"it accepts response_format but ignores it (answer: {error}): structured tasks carry the schema "
        "in the prompt only and are validated after; expect schema_error results from a weak model"
    )


def load(settings: HttpModelSettings) -> HttpBackend:
    """Build the client and check the endpoint answers (GET /models); fail loudly if it does not."""
    if settings.backend != BACKEND or not settings.url or not settings.name:
        raise ModelError("backend 'http' needs model.url and model.name")
    warn_plain(settings)
    t0 = time.perf_counter()
    client = new_client(settings)
    where = endpoint(settings)
    try:
        models = list_models(client, where)
    except GenerationError as err:
        client.close()
        raise ModelError(str(err)) from None
    if models is not None and settings.name not in models:
        log.warning("%s does not list model %r (it lists: %s); trying anyway",
                    where, settings.name, ", ".join(models[:10]) or "none")  # fmt: skip
    _, host = url_host(settings.url)
    port = settings.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    provider = host + (f":{port[1]}" if len(port) == 2 and port[1].isdigit() else "")
    try:
        vision, why = probe_vision(client, settings)
    except ModelNotServed as err:  # the next entry of the chain may serve: a failed load moves on
        client.close()
        raise ModelError(f"{err}{_served(models)}") from None
    except GenerationError as err:  # a job will meet it too, and fail over from there
        vision, why = None, f"not probed: {err}"
    if vision is False:
        log.warning(
            "%s model %s is a text-only endpoint: %s; image jobs are refused", where, settings.name, why
        )
    load_ms = (time.perf_counter() - t0) * 1000.0
    info = BackendInfo(name=str(settings.name), backend=BACKEND, provider=provider, vision=vision is not False,
                       load_ms=round(load_ms, 1))  # fmt: skip
    log.info("using %s at %s (checked in %.0f ms; %s)", settings.name, where, load_ms, why)
    return HttpBackend(settings, client, info)
