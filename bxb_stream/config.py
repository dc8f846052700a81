"""Settings shared by the producer edge, the transform Lambda and the local runner.

``EventRules`` travels to the transform Lambda as environment variables
(``to_env`` / ``from_env``), so the deployed function and a local run read the
same values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

ORG_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ConfigError(ValueError):
    """A setting is invalid. The message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config {key!r}: {problem}")
        self.key = key


@dataclass(frozen=True)
class EventRules:
    """What makes an event valid, and how it is routed."""

    organization_id: str = "default"
    multi_tenant: bool = False
    future_skew_seconds: int = 300
    max_properties_bytes: int = 16_384
    max_properties_depth: int = 8
    max_record_bytes: int = 65_536
    # "module:function" entries, comma separated; see bxb_stream.transform.hooks.
    hooks: str = ""

    def __post_init__(self) -> None:
        if self.organization_id and not ORG_ID_PATTERN.match(self.organization_id):
            raise ConfigError("organization_id", "must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}")
        if not self.organization_id and not self.multi_tenant:
            raise ConfigError("organization_id", "is required unless multi_tenant is on")
        for key, low, high in (
            ("future_skew_seconds", 0, 86_400),
            ("max_properties_bytes", 2, 1_000_000),
            ("max_properties_depth", 1, 64),
            ("max_record_bytes", 256, 1_000_000),
        ):
            value = getattr(self, key)
            if type(value) is not int or not low <= value <= high:
                raise ConfigError(key, f"must be an integer in [{low}, {high}], got {value!r}")

    @property
    def future_skew_ms(self) -> int:
        return self.future_skew_seconds * 1000

    def to_env(self) -> dict[str, str]:
        return {_env_name(f.name): _env_value(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EventRules:
        environ = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            raw = environ.get(_env_name(f.name))
            if raw is None:
                continue
            kwargs[f.name] = _parse(f.name, raw, type(getattr(cls(), f.name)) if f.name != "organization_id" else str)
        return cls(**kwargs)  # type: ignore[arg-type]


def _env_name(field_name: str) -> str:
    return "BXB_" + field_name.upper()


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(key: str, raw: str, kind: type) -> object:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ConfigError(key, f"must be true or false, got {raw!r}")
        return lowered in ("true", "1")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(key, f"must be an integer, got {raw!r}") from None
    return raw
