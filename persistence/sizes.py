"""Byte counts that compare with sizes written as text, as in ``used_memory > "100MB"``."""

from __future__ import annotations

import re
from typing import Any

# Redis's own reading of sizes in its configuration: k/m/g are powers of 1000, kb/mb/gb (and
# KiB/MiB/GiB) powers of 1024. "100MB" in a Redis setting is 100 * 1024 * 1024 bytes.
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE | re.ASCII)


def parse_size(text: str) -> float:
    """``"100MB"`` -> 104857600; ValueError naming the text when it is not a size."""
    match = _SIZE.fullmatch(text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (write it as 512kb, 100MB, 1.5GiB, 2g...)")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


class ByteCount(int):
    """An int of bytes (``get_stats()["redis_info"]["used_memory"]``) whose ordering
    comparisons also take a size as text, so that the original product description's
    ``if used_memory > "100MB":`` means what it says instead of raising TypeError."""

    __slots__ = ()
    __hash__ = int.__hash__  # equal to the same int, so hashed as it

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return super().__eq__(other)
        try:
            return int(self) == parse_size(other)
        except ValueError:  # not a size: simply not equal (== does not raise)
            return False

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __lt__(self, other: Any) -> bool:
        return bool(int(self) < _bytes(other))

    def __le__(self, other: Any) -> bool:
        return bool(int(self) <= _bytes(other))

    def __gt__(self, other: Any) -> bool:
        return bool(int(self) > _bytes(other))

    def __ge__(self, other: Any) -> bool:
        return bool(int(self) >= _bytes(other))


def _bytes(other: Any) -> Any:
    return parse_size(other) if isinstance(other, str) else other
