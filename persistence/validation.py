"""Argument checks shared by every backend: each names the argument it rejects."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MAX_STATE_ID = 256
MAX_TAG = 128
MAX_TAGS = 64
MAX_WRITE_ID = 128
MAX_VERSION = 2**62  # the largest version a caller may write explicitly
# The largest a version can become: numbers count up from an explicit MAX_VERSION, and SQLite
# and PostgreSQL store a signed 64-bit integer. Reads, deletes and rollbacks accept up to here.
MAX_STORED_VERSION = 2**63 - 1
MAX_TTL = 100 * 365 * 24 * 3600  # a century: beyond it a "TTL" is a typo, not a policy
MAX_METADATA_BYTES = 64 * 1024

# C0 and C1 control characters, and lone surrogates (which are not valid UTF-8).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def text(value: Any, field: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, not {type(value).__name__}")
    if not 1 <= len(value) <= max_length:
        raise ValueError(f"{field} must be 1 to {max_length} characters long (got {len(value)})")
    bad = _FORBIDDEN.search(value)
    if bad:
        raise ValueError(
            f"{field} contains a control or surrogate character ({bad.group()!r}) "
            f"at position {bad.start()}"
        )
    return value


def state_id(value: Any, field: str = "state_id") -> str:
    return text(value, field, MAX_STATE_ID)


def state_ids(values: Any, field: str = "state_ids") -> list[str]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"{field} must be an iterable of state ids, not {type(values).__name__}")
    return [state_id(v, f"{field}[{i}]") for i, v in enumerate(values)]


def tags(values: Any, field: str = "tags") -> tuple[str, ...]:
    """Tags deduplicated in their given order; None means no tags."""
    if values is None:
        return ()
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise TypeError(f"{field} must be a list of str, not {type(values).__name__}")
    out: dict[str, None] = {}
    for i, tag in enumerate(values):
        out[text(tag, f"{field}[{i}]", MAX_TAG)] = None
        if len(out) > MAX_TAGS:
            raise ValueError(f"{field}: at most {MAX_TAGS} distinct tags")
    return tuple(out)


def positive_int(value: Any, field: str, maximum: int) -> int:
    return int_between(value, field, 1, maximum)


def int_between(value: Any, field: str, minimum: int, maximum: int) -> int:
    # bool is an int subclass: version=True would otherwise mean version 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{field} must be between {minimum} and {maximum} (got {value})")
    return value


def seconds(
    value: Any, field: str, maximum: float = 24 * 3600, *, zero_allowed: bool = False
) -> float:
    """A timeout: a number of seconds above 0 (a zero or negative timeout fails every call),
    or from 0 with ``zero_allowed`` (where 0 means the driver's own default)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{field} must be a number of seconds, not {type(value).__name__}")
    too_low = value < 0 if zero_allowed else value <= 0
    if too_low or value > maximum:
        lowest = "0 or more" if zero_allowed else "above 0"
        raise ValueError(f"{field} must be {lowest} and at most {maximum:g} seconds (got {value})")
    return float(value)


def version(value: Any, field: str = "version") -> int:
    """A version to write explicitly."""
    return positive_int(value, field, MAX_VERSION)


def optional_version(value: Any, field: str = "version") -> int | None:
    return None if value is None else version(value, field)


def stored_version(value: Any, field: str = "version") -> int:
    """A version to read, delete or roll back to: any a store can hold."""
    return positive_int(value, field, MAX_STORED_VERSION)


def optional_stored_version(value: Any, field: str = "version") -> int | None:
    return None if value is None else stored_version(value, field)


def ttl(value: Any, field: str = "ttl_seconds") -> int | None:
    return None if value is None else positive_int(value, field, MAX_TTL)


def limit(value: Any, field: str = "limit", maximum: int = 100_000) -> int:
    return positive_int(value, field, maximum)


def write_id(value: Any, field: str = "write_id") -> str | None:
    return None if value is None else text(value, field, MAX_WRITE_ID)


def mapping(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{field} must be a dict, not {type(value).__name__}")
    return value


def match(value: Any) -> str:
    if value not in ("all", "any"):
        raise ValueError(f"match must be 'all' or 'any' (got {value!r})")
    return str(value)
