"""StatePersistence: the public API, written once; backends fill in a few byte-level hooks.

The base class owns everything that must behave the same on every backend: argument checks,
the codec (serialize, compress, checksum), TTL arithmetic, version-number rules, rollback,
checkpoint records and operation statistics. A backend stores and returns ``VersionRow`` /
``CheckpointRow`` records of bytes and numbers and implements the hooks marked "Backend hooks"
below, each as one atomic step of its own storage (one transaction, one Lua script, one lock).

Decided semantics (see DESIGN.md) that every backend must honour in its hooks:

- A save with ``version=None`` takes the next version atomically; an explicit version must be
  greater than the highest version the state has ever had, else ``VersionConflictError`` and
  nothing is written. Version numbers are never reused while the state exists.
- TTL belongs to the state: each save sets its expiry from ``ttl_seconds``, else ``default_ttl``,
  else none. An expired state is invisible to every read at once; saving to an expired id starts
  a fresh state at version 1.
- Saving prunes the state's oldest versions past ``max_versions`` in the same atomic step
  (versioning off keeps only the latest; its number still counts up).
- Deleting a state's last version deletes the state.
- ``save_many`` is all-or-nothing: one conflicting or invalid item means nothing is written.
"""

from __future__ import annotations

import base64
import functools
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar

import orjson

from persistence import codec
from persistence import validation as check
from persistence.errors import (
    BackendUnavailableError,
    StateIntegrityError,
    StateNotFoundError,
    VersionConflictError,
    VersionPrunedError,
)
from persistence.opstats import OperationStats
from persistence.types import (
    CompressionType,
    Page,
    StateMetadata,
    StateOrder,
    StateSummary,
    TagMatch,
    from_timestamp,
    to_micros,
)

ROLLBACK_KEY = "statehub.rollback_of"
_COMPRESSION = {kind.value: kind for kind in CompressionType}
# Named as the original product description's debug example names it ("recoagent.state
# .persistence" there): getLogger("persistence.persistence").setLevel(DEBUG) shows each save.
log = logging.getLogger("persistence.persistence")
_SAVE_ITEM_KEYS = frozenset(
    {"state_id", "state", "version", "tags", "ttl_seconds", "metadata", "write_id"}
)


# The internal records below are plain slotted dataclasses, not frozen ones: they are built on
# every call, and a frozen dataclass's __init__ costs about fifteen times more. Treat rows read
# back as immutable; the one exception is a write's own request row, which the backend's
# _write completes in place (its version and tags) and returns, saving a copy per save.


@dataclass(slots=True)
class VersionRow:
    """One stored version as a backend keeps it. ``frame`` is empty in metadata-only reads;
    ``expires_at`` is the state's current expiry (TTL belongs to the state, not the version)."""

    state_id: str
    version: int
    created_at: float
    frame: bytes
    size_bytes: int
    original_size: int
    compression: str
    checksum: str
    tags: tuple[str, ...]
    ttl_seconds: int | None
    expires_at: float | None
    metadata: str
    write_id: str | None


@dataclass(slots=True)
class WriteRequest:
    """One version to write; ``version`` None means "the next one". ``keep`` is how many
    versions the state keeps after this write (max_versions, or 1 with versioning off)."""

    row: VersionRow
    keep: int | None
    inherit_tags: bool = False  # tags=None on save: keep the latest version's tags

    @property
    def state_id(self) -> str:
        return self.row.state_id


@dataclass(slots=True)
class CheckpointRow:
    checkpoint_id: str
    state_id: str
    created_at: float
    frame: bytes
    checksum: str
    metadata: str


@dataclass(slots=True)
class ReadResult:
    """A version read: ``row`` is None when missing; ``pruned_below`` is the lowest version
    number the state still guarantees to keep (0 when nothing was ever pruned)."""

    row: VersionRow | None
    pruned_below: int = 0


def versions_kept(enable_versioning: bool, max_versions: int | None) -> int | None:
    """Versions a state keeps after a save: 1 without versioning, else max_versions."""
    return max_versions if enable_versioning else 1


class StatePersistence(ABC):
    """A versioned, checksummed, optionally compressed store of JSON states.

    Options are keyword-only and shared by every backend:

    - ``compression_type``: ``CompressionType.LZ4`` (default), ``ZLIB`` or ``NONE``; applied
      only when it shrinks the payload.
    - ``compression_threshold``: payloads under this many bytes are stored uncompressed
      (default 128).
    - ``enable_versioning``: keep history (default) or only the latest version.
    - ``max_versions``: versions kept per state (default 10; None keeps all).
    - ``default_ttl``: seconds a state lives after its last save when a save names no TTL.
    - ``max_state_bytes``: the largest serialized state accepted (and decompressed).
    - ``clock``: seconds since the epoch; tests pass a fake to move time.
    """

    backend_type: ClassVar[str]

    def __init__(
        self,
        *,
        compression_type: CompressionType | str = CompressionType.LZ4,
        enable_versioning: bool = True,
        max_versions: int | None = 10,
        default_ttl: int | None = None,
        compression_threshold: int = codec.DEFAULT_THRESHOLD,
        max_state_bytes: int = codec.DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            self.compression_type = CompressionType(compression_type)
        except ValueError:
            valid = ", ".join(c.value for c in CompressionType)
            raise ValueError(
                f"compression_type must be one of {valid} (got {compression_type!r})"
            ) from None
        if not isinstance(enable_versioning, bool):
            raise TypeError("enable_versioning must be a bool")
        self.enable_versioning = enable_versioning
        self.max_versions = (
            None
            if max_versions is None
            else check.positive_int(max_versions, "max_versions", 1_000_000)
        )
        self.default_ttl = check.ttl(default_ttl, "default_ttl")
        self.compression_threshold = check.positive_int(
            compression_threshold, "compression_threshold", 2**31
        )
        self.max_state_bytes = check.positive_int(max_state_bytes, "max_state_bytes", 2**31)
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, not {clock!r}")
        self.clock = clock
        self.op_stats = OperationStats()

    # ------------------------------------------------------------------ saving

    @property
    def keep(self) -> int | None:
        """Versions kept per state after a save (None: all)."""
        return versions_kept(self.enable_versioning, self.max_versions)

    def save_with_metadata(
        self,
        state: dict[str, Any],
        state_id: str,
        version: int | None = None,
        tags: Iterable[str] | None = None,
        ttl_seconds: int | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        write_id: str | None = None,
    ) -> StateMetadata:
        """Save ``state`` as a new version and return its metadata.

        ``version=None`` takes the next version atomically; an explicit version must be greater
        than the state's latest or ``VersionConflictError`` is raised and nothing is written.
        ``tags=None`` keeps the tags of the latest version; ``tags=[]`` clears them. A retry
        carrying the same ``write_id`` returns the version the first attempt wrote instead of
        writing another.
        """
        with self.op_stats.timed("save"):
            request = self._request(state, state_id, version, tags, ttl_seconds, metadata, write_id)
            (row,) = self._write([request], request.row.created_at)
            log.debug(
                "saved %r version %d (%d bytes, %s)",
                row.state_id,
                row.version,
                row.size_bytes,
                row.compression,
            )
            return self._metadata(row)

    def save_many(self, items: Iterable[Mapping[str, Any]]) -> list[StateMetadata]:
        """Save several states at once, all or nothing, in one round trip / transaction.

        Each item is a mapping with ``state_id`` and ``state`` and, optionally, the other
        arguments of :meth:`save_with_metadata` (``version``, ``tags``, ``ttl_seconds``,
        ``metadata``, ``write_id``). Items are applied in order.
        """
        with self.op_stats.timed("save_many"):
            if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
                raise TypeError(
                    f"items must be an iterable of mappings, not {type(items).__name__}"
                )
            requests = [self._request_from_item(item, i) for i, item in enumerate(items)]
            if not requests:
                return []
            try:
                rows = self._write(requests, to_micros(self.clock()))
            except VersionConflictError as exc:
                if sum(r.state_id == exc.state_id for r in requests) < 2:
                    raise
                # The number it names may be one an earlier item of this batch would have
                # written: nothing was, so say where it comes from.
                raise VersionConflictError(
                    exc.state_id, exc.requested, exc.latest, in_batch=True
                ) from None
            return [self._metadata(row) for row in rows]

    def _request_from_item(self, item: Any, index: int) -> WriteRequest:
        if not isinstance(item, Mapping):
            raise TypeError(f"items[{index}] must be a mapping, not {type(item).__name__}")
        unknown = set(item) - _SAVE_ITEM_KEYS
        if unknown:
            raise TypeError(
                f"items[{index}] has unknown keys: {', '.join(sorted(map(str, unknown)))}"
            )
        for key in ("state_id", "state"):
            if key not in item:
                raise TypeError(f"items[{index}] is missing {key!r}")
        return self._request(
            item["state"],
            item["state_id"],
            item.get("version"),
            item.get("tags"),
            item.get("ttl_seconds"),
            item.get("metadata"),
            item.get("write_id"),
            field=f"items[{index}].",
        )

    def _request(
        self,
        state: Any,
        state_id: Any,
        version: Any,
        tags: Any,
        ttl_seconds: Any,
        metadata: Any,
        write_id: Any,
        *,
        field: str = "",
    ) -> WriteRequest:
        sid = check.state_id(state_id, f"{field}state_id")
        number = check.optional_version(version, f"{field}version")
        tag_tuple = check.tags(tags, f"{field}tags")
        ttl = check.ttl(ttl_seconds, f"{field}ttl_seconds")
        if ttl is None:
            ttl = self.default_ttl
        meta = check.mapping(metadata, f"{field}metadata")
        wid = check.write_id(write_id, f"{field}write_id")
        if not isinstance(state, dict):
            raise TypeError(f"{field}state must be a dict, not {type(state).__name__}")
        encoded = self._encode(state, f"{field}state")
        meta_json = _metadata_json(meta, f"{field}metadata")
        # Write times are kept at whole microseconds, the precision of the datetimes the API
        # returns (and of page cursors); the write itself runs at this same instant, so an
        # expiry never lies further than the TTL from the clock the backend is given.
        now = to_micros(self.clock())
        row = VersionRow(
            state_id=sid,
            version=number or 0,
            created_at=now,
            frame=encoded.frame,
            size_bytes=len(encoded.frame),
            original_size=encoded.original_size,
            compression=encoded.compression.value,
            checksum=encoded.checksum,
            tags=tag_tuple,
            ttl_seconds=ttl,
            expires_at=None if ttl is None else now + ttl,
            metadata=meta_json.decode(),
            write_id=wid,
        )
        return WriteRequest(row=row, keep=self.keep, inherit_tags=tags is None)

    def _encode(self, value: Any, field: str) -> codec.Encoded:
        return codec.encode(
            value,
            self.compression_type,
            threshold=self.compression_threshold,
            max_bytes=self.max_state_bytes,
            field=field,
        )

    # ------------------------------------------------------------------ reading

    def load_with_metadata(
        self, state_id: str, version: int | None = None
    ) -> tuple[dict[str, Any], StateMetadata] | None:
        """The state and its metadata, latest version by default; None when missing or expired.

        The checksum is verified on every load: corrupt bytes raise ``StateIntegrityError``.
        Asking for a version that was pruned raises ``VersionPrunedError``.
        """
        with self.op_stats.timed("load"):
            sid = check.state_id(state_id)
            number = check.optional_stored_version(version)
            result = self._read(sid, number, self.clock())
            if result.row is None:
                if number is not None and 0 < number < result.pruned_below:
                    raise VersionPrunedError(sid, number, result.pruned_below)
                return None
            return self._decode(result.row), self._metadata(result.row)

    def load_many(
        self, state_ids: Iterable[str]
    ) -> dict[str, tuple[dict[str, Any], StateMetadata] | None]:
        """The latest version of each state (None for missing ones), in one round trip."""
        with self.op_stats.timed("load_many"):
            ids = check.state_ids(state_ids)
            rows = self._read_many(ids, self.clock())
            return {
                sid: None
                if (row := rows.get(sid)) is None
                else (self._decode(row), self._metadata(row))
                for sid in ids
            }

    def list_versions(self, state_id: str) -> list[StateMetadata]:
        """Metadata of every kept version, oldest first; empty when missing or expired."""
        with self.op_stats.timed("list_versions"):
            sid = check.state_id(state_id)
            return [self._metadata(row) for row in self._versions(sid, self.clock())]

    def exists(self, state_id: str) -> bool:
        with self.op_stats.timed("exists"):
            sid = check.state_id(state_id)
            return self._read(sid, None, self.clock()).row is not None

    # ------------------------------------------------------------------ deleting

    def delete_version(self, state_id: str, version: int) -> bool:
        """Delete one version; True if it existed in a live state. Deleting the last version
        deletes the state."""
        with self.op_stats.timed("delete_version"):
            return self._delete_version(
                check.state_id(state_id), check.stored_version(version), self.clock()
            )

    def delete_state(self, state_id: str) -> bool:
        """Delete a state with all its versions and checkpoints; True if it was live (an
        expired state not purged yet is removed too, and reports False, as absent)."""
        with self.op_stats.timed("delete_state"):
            return self._delete_state(check.state_id(state_id), self.clock())

    # ------------------------------------------------------------------ listing and search

    def list_states(self, prefix: str | None = None, *, page_size: int = 500) -> Iterator[str]:
        """Every live state id (optionally starting with ``prefix``) in id order.

        A generator that fetches ``page_size`` ids at a time, so a huge store is never loaded
        into memory at once.
        """
        pre = None if prefix is None else check.text(prefix, "prefix", check.MAX_STATE_ID)
        size = check.limit(page_size, "page_size", 10_000)
        return self._iter_states(pre, size)

    def _iter_states(self, prefix: str | None, size: int) -> Iterator[str]:
        after: str | None = None
        while True:
            with self.op_stats.timed("list_states"):
                ids = self._list_ids(prefix, after, size, self.clock())
            yield from ids
            if len(ids) < size:
                return
            after = ids[-1]

    def page_states(
        self,
        *,
        prefix: str | None = None,
        tags: Iterable[str] | None = None,
        match: TagMatch = "all",
        order: StateOrder = "id",
        cursor: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> Page[StateSummary]:
        """One page of state summaries for browsing, with the cursors of its neighbours.

        ``order`` is ``"id"`` / ``"-id"`` or ``"updated"`` / ``"-updated"`` (newest first).
        Pass a page's ``next_cursor`` as ``cursor`` for the page after it, or its
        ``prev_cursor`` as ``before`` for the page before it. Paging is by cursor, never by
        offset or count, so every page costs the same. When fewer than ``limit`` states are
        left before ``before`` (some went since the cursor was made), the first page is given.
        A cursor not made by a page of this kind of order (an id cursor for a time order or the
        reverse, or one altered) raises ValueError, alike on every backend.
        """
        with self.op_stats.timed("page_states"):
            pre = None if prefix is None else check.text(prefix, "prefix", check.MAX_STATE_ID)
            tag_tuple = check.tags(tags)
            how = check.match(match)
            if not isinstance(order, str) or order not in _REVERSED_ORDER:
                raise ValueError(
                    f"order must be 'id', '-id', 'updated' or '-updated' (got {order!r})"
                )
            if cursor is not None and before is not None:
                raise ValueError(
                    "give cursor (the page after) or before (the page before), not both"
                )
            size = check.limit(limit, "limit", 1000)
            backward = before is not None
            # The page before a cursor is the page after it in the opposite order, turned round.
            run = _REVERSED_ORDER[order] if backward else order
            after = _decode_cursor(
                before if backward else cursor, order, "before" if backward else "cursor"
            )
            now = self.clock()
            items = self._page(pre, tag_tuple, how, run, after, size + 1, now)
            more = len(items) > size
            if backward and len(items) < size:
                # Fewer states before the cursor than a page (some deleted or expired since it
                # was made): the page before is the first page, filled up from the start.
                backward, cursor = False, None
                items = self._page(pre, tag_tuple, how, order, None, size + 1, now)
                more = len(items) > size
            items = items[:size]
            if backward:
                items.reverse()
            if not items:
                # Everything after the cursor has gone since it was made: lead back from it.
                return Page(items=[], next_cursor=None, prev_cursor=cursor)
            has_next = True if backward else more  # we came back from the page after
            has_prev = more if backward else cursor is not None
            return Page(
                items=items,
                next_cursor=_cursor_of(items[-1], order) if has_next else None,
                prev_cursor=_cursor_of(items[0], order) if has_prev else None,
            )

    def search_by_tags(
        self, tags: Iterable[str], match: TagMatch = "all", *, limit: int = 1000
    ) -> list[StateMetadata]:
        """Latest versions of live states carrying all (or any) of ``tags``, by state id."""
        with self.op_stats.timed("search_by_tags"):
            tag_tuple = check.tags(tags)
            if not tag_tuple:
                raise ValueError("tags must name at least one tag")
            how = check.match(match)
            size = check.limit(limit)
            rows = self._search(tag_tuple, how, size, self.clock())
            return [self._metadata(row) for row in rows]

    def list_tags(self, *, limit: int = 1000) -> list[tuple[str, int]]:
        """``(tag, number of states whose latest version carries it)``, most used first.

        Counts may include states that expired but were not purged yet.
        """
        with self.op_stats.timed("list_tags"):
            return self._tag_counts(check.limit(limit), self.clock())

    def count_states(self) -> int:
        """How many live states the store holds."""
        with self.op_stats.timed("count_states"):
            return int(self._counts(self.clock())["states"])

    # ------------------------------------------------------------------ rollback

    def rollback(
        self,
        state_id: str,
        version: int,
        *,
        metadata: dict[str, Any] | None = None,
        write_id: str | None = None,
    ) -> StateMetadata:
        """Write a new version equal to ``version`` (its state, tags and metadata); history stays.

        The state keeps its current TTL (the latest version's, counted again from now, as on
        any save): a rollback restores content, not an old lifetime.

        The new version's metadata records ``"statehub.rollback_of": version``, merged with
        ``metadata`` if given. Raises ``StateNotFoundError`` if the target does not exist.
        """
        with self.op_stats.timed("rollback"):
            sid = check.state_id(state_id)
            number = check.stored_version(version)
            extra = check.mapping(metadata, "metadata")
            result = self._read(sid, number, self.clock())
            if result.row is None:
                if 0 < number < result.pruned_below:
                    raise VersionPrunedError(sid, number, result.pruned_below)
                raise StateNotFoundError(f"state {sid!r} has no version {number} to roll back to")
            target = result.row
            state = self._decode(target)
            merged = {**orjson.loads(target.metadata), **extra, ROLLBACK_KEY: number}
            # The new version's metadata is the target's merged with the caller's: say so
            # when that, not what the caller passed alone, is over the limit.
            _metadata_json(merged, f"metadata (version {number}'s, merged with the given)")
            # The content goes back, the lifetime does not: the new version keeps the latest
            # version's TTL, or a rollback could make a permanent state expire (or the reverse).
            latest = self._read(sid, None, self.clock()).row
            ttl = target.ttl_seconds if latest is None else latest.ttl_seconds
            request = self._request(state, sid, None, target.tags, ttl, merged, write_id)
            (row,) = self._write([request], request.row.created_at)
            log.info("rolled back %r to version %d as version %d", sid, number, row.version)
            return self._metadata(row)

    # ------------------------------------------------------------------ checkpoints

    def create_checkpoint(
        self,
        state_id: str,
        checkpoint_data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Store a named snapshot beside the state's versions; returns its id.

        Checkpoints do not expire and are not pruned; ``delete_state`` removes them.
        """
        with self.op_stats.timed("create_checkpoint"):
            sid = check.state_id(state_id)
            if not isinstance(checkpoint_data, dict):
                raise TypeError(
                    f"checkpoint_data must be a dict, not {type(checkpoint_data).__name__}"
                )
            meta = check.mapping(metadata, "metadata")
            meta_json = _metadata_json(meta, "metadata")  # the same limit as a version's
            encoded = self._encode(checkpoint_data, "checkpoint_data")
            row = CheckpointRow(
                checkpoint_id=uuid.uuid4().hex,
                state_id=sid,
                created_at=to_micros(self.clock()),
                frame=encoded.frame,
                checksum=encoded.checksum,
                metadata=meta_json.decode(),
            )
            self._put_checkpoint(row)
            return row.checkpoint_id

    def restore_checkpoint(self, checkpoint_id: str) -> dict[str, Any] | None:
        """The checkpoint as ``{checkpoint_id, state_id, checkpoint_data, metadata, created_at}``,
        or None if there is no such checkpoint. It does not change the state."""
        with self.op_stats.timed("restore_checkpoint"):
            cid = check.text(checkpoint_id, "checkpoint_id", 64)
            row = self._get_checkpoint(cid)
            return None if row is None else self._checkpoint_dict(row)

    def list_checkpoints(self, state_id: str) -> list[dict[str, Any]]:
        """The state's checkpoints, oldest first, each as :meth:`restore_checkpoint` returns."""
        with self.op_stats.timed("list_checkpoints"):
            rows = self._list_checkpoints(check.state_id(state_id))
            return [self._checkpoint_dict(row) for row in rows]

    def delete_checkpoint(self, checkpoint_id: str) -> bool:
        with self.op_stats.timed("delete_checkpoint"):
            return self._delete_checkpoint(check.text(checkpoint_id, "checkpoint_id", 64))

    def _checkpoint_dict(self, row: CheckpointRow) -> dict[str, Any]:
        data = self._decode_frame(row.frame, row.checksum, f"checkpoint {row.checkpoint_id}")
        return {
            "checkpoint_id": row.checkpoint_id,
            "state_id": row.state_id,
            "checkpoint_data": data,
            "metadata": orjson.loads(row.metadata),
            "created_at": from_timestamp(row.created_at),
        }

    # ------------------------------------------------------------------ maintenance

    def purge_expired(self, limit: int = 1000) -> int:
        """Remove up to ``limit`` expired states; returns how many. Idempotent; call until 0.

        Reads already hide expired states; this reclaims their space (and, on Redis, where the
        server expires keys itself, cleans the listing and tag indexes).
        """
        with self.op_stats.timed("purge_expired"):
            removed = self._purge(check.limit(limit), self.clock())
            log.debug("purged %d expired states", removed)
            return removed

    def prune_versions(self, max_versions: int | None = None, *, limit: int = 1000) -> int:
        """Drop versions past the newest ``max_versions`` (default: the store's own setting)
        from up to ``limit`` states; returns how many versions were removed. Idempotent."""
        with self.op_stats.timed("prune_versions"):
            keep = (
                self.keep
                if max_versions is None
                else check.positive_int(max_versions, "max_versions", 1_000_000)
            )
            size = check.limit(limit)  # checked even where there is nothing to prune
            if keep is None:
                return 0
            return self._prune(keep, size, self.clock())

    # ------------------------------------------------------------------ stats

    def get_stats(self) -> dict[str, Any]:
        """Configuration, content counts and sizes, operation latencies and server info."""
        with self.op_stats.timed("get_stats"):
            counts = self._counts(self.clock())
            stored, original = counts["stored_bytes"], counts["original_bytes"]
            stats: dict[str, Any] = {
                "backend_type": self.backend_type,
                "compression_type": self.compression_type.value,
                "versioning_enabled": self.enable_versioning,
                "max_versions": self.max_versions,
                "default_ttl": self.default_ttl,
                "total_states": counts["states"],
                "total_versions": counts["versions"],
                "total_checkpoints": counts.get("checkpoints", 0),
                "stored_bytes": stored,
                "original_bytes": original,
                "compression_ratio": round(original / stored, 3) if stored else 1.0,
            }
            stats.update(self._server_info())
        stats["operations"] = self.op_stats.snapshot()
        return stats

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:  # noqa: B027 - optional hook: the memory store has nothing to close
        """Release connections. Afterwards every call of a store with connections (SQLite,
        Redis, PostgreSQL) raises BackendUnavailableError saying it was closed; the memory
        store has nothing to release and stays usable."""

    def _closed_error(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"this store ({self.describe()}) was closed; open another with connect()"
        )

    def _closed_error_factory(self) -> Callable[[], BackendUnavailableError]:
        """``_closed_error`` for a backend's connection holder, holding no reference to the
        store: a store dropped without close() is then freed at once, not by the cycle GC."""
        return functools.partial(BackendUnavailableError, str(self._closed_error()))

    def __enter__(self) -> StatePersistence:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def describe(self) -> str:
        """Where the store lives, without secrets (for logs and the dashboard)."""
        return self.backend_type

    # ------------------------------------------------------------------ conversions

    def _decode(self, row: VersionRow) -> dict[str, Any]:
        value: dict[str, Any] = self._decode_frame(
            row.frame, row.checksum, f"state {row.state_id!r} version {row.version}"
        )
        return value

    def _decode_frame(self, frame: bytes, checksum: str, what: str) -> Any:
        try:
            return codec.decode(frame, checksum, max_bytes=self.max_state_bytes)
        except StateIntegrityError as exc:
            raise StateIntegrityError(f"{what} is corrupt: {exc}") from exc

    @staticmethod
    def _metadata(row: VersionRow) -> StateMetadata:
        # Positional (in StateMetadata's field order): a search builds a thousand of these.
        return StateMetadata(
            row.state_id,
            row.version,
            datetime.fromtimestamp(row.created_at, tz=UTC),
            row.size_bytes,
            row.original_size,
            _COMPRESSION[row.compression],
            row.checksum,
            tuple(row.tags),
            row.ttl_seconds,
            from_timestamp(row.expires_at),
            {} if row.metadata == "{}" else orjson.loads(row.metadata),
            row.write_id,
        )

    # ------------------------------------------------------------------ backend hooks
    # Every hook is one atomic step of the backend's storage. ``now`` is the store clock's
    # reading: states whose expires_at <= now are treated as absent by every hook that takes
    # it. The checkpoint hooks take none: checkpoints do not expire.

    @abstractmethod
    def _write(self, requests: Sequence[WriteRequest], now: float) -> list[VersionRow]:
        """Apply the writes in order, all or nothing, and return the rows as stored.

        Per request: a state that is expired counts as absent (its old versions are dropped).
        If ``row.write_id`` matches a kept version of the state, return that version's row and
        write nothing for this request. With ``inherit_tags``, the row takes the tags of the
        state's latest version (none for a new state). Else take version = last + 1 when
        ``row.version`` is 0, or raise ``VersionConflictError`` when the explicit
        ``row.version`` <= last (the highest version the state has had). Store the row, set
        the state's latest version, tags and expires_at, and drop versions past the newest
        ``keep``, raising ``pruned_below``.
        """

    @abstractmethod
    def _read(self, state_id: str, version: int | None, now: float) -> ReadResult:
        """The latest (or the given) version with its frame, and the state's pruned_below."""

    def _read_many(self, state_ids: Sequence[str], now: float) -> dict[str, VersionRow]:
        """Latest versions of several states; backends override it to use one round trip."""
        found = {}
        for sid in state_ids:
            row = self._read(sid, None, now).row
            if row is not None:
                found[sid] = row
        return found

    @abstractmethod
    def _versions(self, state_id: str, now: float) -> list[VersionRow]:
        """Kept versions, oldest first, frames may be empty."""

    @abstractmethod
    def _delete_version(self, state_id: str, version: int, now: float) -> bool:
        """Remove one version of a live state (an expired one: nothing); whether it was there."""

    @abstractmethod
    def _delete_state(self, state_id: str, now: float) -> bool:
        """Remove the state, its versions and its checkpoints, expired or not; whether it was
        live."""

    @abstractmethod
    def _list_ids(self, prefix: str | None, after: str | None, limit: int, now: float) -> list[str]:
        """Up to ``limit`` live ids > ``after`` starting with ``prefix``, ascending."""

    @abstractmethod
    def _page(
        self,
        prefix: str | None,
        tags: tuple[str, ...],
        match: str,
        order: str,
        after: tuple[Any, str] | None,
        limit: int,
        now: float,
    ) -> list[StateSummary]:
        """Up to ``limit`` summaries of live states after the ``(sort key, state_id)`` cursor;
        the sort key is the state id for "id"/"-id" and the updated_at timestamp (a float)
        otherwise, already checked by page_states. Ties on updated_at break by state id in the
        same direction."""

    @abstractmethod
    def _search(
        self, tags: tuple[str, ...], match: str, limit: int, now: float
    ) -> list[VersionRow]:
        """Latest versions of live states by state id, through a tag index; frames may be empty."""

    @abstractmethod
    def _tag_counts(self, limit: int, now: float) -> list[tuple[str, int]]: ...

    @abstractmethod
    def _put_checkpoint(self, row: CheckpointRow) -> None: ...

    @abstractmethod
    def _get_checkpoint(self, checkpoint_id: str) -> CheckpointRow | None: ...

    @abstractmethod
    def _list_checkpoints(self, state_id: str) -> list[CheckpointRow]: ...

    @abstractmethod
    def _delete_checkpoint(self, checkpoint_id: str) -> bool: ...

    @abstractmethod
    def _purge(self, limit: int, now: float) -> int:
        """Remove up to ``limit`` expired states (their versions and index entries)."""

    @abstractmethod
    def _prune(self, keep: int, limit: int, now: float) -> int:
        """Drop versions past the newest ``keep`` from up to ``limit`` states; return the count."""

    @abstractmethod
    def _counts(self, now: float) -> dict[str, int]:
        """``states``, ``versions``, ``checkpoints``, ``stored_bytes``, ``original_bytes``."""

    def _server_info(self) -> dict[str, Any]:
        """Backend-specific figures merged into get_stats (e.g. ``{"redis_info": {...}}``)."""
        return {}


def _metadata_json(meta: dict[str, Any], field: str) -> bytes:
    """Caller metadata as JSON, refused past MAX_METADATA_BYTES with ``field`` named."""
    data = codec.dumps(meta, field=field) if meta else b"{}"
    if len(data) > check.MAX_METADATA_BYTES:
        raise ValueError(
            f"{field} is {len(data)} bytes as JSON, over the limit of {check.MAX_METADATA_BYTES}"
        )
    return data


_REVERSED_ORDER = {"id": "-id", "-id": "id", "updated": "-updated", "-updated": "updated"}


def _cursor_of(summary: StateSummary, order: str) -> str:
    key: Any = summary.updated_at.timestamp() if "updated" in order else summary.state_id
    return _encode_cursor(key, summary.state_id)


def _encode_cursor(key: Any, state_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([key, state_id])).decode()


# Write times are datetimes in the API, so none lies past the year 9999: neither may a cursor's.
_MAX_CURSOR_TIME = 253402300800.0


def _decode_cursor(cursor: Any, order: str, field: str) -> tuple[Any, str] | None:
    """``(key, state_id)`` of a cursor ``_cursor_of`` made for ``order``. Anything else is a
    ValueError here, before a backend sees it, so that every backend refuses the same cursors
    (a tampered one could otherwise reach a driver as a value it cannot bind)."""
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise TypeError(f"{field} must be a str from a page's cursors, not {type(cursor).__name__}")
    refused = ValueError(f"{field} is not one this store returned for order={order!r}")
    try:
        key, sid = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        check.state_id(sid, field)
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise refused from exc
    if "updated" in order:
        # A write time: a number (bool is an int to Python, not to a cursor) in a sane range.
        if isinstance(key, bool) or not isinstance(key, int | float):
            raise refused
        if not -_MAX_CURSOR_TIME <= key <= _MAX_CURSOR_TIME:
            raise refused
        return float(key), sid
    if key != sid:  # an id order's cursor is the id itself
        raise refused
    return key, sid


def summarize(row: VersionRow, version_count: int) -> StateSummary:
    """The listing summary of a state from its latest version row (for backends)."""
    return StateSummary(
        state_id=row.state_id,
        latest_version=row.version,
        version_count=version_count,
        updated_at=datetime.fromtimestamp(row.created_at, tz=UTC),
        size_bytes=row.size_bytes,
        original_size=row.original_size,
        compression_type=CompressionType(row.compression),
        tags=tuple(row.tags),
        expires_at=from_timestamp(row.expires_at),
    )


__all__ = [
    "CheckpointRow",
    "ReadResult",
    "StatePersistence",
    "VersionRow",
    "WriteRequest",
    "summarize",
]
