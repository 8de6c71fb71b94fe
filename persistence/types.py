"""The records the API returns: StateMetadata, StateSummary, Page, and CompressionType."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

TagMatch = Literal["all", "any"]
StateOrder = Literal["id", "-id", "updated", "-updated"]


class CompressionType(StrEnum):
    """How a version's payload is compressed; the codec picks NONE when compressing does not pay."""

    NONE = "none"
    LZ4 = "lz4"
    ZLIB = "zlib"


def from_timestamp(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


def to_micros(ts: float) -> float:
    """``ts`` at the whole-microsecond precision of the datetimes the API gives back.

    Stores keep write times at this precision, so a page cursor built from
    ``StateSummary.updated_at`` compares equal to the stored sort key."""
    return datetime.fromtimestamp(ts, tz=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class StateMetadata:
    """Everything known about one stored version of a state, without the state itself.

    ``size_bytes`` is what the backend stores (after compression), ``original_size`` the
    serialized JSON before compression; ``checksum`` is the SHA-256 (hex) of that JSON.
    """

    state_id: str
    version: int
    created_at: datetime
    size_bytes: int
    original_size: int
    compression_type: CompressionType
    checksum: str
    tags: tuple[str, ...] = ()
    ttl_seconds: int | None = None
    expires_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    write_id: str | None = None

    @property
    def compression_ratio(self) -> float:
        """original_size / size_bytes, higher is better. size_bytes is the stored frame with its
        few bytes of header, so a version stored uncompressed comes out just under 1.0."""
        return self.original_size / self.size_bytes if self.size_bytes else 1.0


@dataclass(frozen=True, slots=True)
class StateSummary:
    """One row of the states listing: the latest version's figures plus the version count."""

    state_id: str
    latest_version: int
    version_count: int
    updated_at: datetime
    size_bytes: int
    original_size: int
    compression_type: CompressionType
    tags: tuple[str, ...]
    expires_at: datetime | None

    @property
    def compression_ratio(self) -> float:
        return self.original_size / self.size_bytes if self.size_bytes else 1.0

    def ttl_remaining(self, now: datetime | None = None) -> float | None:
        if self.expires_at is None:
            return None
        now = now or datetime.now(UTC)
        return max(0.0, (self.expires_at - now).total_seconds())


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """A page of results with the opaque cursors of the pages after it (None on the last
    page) and, where the call supports it, before it (None on the first)."""

    items: list[T]
    next_cursor: str | None
    prev_cursor: str | None = None
