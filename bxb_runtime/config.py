"""The event rules: shared by the producer edge, the transform Lambda, the ingest Lambda and the local runner.

``EventRules`` travels to the Lambdas as environment variables (``to_env`` /
``from_env``, ``BXB_<FIELD>``), so the deployed functions and a local run read the
same values. Declared and validated with ``bxb_runtime.settings``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bxb_runtime.settings import ConfigError, Settings, setting

__all__ = ["ORG_ID_PATTERN", "ConfigError", "EventRules"]

ORG_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class EventRules(Settings):
    """What makes an event valid, and how it is routed."""

    organization_id: str = setting(
        "default", pattern=ORG_ID_PATTERN, blank=True, doc="must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}"
    )
    multi_tenant: bool = setting(False)
    future_skew_seconds: int = setting(300, low=0, high=86_400)
    max_properties_bytes: int = setting(16_384, low=2, high=1_000_000)
    max_properties_depth: int = setting(8, low=1, high=64)
    max_record_bytes: int = setting(65_536, low=256, high=1_000_000)
    # "module:function" entries, comma separated; see bxb_runtime.transform.hooks.
    hooks: str = setting("")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.organization_id and not self.multi_tenant:
            raise ConfigError(self.key("organization_id"), "is required unless multi_tenant is on")

    @property
    def future_skew_ms(self) -> int:
        return self.future_skew_seconds * 1000
