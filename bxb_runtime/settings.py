"""The one way settings are declared, read and validated: rules, deployment context, ClickHouse, ingest, runner.

A settings object is a frozen dataclass deriving from ``Settings`` whose fields are declared with
``setting(default, low=..., high=..., choices=..., pattern=...)``: the default is defined there,
once. Construction checks every declared field against its type and spec, so a value built in code
is as safe as one read from outside. ``from_values`` reads a mapping of raw values (JSON-typed, or
strings as environment variables and ``cdk synth -c`` give them) and ``from_env`` an environment;
both coerce strings to the field's type. Every ``ConfigError`` names the key the value came from:
the field's ``key()`` (e.g. ``bxb:s3.buffer_size_mib``), or the environment variable.

Small and in-repo on purpose (dataclasses, no dependency): the Lambdas import it at cold start, and
the checks we need (ranges, choices, patterns, cross-field rules in ``__post_init__``) fit in a page.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

_SPEC = "bxb_setting"
_TRUE, _FALSE = ("1", "true"), ("0", "false")

# Patterns more than one settings object checks.
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # a ClickHouse database or collection name


class ConfigError(ValueError):
    """A setting is invalid. ``key`` names it; ``problem`` says what is wrong."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config {key!r}: {problem}")
        self.key = key
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class Spec:
    low: float | None = None
    high: float | None = None
    choices: tuple[object, ...] | None = None
    pattern: re.Pattern[str] | None = None
    blank: bool = False  # "" is allowed whatever the pattern
    doc: str = ""  # what the pattern means, for the message
    env: str | None = None  # the environment variable, when it is not <ENV_PREFIX><NAME>


def setting(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None, **spec: Any) -> Any:
    """A declared field: its default (or ``factory``) and what a valid value is (``Spec``)."""
    metadata = {_SPEC: Spec(**spec)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class Settings:
    """Base of every settings dataclass: validates declared fields on construction."""

    KEY_PREFIX: ClassVar[str] = ""  # what ``key`` puts before a field's name
    ENV_PREFIX: ClassVar[str] = "BXB_"  # what ``env_name`` puts before a field's upper-cased name

    @classmethod
    def key(cls, name: str) -> str:
        return cls.KEY_PREFIX + name

    @classmethod
    def env_name(cls, name: str) -> str:
        spec = _specs(cls)[name]
        return spec.env or cls.ENV_PREFIX + name.upper()

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for name, spec in _specs(type(self)).items():
            check(self.key(name), getattr(self, name), hints[name], spec)

    @classmethod
    def check_value(cls, name: str, value: Any, *, key: str | None = None) -> None:
        """``value`` checked as field ``name`` would be; a ConfigError names ``key`` (default: its own)."""
        check(key or cls.key(name), value, _hints(cls)[name], _specs(cls)[name])

    @classmethod
    def declared(cls) -> tuple[str, ...]:
        """The names of the declared (validated) fields, in order."""
        return tuple(_specs(cls))

    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, key: Callable[[str], str] | None = None, **extra: Any) -> Self:
        """Build from raw values by field name (strings are coerced to the field's type); ``extra`` as is.

        ``key`` names where each value came from (default: ``cls.key``); an error about one of them
        carries that name."""
        key = key or cls.key
        hints = _hints(cls)
        kwargs: dict[str, Any] = dict(extra)
        for name, value in values.items():
            kwargs[name] = coerce(key(name), value, hints[name])
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            # Named where it came from (or would be set); a value passed in ``extra`` keeps its field's key.
            name = exc.key[len(cls.KEY_PREFIX) :] if exc.key.startswith(cls.KEY_PREFIX) else None
            if name in _specs(cls) and name not in extra:
                raise ConfigError(key(name), exc.problem) from None
            raise

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, required: tuple[str, ...] = (), **extra: Any
    ) -> Self:
        """Build from the environment (``env_name`` of each declared field); ``extra`` wins over it."""
        environ = os.environ if environ is None else environ
        extra = {k: v for k, v in extra.items() if v is not None}
        values = {}
        for name in _specs(cls):
            raw = environ.get(cls.env_name(name))
            if raw is not None and name not in extra:
                values[name] = raw
        for name in required:
            if not values.get(name) and name not in extra:
                raise ConfigError(cls.env_name(name), "is required")
        return cls.from_values(values, key=cls.env_name, **extra)

    def to_env(self) -> dict[str, str]:
        """Every declared field as the environment variable ``from_env`` reads back."""
        return {self.env_name(name): _env_value(getattr(self, name)) for name in _specs(type(self))}


def check(key: str, value: Any, kind: Any, spec: Spec) -> None:
    """Raise ``ConfigError(key, ...)`` unless ``value`` is a ``kind`` that meets ``spec``."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return
    if kind is int and type(value) is not int:
        raise ConfigError(key, _bounded("an integer", spec, value))
    if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(key, _bounded("a number", spec, value))
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        if value == "" and spec.blank:
            return
        if spec.pattern is not None and not spec.pattern.match(value):
            raise ConfigError(key, f"invalid value {value!r} ({spec.doc or spec.pattern.pattern})")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(key, f"must be one of {', '.join(map(str, spec.choices))}; got {value!r}")
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise ConfigError(key, _bounded("an integer" if kind is int else "a number", spec, value))


def coerce(key: str, value: Any, kind: Any) -> Any:
    """A string read from outside, as ``kind`` (bool, int, float); anything else is left to ``check``."""
    if not isinstance(value, str) or kind not in (bool, int, float):
        return value
    text = value.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(key, f"must be true or false, got {value!r}")
    try:
        return int(text) if kind is int else float(text)
    except ValueError:
        raise ConfigError(key, f"must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None


def _bounded(what: str, spec: Spec, value: Any) -> str:
    if spec.low is None and spec.high is None:
        return f"must be {what}, got {value!r}"
    return f"must be {what} in [{spec.low}, {spec.high}], got {value!r}"


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _specs(cls: type) -> dict[str, Spec]:
    return {f.name: f.metadata[_SPEC] for f in dataclasses.fields(cls) if _SPEC in f.metadata}
