"""`edge doctor` for backend "http": the endpoint is reachable, the key is accepted, the model listed,
it sees images, and it follows `response_format`.

It asks GET {url}/models with the same client the backend uses (key, TLS, timeouts, no redirects),
so a wrong URL, a DNS name the board cannot resolve, a certificate it does not trust, a refused key
or a model the server has not pulled show up here rather than as failed jobs. Then three one-token
completions: the same prompt with and without a small image (equal prompt tokens: a text-only model
that drops images) and one with a JSON schema as response_format (an answer that ignores it).
"""

from __future__ import annotations

from edge.cli.doctor.checks import CheckResult
from edge.config.settings import HttpModelSettings
from edge.core.errors import BackendUnavailable, EdgeError
from edge.inference import http_backend


def check_endpoint(label: str, section: HttpModelSettings, timeout_s: float) -> list[CheckResult]:
    name, where = f"{label} endpoint", http_backend.endpoint(section)
    try:
        client = http_backend.new_client(
            section.model_copy(update={"timeout_s": min(section.timeout_s, timeout_s)})
        )
    except BackendUnavailable as err:
        return [CheckResult(name, "fail", str(err), http_backend.INSTALL_HINT)]
    except EdgeError as err:
        return [CheckResult(name, "fail", str(err), "fix model.tls (ca, cert, key)")]
    try:
        models = http_backend.list_models(client, where)
    except EdgeError as err:
        msg = str(err)
        if "HTTP 401" in msg or "HTTP 403" in msg:
            return [
                CheckResult(name, "ok", f"{where} answers"),
                CheckResult(f"{label} key", "fail", msg,
                            "put the key in $CREDENTIALS_DIRECTORY/model_api_key (LoadCredential=) or set model.api_key_env"),
            ]  # fmt: skip
        return [CheckResult(name, "fail", msg, "start the server, or check model.url, DNS and model.tls")]
    else:
        listed = models is None or section.name in models
        probes = _probes(label, section, client) if listed else []
    finally:
        client.close()
    plain = http_backend.warn_plain(section)
    out = [CheckResult(name, "warn", plain, "use https:// and [model.tls]") if plain
           else CheckResult(name, "ok", f"{where} answers")]  # fmt: skip
    has_key = http_backend.api_key(section) is not None
    out.append(
        CheckResult(f"{label} key", "ok", "accepted" if has_key else "none set; the server asks for none")
    )
    if models is None:
        out.append(
            CheckResult(
                f"{label} listed", "warn", f"{where} has no GET /models; {section.name!r} not checked"
            )
        )
    elif section.name in models:
        out.append(CheckResult(f"{label} listed", "ok", f"{section.name!r} is served"))
    else:
        shown = ", ".join(models[:10]) or "none"
        out.append(CheckResult(f"{label} listed", "fail", f"{section.name!r} is not served (the server has: {shown})",
                               "set model.name to one of those, or pull the model on the server"))  # fmt: skip
    return out + probes


def _probes(label: str, section: HttpModelSettings, client: object) -> list[CheckResult]:
    """Vision and response_format, each one short completion; a failure is that line's, not the run's."""
    out: list[CheckResult] = []
    try:
        vision, why = http_backend.probe_vision(client, section)
    except EdgeError as err:
        return [CheckResult(f"{label} answers", "fail", str(err), "check the server's log")]
    if vision is None:
        out.append(CheckResult(f"{label} vision", "warn", why))
    elif vision:
        out.append(CheckResult(f"{label} vision", "ok", f"vision endpoint: {why}"))
    else:
        out.append(CheckResult(f"{label} vision", "fail", f"text-only endpoint: {why}; image tasks are refused",
                               "serve a vision model there (or run only text tasks on it)"))  # fmt: skip
    try:
        follows, why = http_backend.probe_format(client, section)
    except EdgeError as err:
        return [*out, CheckResult(f"{label} response_format", "fail", str(err), "check the server's log")]
    out.append(CheckResult(f"{label} response_format", "ok" if follows else "warn", why))
    return out
