"""Reading an OpenAI-compatible server's error answers by what they say, not only by their status:
a wrong model name answered with HTTP 400 (transformers serve, vLLM) is a config error that moves a
fallback chain on, a refused key names where the key comes from, a 429's Retry-After is honoured."""

from __future__ import annotations

import json
import re
import time
from email.utils import parsedate_to_datetime

from edge.core.errors import EndpointUnavailable, GenerationError


class ModelNotServed(EndpointUnavailable):
    """The server does not serve model.name: a config error here, and a reason to try the next entry."""


def retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, float(parsedate_to_datetime(value).timestamp()) - time.time())
    except (TypeError, ValueError):
        return None


def server_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace")
    else:
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            text = str(err.get("message") or err)
        elif err is not None:
            text = str(err)
        else:
            text = (
                str(data.get("message") or data.get("detail") or data)
                if isinstance(data, dict)
                else str(data)
            )
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


_MISSING = re.compile(
    r"not (found|served|available|loaded|exist)|does ?n[o']t (exist|match)|unknown|no such|invalid model"
    r"|not a valid model|mismatch|is pinned to",
    re.IGNORECASE,
)
_FORMAT_WORDS = re.compile(r"response_format|json_schema|grammar|guided", re.IGNORECASE)


def names_missing_model(message: str, model: str) -> bool:
    """Whether a server's error text says the requested model is not there (OpenAI's model_not_found,
    Ollama's "model ... not found", transformers serve's pinned-model mismatch, vLLM's "does not exist")."""
    if not message or _FORMAT_WORDS.search(message):
        return False
    mentions = (bool(model) and model in message) or "model" in message.lower()
    return mentions and (bool(_MISSING.search(message)) or "model_not_found" in message)


def status_error(
    status: int, reason: str, body: bytes, where: str, model: str, retry: float | None
) -> Exception:
    """The one-line error for a non-2xx answer; EndpointUnavailable where another endpoint may do better."""
    msg = server_message(body)
    head = f"{where}: HTTP {status} {reason}".rstrip()
    tail = f": {msg}" if msg else ""
    if status in (401, 403):
        return EndpointUnavailable(
            f"{head}: the API key was refused or is missing ($CREDENTIALS_DIRECTORY/model_api_key or "
            f"model.api_key_env){tail}"
        )
    if status in (400, 404, 422) and names_missing_model(msg, model):
        return ModelNotServed(f"{head}: config error: model.name {model!r} is not served here{tail}")
    if status == 404:
        return EndpointUnavailable(f"{head}: unknown model {model!r} or wrong url{tail}")
    if status == 429:
        after = f" (retry after {retry:g} s)" if retry is not None else ""
        return EndpointUnavailable(f"{head}: rate limited{after}{tail}")
    if status >= 500 or status in (408, 409):
        return EndpointUnavailable(f"{head}{tail}")
    return GenerationError(f"{head}{tail}")
