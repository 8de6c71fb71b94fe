"""Test helpers that reach under a store's API to damage stored bytes, as a disk or a bug would.

Each knows its backend's layout; this is the one place tests depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

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
    kind = store.backend_type
    if kind == "memory":
        return store._states[state_id].versions[version].frame  # type: ignore[attr-defined]
    if kind == "sqlite":
        row = store._query(  # type: ignore[attr-defined]
            "SELECT payload FROM versions WHERE state_id = ? AND version = ?",
            (state_id, version),
        )
        return bytes(row[0][0])
    return store._test_read_frame(state_id, version)  # type: ignore[attr-defined,no-any-return]


def write_frame(store: StatePersistence, state_id: str, version: int, frame: bytes) -> None:
    kind = store.backend_type
    if kind == "memory":
        versions = store._states[state_id].versions  # type: ignore[attr-defined]
        versions[version] = replace(versions[version], frame=frame)
    elif kind == "sqlite":
        with store._transaction() as conn:  # type: ignore[attr-defined]
            conn.execute(
                "UPDATE versions SET payload = ? WHERE state_id = ? AND version = ?",
                (frame, state_id, version),
            )
    else:
        store._test_write_frame(state_id, version, frame)  # type: ignore[attr-defined]


def damage_sqlite_pages(path: Path) -> None:
    """Overwrite every page of a closed SQLite file but the first (the schema), as a disk
    fault would: a store opened on it afterwards finds its tables' pages malformed."""
    size = path.stat().st_size
    with path.open("r+b") as raw:
        for offset in range(4096, size, 4096):
            raw.seek(offset)
            raw.write(b"\x5a" * 4096)
