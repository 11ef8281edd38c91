"""Readers and writers for the spec's JSON shapes: typed checks with a path in every error.

Kept separate from the value modules (``failure``, ``snapshots``,
``recovery_plan``) so the values there read as data, and so every shape reports
a bad field the same way: ``openOrdersSnapshot[1].side: expected one of BUY,
SELL, got 'LONG'``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar, cast

E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")


class SchemaError(ValueError):
    """A document does not have the spec's shape; ``path`` names the field."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)

    def under(self, prefix: str) -> SchemaError:
        """Return the same error with ``prefix`` in front of its path."""
        if not self.path:
            return SchemaError(prefix, self.problem)
        joiner = "" if self.path.startswith("[") else "."
        return SchemaError(f"{prefix}{joiner}{self.path}", self.problem)


def assign(obj: object, name: str, value: Any) -> None:
    """Set a field of a frozen dataclass from its ``__post_init__`` (the normalised value replaces the given one)."""
    object.__setattr__(obj, name, value)


def read(path: str, build: Callable[[], T]) -> T:
    """Run ``build`` and put ``path`` in front of any schema error it raises."""
    try:
        return build()
    except SchemaError as exc:
        raise exc.under(path) if path else exc from None


def items(cls: type[T], values: Any, name: str) -> tuple[T, ...]:
    """Return ``values`` as a tuple, each an instance of ``cls``."""
    found = tuple(array(values, name))
    for i, item in enumerate(found):
        if not isinstance(item, cls):
            raise SchemaError(join(name, i), f"expected {cls.__name__}, got {type(item).__name__}")
    return found


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def to_ms(value: datetime, path: str = "") -> datetime:
    """Return ``value`` in UTC truncated to milliseconds; refuse naive datetimes."""
    if not isinstance(value, datetime):
        raise SchemaError(path, f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive time is ambiguous after a restart in another zone; refuse it outright.
        raise SchemaError(path, "datetime must be timezone-aware")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def format_ts(value: datetime) -> str:
    """Write the spec's timestamp form: ``2025-11-18T15:20:30.000Z``."""
    value = to_ms(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def format_opt_ts(value: datetime | None) -> str | None:
    return None if value is None else format_ts(value)


def parse_ts(value: Any, path: str) -> datetime:
    """Read an ISO-8601 timestamp with an explicit zone (``Z`` or an offset)."""
    if not isinstance(value, str):
        raise SchemaError(path, f"expected an ISO-8601 timestamp string, got {_show(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise SchemaError(path, f"not an ISO-8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise SchemaError(path, f"timestamp needs a zone ('Z'): {value!r}")
    return to_ms(parsed, path)


def parse_opt_ts(value: Any, path: str) -> datetime | None:
    return None if value is None else parse_ts(value, path)


def obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SchemaError(path, f"expected an object, got {_show(value)}")
    return value


def field(data: Mapping[str, Any], key: str, path: str) -> Any:
    """Return a required key; a nullable field must still be present or is read as null by ``opt``."""
    if key not in data:
        raise SchemaError(join(path, key), "missing")
    return data[key]


def opt(data: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Return an optional key: absent reads as ``default`` (the spec writes nulls, older files may omit them)."""
    return data.get(key, default)


def string(value: Any, path: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise SchemaError(path, f"expected a string, got {_show(value)}")
    if not allow_empty and not value.strip():
        raise SchemaError(path, "must not be empty")
    return value


def opt_string(value: Any, path: str) -> str | None:
    return None if value is None else string(value, path)


def number(value: Any, path: str, *, minimum: float | None = None, positive: bool = False) -> int | float:
    """Accept a JSON number (int or float, never bool or a numeric string) and keep its kind."""
    # bool is an int subclass; "5" is a string: both mean the writer is wrong.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(path, f"expected a number, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaError(path, f"must be finite, got {value!r}")
    if positive and value <= 0:
        raise SchemaError(path, f"must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise SchemaError(path, f"must be >= {minimum}, got {value!r}")
    return value


def integer(value: Any, path: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(path, f"expected an integer, got {_show(value)}")
    if minimum is not None and value < minimum:
        raise SchemaError(path, f"must be >= {minimum}, got {value!r}")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(path, f"expected true or false, got {_show(value)}")
    return value


def enum(cls: type[E], value: Any, path: str) -> E:
    """Return the member of ``cls`` named by ``value`` or fail listing the allowed values."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls(value)
        except ValueError:
            pass
    allowed = ", ".join(member.value for member in cls)
    raise SchemaError(path, f"expected one of {allowed}, got {_show(value)}")


def array(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise SchemaError(path, f"expected an array, got {_show(value)}")
    return list(value)


def string_list(value: Any, path: str) -> tuple[str, ...]:
    return tuple(string(item, join(path, i)) for i, item in enumerate(array(value, path)))


def details(value: Any, path: str) -> dict[str, Any]:
    """Return a JSON-only deep copy of an object with string keys, so callers cannot alias stored evidence.

    Checking serialisability here, when an event or step is built, puts the error
    at the code that made the bad value instead of at a later file write.
    """
    data = obj(value, path)
    for key in data:
        if not isinstance(key, str):
            raise SchemaError(path, f"keys must be strings, got {_show(key)}")
    try:
        return cast(dict[str, Any], json.loads(json.dumps(dict(data), allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise SchemaError(path, f"must be JSON-serialisable: {exc}") from None


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
