"""Test helpers that reach under a store's API to damage stored bytes, as a disk or a bug would.

Each knows its backend's layout; this is the one place tests depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from persistence import StatePersistence


def flip_byte(frame: bytes, index: int | None = None) -> bytes:
    """``frame`` with one byte inverted (by default one in the middle of the payload)."""
    at = len(frame) // 2 if index is None else index
    return frame[:at] + bytes([frame[at] ^ 0xFF]) + frame[at + 1 :]


def corrupt_version(
    store: StatePersistence,
    state_id: str,
    version: int,
    damage: Callable[[bytes], bytes] = flip_byte,
) -> None:
    """Replace the stored frame of one version with ``damage(frame)``."""
    write_frame(store, state_id, version, damage(read_frame(store, state_id, version)))


def read_frame(store: StatePersistence, state_id: str, version: int) -> bytes:
    backend: Any = store  # reached under the API, by each backend's own layout
    kind = store.backend_type
    if kind == "memory":
        return bytes(backend._states[state_id].versions[version].frame)
    if kind == "sqlite":
        rows = backend._conns.query(
            f"SELECT payload FROM versions{_ONE_SQLITE}", (state_id, version)
        )
    elif kind == "redis":
        return bytes(backend._command("HGET", *_redis_frame_field(backend, state_id, version)))
    else:
        query = _pg(f"SELECT payload FROM {{}}.versions{_ONE}", backend)
        rows = backend._conns.run(lambda c: c.execute(query, (state_id, version)).fetchall())
    if not rows:
        raise KeyError((state_id, version))
    return bytes(rows[0][0])


def write_frame(store: StatePersistence, state_id: str, version: int, frame: bytes) -> None:
    backend: Any = store
    kind = store.backend_type
    if kind == "memory":
        versions = backend._states[state_id].versions
        versions[version] = replace(versions[version], frame=frame)
    elif kind == "sqlite":
        with backend._conns.transaction() as conn:
            sql = f"UPDATE versions SET payload = ?{_ONE_SQLITE}"
            conn.execute(sql, (frame, state_id, version))
    elif kind == "redis":
        backend._command("HSET", *_redis_frame_field(backend, state_id, version), frame)
    else:
        query = _pg(f"UPDATE {{}}.versions SET payload = %s{_ONE}", backend)
        backend._conns.run(lambda c: c.execute(query, (frame, state_id, version)), writes=True)


_ONE = " WHERE state_id = %s AND version = %s"
_ONE_SQLITE = " WHERE state_id = ? AND version = ?"


def _pg(text: str, store: Any) -> Any:
    """``text`` with its ``{}`` made the store's schema, quoted."""
    from psycopg import sql

    return sql.SQL(text).format(sql.Identifier(store.schema))


def _redis_frame_field(store: Any, state_id: str, version: int) -> tuple[str, str]:
    """The state's hash and the field holding the version's frame: the latest one is in F."""
    key = store._key("h", state_id)
    cur = store._command("HGET", key, "cur")
    return key, "F" if cur == str(version).encode() else f"f{version}"


def damage_sqlite_pages(path: Path) -> None:
    """Overwrite every page of a closed SQLite file but the first (the schema), as a disk
    fault would: a store opened on it afterwards finds its tables' pages malformed."""
    size = path.stat().st_size
    with path.open("r+b") as raw:
        for offset in range(4096, size, 4096):
            raw.seek(offset)
            raw.write(b"\x5a" * 4096)
