"""The base every settings section shares, and the rules more than one section module uses."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from edge.core.names import check_name

MAX_PERIOD_S = 31 * 86400.0
"""Longest interval, gate period or window: a month. Beyond it a value is a typo (1e308 stopped a task)."""


def topic_name(value: str) -> str:
    """A name placed in the device's topic tree: topic-safe and not a reserved word."""
    return check_name(value)


class Section(BaseModel):
    # allow_inf_nan=False: inf or nan in any float setting is an error, never a task that stops.
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, coerce_numbers_to_str=True, allow_inf_nan=False
    )


class TLSSettings(Section):
    """TLS of a connection the daemon opens: the broker (mqtt.tls) and an http model server (model.tls)."""

    ca: Path | None = Field(None, description="CA bundle (None: the system store).")
    cert: Path | None = Field(None, description="Client certificate.")
    key: Path | None = Field(None, description="Client key.")
    key_password: SecretStr | None = Field(None, description="Client key passphrase.")
    insecure: bool = Field(False, description="Skip hostname and chain checks (logs a warning).")

    @model_validator(mode="after")
    def _pair(self) -> TLSSettings:
        if self.key is not None and self.cert is None:
            raise ValueError("mqtt.tls.key is set but mqtt.tls.cert is not")
        if self.cert is not None and self.key is None:
            raise ValueError("mqtt.tls.cert is set but mqtt.tls.key is not")
        return self
