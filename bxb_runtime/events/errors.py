"""The one exception type for a rejected event."""

from __future__ import annotations


class EventError(ValueError):
    """An event was rejected. ``code`` is stable (e.g. ``missing_field:code``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
