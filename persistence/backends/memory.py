"""In-memory backend: dicts under one lock. The semantics reference and the test double."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from persistence.errors import VersionConflictError
from persistence.store import (
    CheckpointRow,
    ReadResult,
    StatePersistence,
    VersionRow,
    WriteRequest,
    summarize,
)
from persistence.types import StateSummary


@dataclass(slots=True)
class _State:
    last_version: int = 0
    pruned_below: int = 0
    expires_at: float | None = None
    versions: dict[int, VersionRow] = field(default_factory=dict)  # ascending by version

    def latest(self) -> VersionRow:
        return self.versions[next(reversed(self.versions))]

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def row(self, version: VersionRow) -> VersionRow:
        return replace(version, expires_at=self.expires_at)


class InMemoryStatePersistence(StatePersistence):
    """Keeps everything in this process; thread-safe, lost when the process ends."""

    backend_type = "memory"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._lock = threading.RLock()
        self._states: dict[str, _State] = {}
        self._ids: list[str] = []  # sorted, for prefix listing by bisect
        self._tags: dict[str, set[str]] = {}
        self._checkpoints: dict[str, CheckpointRow] = {}

    # -- writes

    def _write(self, requests: Sequence[WriteRequest], now: float) -> list[VersionRow]:
        with self._lock:
            # Apply to copies first so a conflict in item n leaves items 0..n-1 unwritten too.
            staged: dict[str, _State | None] = {}
            out = []
            for request in requests:
                sid = request.state_id
                if sid not in staged:
                    current = self._states.get(sid)
                    staged[sid] = _copy(current) if current and current.live(now) else None
                state = staged[sid] or _State()
                out.append(self._apply(state, request))
                staged[sid] = state
            for sid, new_state in staged.items():
                assert new_state is not None
                self._replace(sid, new_state)
            return out

    def _apply(self, state: _State, request: WriteRequest) -> VersionRow:
        row = request.row
        if row.write_id is not None:
            for kept in state.versions.values():
                if kept.write_id == row.write_id:
                    return state.row(kept)
        if row.version and row.version <= state.last_version:
            raise VersionConflictError(row.state_id, row.version, state.last_version)
        tags = state.latest().tags if request.inherit_tags and state.versions else row.tags
        row = replace(row, version=row.version or state.last_version + 1, tags=tags)
        state.last_version = row.version
        state.expires_at = row.expires_at
        state.versions[row.version] = row
        if request.keep is not None:
            _drop_oldest(state, request.keep)
        return row

    def _replace(self, sid: str, state: _State) -> None:
        self._forget(sid)
        self._states[sid] = state
        bisect.insort(self._ids, sid)
        for tag in state.latest().tags:
            self._tags.setdefault(tag, set()).add(sid)

    def _forget(self, sid: str) -> _State | None:
        """Unlink a state from the indexes (not its checkpoints)."""
        old = self._states.pop(sid, None)
        if old is None:
            return None
        del self._ids[bisect.bisect_left(self._ids, sid)]
        for tag in old.latest().tags:
            holders = self._tags.get(tag)
            if holders is not None:
                holders.discard(sid)
                if not holders:
                    del self._tags[tag]
        return old

    # -- reads

    def _live(self, sid: str, now: float) -> _State | None:
        state = self._states.get(sid)
        return state if state is not None and state.live(now) else None

    def _read(self, state_id: str, version: int | None, now: float) -> ReadResult:
        with self._lock:
            state = self._live(state_id, now)
            if state is None:
                return ReadResult(None)
            found = state.latest() if version is None else state.versions.get(version)
            return ReadResult(found and state.row(found), state.pruned_below)

    def _versions(self, state_id: str, now: float) -> list[VersionRow]:
        with self._lock:
            state = self._live(state_id, now)
            return [] if state is None else [state.row(v) for v in state.versions.values()]

    def _list_ids(self, prefix: str | None, after: str | None, limit: int, now: float) -> list[str]:
        with self._lock:
            index = 0 if after is None else bisect.bisect_right(self._ids, after)
            if prefix is not None:
                index = max(index, bisect.bisect_left(self._ids, prefix))
            out: list[str] = []
            while index < len(self._ids) and len(out) < limit:
                sid = self._ids[index]
                index += 1
                if prefix is not None and not sid.startswith(prefix):
                    break
                if self._states[sid].live(now):
                    out.append(sid)
            return out

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
        with self._lock:
            candidates = self._tagged(tags, match) if tags else set(self._states)
            rows = [
                summarize(state.row(state.latest()), len(state.versions))
                for sid in candidates
                if (state := self._live(sid, now)) is not None
                and (prefix is None or sid.startswith(prefix))
            ]
        by_time = "updated" in order
        descending = order.startswith("-")

        def key(s: StateSummary) -> tuple[Any, str]:
            return (s.updated_at.timestamp(), s.state_id) if by_time else (s.state_id, s.state_id)

        rows.sort(key=key, reverse=descending)
        if after is not None:
            cut = (after[0], after[1])
            rows = [r for r in rows if (key(r) < cut if descending else key(r) > cut)]
        return rows[:limit]

    def _tagged(self, tags: tuple[str, ...], match: str) -> set[str]:
        sets = [self._tags.get(tag, set()) for tag in tags]
        return set.intersection(*sets) if match == "all" else set.union(*sets)

    def _search(
        self, tags: tuple[str, ...], match: str, limit: int, now: float
    ) -> list[VersionRow]:
        with self._lock:
            out = []
            for sid in sorted(self._tagged(tags, match)):
                state = self._live(sid, now)
                if state is not None:
                    out.append(state.row(state.latest()))
                    if len(out) == limit:
                        break
            return out

    def _tag_counts(self, limit: int, now: float) -> list[tuple[str, int]]:
        with self._lock:
            counts = [(tag, len(ids)) for tag, ids in self._tags.items()]
        counts.sort(key=lambda item: (-item[1], item[0]))
        return counts[:limit]

    # -- deletes

    def _delete_version(self, state_id: str, version: int, now: float) -> bool:
        with self._lock:
            state = self._live(state_id, now)
            if state is None or version not in state.versions:
                return False
            copy = _copy(state)
            del copy.versions[version]
            if copy.versions:
                self._replace(state_id, copy)
            else:
                self._forget(state_id)
            return True

    def _delete_state(self, state_id: str, now: float) -> bool:
        with self._lock:
            for cid in [c.checkpoint_id for c in self._list_checkpoints(state_id)]:
                del self._checkpoints[cid]
            existed = self._live(state_id, now) is not None
            self._forget(state_id)  # an expired state is removed too, but did not exist
            return existed

    # -- checkpoints

    def _put_checkpoint(self, row: CheckpointRow) -> None:
        with self._lock:
            self._checkpoints[row.checkpoint_id] = row

    def _get_checkpoint(self, checkpoint_id: str) -> CheckpointRow | None:
        with self._lock:
            return self._checkpoints.get(checkpoint_id)

    def _list_checkpoints(self, state_id: str) -> list[CheckpointRow]:
        with self._lock:
            rows = [c for c in self._checkpoints.values() if c.state_id == state_id]
        return sorted(rows, key=lambda c: c.created_at)

    def _delete_checkpoint(self, checkpoint_id: str) -> bool:
        with self._lock:
            return self._checkpoints.pop(checkpoint_id, None) is not None

    # -- maintenance

    def _purge(self, limit: int, now: float) -> int:
        with self._lock:
            expired = [sid for sid, s in self._states.items() if not s.live(now)][:limit]
            for sid in expired:
                self._forget(sid)
            return len(expired)

    def _prune(self, keep: int, limit: int, now: float) -> int:
        with self._lock:
            removed = 0
            over = [s for s in self._states.values() if len(s.versions) > keep][:limit]
            for state in over:
                removed += _drop_oldest(state, keep)
            return removed

    def _counts(self, now: float) -> dict[str, int]:
        with self._lock:
            live = [s for s in self._states.values() if s.live(now)]
            versions = [v for s in live for v in s.versions.values()]
            return {
                "states": len(live),
                "versions": len(versions),
                "checkpoints": len(self._checkpoints),
                "stored_bytes": sum(v.size_bytes for v in versions),
                "original_bytes": sum(v.original_size for v in versions),
            }

    def _server_info(self) -> dict[str, Any]:
        return {"memory_info": {"states_held": len(self._states)}}

    def describe(self) -> str:
        return "memory://"


def _copy(state: _State) -> _State:
    return _State(state.last_version, state.pruned_below, state.expires_at, dict(state.versions))


def _drop_oldest(state: _State, keep: int) -> int:
    """Drop versions past the newest ``keep``; returns how many were dropped."""
    surplus = list(state.versions)[:-keep] if len(state.versions) > keep else []
    for version in surplus:
        del state.versions[version]
    if surplus:
        state.pruned_below = next(iter(state.versions))
    return len(surplus)
