"""Credential redaction for camera sources.

Camera URLs routinely carry passwords (`rtsp://admin:pw@cam/...`, `?user=admin&pwd=...`, a
`user-pw=` property inside a GStreamer pipeline). Every log line and every event payload that names a
source goes through `redact_source`, so a field log or an MQTT event never leaks them.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://userinfo@  -- userinfo may be "user", "user:password" or a bare token
# greedy up to the last '@' before the path: an unencoded '@' inside a password is still masked
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s?#]*)@")
# key=value pairs in query strings and in pipeline properties whose value is a secret
_SECRET_KEYS = (
    r"password|passwd|pass|pwd|user-pw|user_pw|token|access_token|auth|authorization|apikey|api_key|"
    r"key|secret|signature|sig|credentials?"
)
_SECRET_PARAM = re.compile(rf"(?P<key>(?<![A-Za-z0-9_\-])(?:{_SECRET_KEYS}))=(?P<value>[^&\s!;#]+)", re.I)


def _mask_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group("userinfo")
    if not userinfo:
        return match.group(0)
    user, sep, _password = userinfo.partition(":")
    # A lone userinfo without ':' is often a token; a user name next to a password is useful to see.
    masked = f"{user}:{MASK}" if sep and user else MASK
    return f"{match.group('scheme')}{masked}@"


def redact_source(source: object) -> str:
    """`source` as text with passwords, tokens and keys replaced by ***; anything else unchanged."""
    text = str(source)
    text = _USERINFO.sub(_mask_userinfo, text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group('key')}={MASK}", text)
