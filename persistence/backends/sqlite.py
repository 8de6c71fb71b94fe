"""SQLite backend: one file, WAL, a connection per thread, BEGIN IMMEDIATE for every write.

Safe with several threads and several processes on one file: writers queue on SQLite's lock
(``busy_timeout``) and a write that still finds the file locked is retried here, so "database
is locked" never reaches a caller. The schema is created and migrated by the store itself,
its version recorded in ``PRAGMA user_version``. The connections, their transactions and the
translation of sqlite3's errors are in ``sqlite_connections``.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from persistence.backends import prefix_end
from persistence.backends.sqlite_connections import Connections
from persistence.errors import (
    BackendUnavailableError,
    VersionConflictError,
)
from persistence.store import (
    CheckpointRow,
    ReadResult,
    StatePersistence,
    VersionRow,
    WriteRequest,
    summarize,
)
from persistence.types import StateSummary, to_micros

MIGRATIONS: list[str] = [
    # 1: states, their versions, the tag index and checkpoints.
    """
    CREATE TABLE states (
        state_id      TEXT PRIMARY KEY,
        last_version  INTEGER NOT NULL,
        latest_version INTEGER NOT NULL,
        version_count INTEGER NOT NULL,
        pruned_below  INTEGER NOT NULL DEFAULT 0,
        updated_at    REAL NOT NULL,
        expires_at    REAL,
        tags          TEXT NOT NULL DEFAULT '[]'
    ) WITHOUT ROWID;
    CREATE INDEX states_expires_at ON states (expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX states_updated_at ON states (updated_at, state_id);
    CREATE TABLE versions (
        state_id      TEXT NOT NULL,
        version       INTEGER NOT NULL,
        created_at    REAL NOT NULL,
        payload       BLOB NOT NULL,
        size_bytes    INTEGER NOT NULL,
        original_size INTEGER NOT NULL,
        compression   TEXT NOT NULL,
        checksum      TEXT NOT NULL,
        tags          TEXT NOT NULL,
        ttl_seconds   INTEGER,
        metadata      TEXT NOT NULL,
        write_id      TEXT,
        PRIMARY KEY (state_id, version)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX versions_write_id ON versions (state_id, write_id)
        WHERE write_id IS NOT NULL;
    CREATE TABLE state_tags (
        tag      TEXT NOT NULL,
        state_id TEXT NOT NULL,
        PRIMARY KEY (tag, state_id)
    ) WITHOUT ROWID;
    CREATE INDEX state_tags_state ON state_tags (state_id);
    CREATE TABLE checkpoints (
        checkpoint_id TEXT PRIMARY KEY,
        state_id      TEXT NOT NULL,
        created_at    REAL NOT NULL,
        payload       BLOB NOT NULL,
        checksum      TEXT NOT NULL,
        metadata      TEXT NOT NULL
    );
    CREATE INDEX checkpoints_state ON checkpoints (state_id, created_at);
    """,
    # 2: write times at whole microseconds (types.to_micros), as every store now writes
    # them, so page cursors match the times written before.
    """
    UPDATE states SET updated_at = statehub_micros(updated_at);
    UPDATE versions SET created_at = statehub_micros(created_at);
    UPDATE checkpoints SET created_at = statehub_micros(created_at)
    """,
]

_VERSION_COLUMNS = (
    "v.state_id, v.version, v.created_at, {payload}, v.size_bytes, v.original_size, "
    "v.compression, v.checksum, v.tags, v.ttl_seconds, s.expires_at, v.metadata, v.write_id"
)
# Payloads are read as BLOB whatever their stored type: a payload that something outside the
# store rewrote as TEXT then reaches the codec, which reports it as corrupt, instead of
# failing to decode as UTF-8 in the driver (which would read as an unavailable store).
_COLS = _VERSION_COLUMNS.format(payload="CAST(v.payload AS BLOB)")
_CHECKPOINT_COLS = "checkpoint_id, state_id, created_at, CAST(payload AS BLOB), checksum, metadata"
_COLS_NO_PAYLOAD = _VERSION_COLUMNS.format(payload="X''")
_LIVE = "(s.expires_at IS NULL OR s.expires_at > :now)"

SQL_READ = f"""
    SELECT s.pruned_below, {_COLS} FROM states s
    LEFT JOIN versions v ON v.state_id = s.state_id
        AND v.version = COALESCE(:version, s.latest_version)
    WHERE s.state_id = :sid AND {_LIVE}"""
SQL_VERSIONS = f"""
    SELECT {_COLS_NO_PAYLOAD} FROM states s JOIN versions v ON v.state_id = s.state_id
    WHERE s.state_id = ? AND (s.expires_at IS NULL OR s.expires_at > ?) ORDER BY v.version"""
SQL_INSERT_VERSION = """
    INSERT INTO versions (state_id, version, created_at, payload, size_bytes, original_size,
        compression, checksum, tags, ttl_seconds, metadata, write_id)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
SQL_UPSERT_STATE = """
    INSERT INTO states (state_id, last_version, latest_version, version_count, pruned_below,
        updated_at, expires_at, tags)
    VALUES (:sid, :version, :version, :count, 0, :now, :expires_at, :tags)
    ON CONFLICT (state_id) DO UPDATE SET last_version = :version, latest_version = :version,
        version_count = :count, updated_at = :now, expires_at = :expires_at, tags = :tags,
        pruned_below = CASE WHEN :pruned THEN MAX(pruned_below,
            (SELECT MIN(version) FROM versions WHERE state_id = :sid)) ELSE pruned_below END"""
SQL_LIVE = "SELECT 1 FROM states WHERE state_id = ? AND (expires_at IS NULL OR expires_at > ?)"
SQL_PRUNE_STATE = """
    DELETE FROM versions WHERE state_id = :sid AND version < (
        SELECT version FROM versions WHERE state_id = :sid
        ORDER BY version DESC LIMIT 1 OFFSET :keep - 1)"""
SQL_RECOUNT = """
    UPDATE states SET
        version_count = (SELECT COUNT(*) FROM versions WHERE state_id = :sid),
        pruned_below = MAX(pruned_below, (SELECT MIN(version) FROM versions WHERE state_id = :sid))
    WHERE state_id = :sid"""


class SQLiteStatePersistence(StatePersistence):
    """States in one SQLite file (``path``; ``":memory:"`` is refused: use the memory backend)."""

    backend_type = "sqlite"

    def __init__(
        self,
        path: str = "statehub.db",
        *,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not isinstance(path, str | os.PathLike) or str(path) in ("", ":memory:"):
            raise ValueError("path must name a database file (use memory:// for no file)")
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be OFF, NORMAL, FULL or EXTRA")
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, int | float)
            or not 0 <= busy_timeout < math.inf
        ):
            raise ValueError(
                f"busy_timeout must be a number of seconds >= 0 (got {busy_timeout!r})"
            )
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous.upper()
        self._conns = Connections(
            self.path,
            busy_timeout=busy_timeout,
            synchronous=self.synchronous,
            closed_error=self._closed_error_factory(),
        )
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot create the directory of SQLite file {self.path}: {exc}"
            ) from exc
        self._migrate()

    def _migrate(self) -> None:
        with self._conns.transaction() as conn:
            conn.create_function("statehub_micros", 1, to_micros, deterministic=True)
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    def close(self) -> None:
        self._conns.close()

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    # -- writes

    def _write(self, requests: Sequence[WriteRequest], now: float) -> list[VersionRow]:
        with self._conns.transaction() as conn:
            return [self._write_one(conn, request, now) for request in requests]

    def _write_one(self, conn: sqlite3.Connection, request: WriteRequest, now: float) -> VersionRow:
        row = request.row
        sid = row.state_id
        state = conn.execute(
            "SELECT last_version, expires_at, tags, version_count FROM states WHERE state_id = ?",
            (sid,),
        ).fetchone()
        if state is not None and state[1] is not None and state[1] <= now:
            self._remove_state(conn, sid)  # an expired state is absent: start afresh
            state = None
        last, count = (0, 0) if state is None else (state[0], state[3])
        if row.write_id is not None and state is not None:
            found = conn.execute(
                f"SELECT {_COLS} FROM versions v JOIN states s ON s.state_id = v.state_id "
                "WHERE v.state_id = ? AND v.write_id = ?",
                (sid, row.write_id),
            ).fetchone()
            if found is not None:
                return _version_row(found)
        if row.version and row.version <= last:
            raise VersionConflictError(sid, row.version, last)
        version = row.version or last + 1
        tags_json = state[2] if request.inherit_tags and state is not None else _json(row.tags)
        conn.execute(
            SQL_INSERT_VERSION,
            (
                sid,
                version,
                row.created_at,
                row.frame,
                row.size_bytes,
                row.original_size,
                row.compression,
                row.checksum,
                tags_json,
                row.ttl_seconds,
                row.metadata,
                row.write_id,
            ),
        )
        count += 1
        # Prune only when over the limit: the common save then costs no extra statement. The
        # state row then takes the oldest kept version as pruned_below, in the upsert itself.
        pruned = request.keep is not None and count > request.keep
        if pruned:
            conn.execute(SQL_PRUNE_STATE, {"sid": sid, "keep": request.keep})
            count = request.keep
        conn.execute(
            SQL_UPSERT_STATE,
            {
                "sid": sid,
                "version": version,
                "count": count,
                "pruned": pruned,
                "now": row.created_at,
                "expires_at": row.expires_at,
                "tags": tags_json,
            },
        )
        if request.inherit_tags:
            row.tags = tuple(orjson.loads(tags_json))
        if state is None or state[2] != tags_json:
            self._index_tags(conn, sid, row.tags)
        row.version = version  # the request's row is this write's own: complete it in place
        return row

    @staticmethod
    def _index_tags(conn: sqlite3.Connection, sid: str, tags: Sequence[str]) -> None:
        conn.execute("DELETE FROM state_tags WHERE state_id = ?", (sid,))
        conn.executemany(
            "INSERT INTO state_tags (tag, state_id) VALUES (?, ?)", [(tag, sid) for tag in tags]
        )

    @staticmethod
    def _prune_state(conn: sqlite3.Connection, sid: str, keep: int) -> int:
        removed = conn.execute(SQL_PRUNE_STATE, {"sid": sid, "keep": keep}).rowcount
        if removed:
            conn.execute(SQL_RECOUNT, {"sid": sid})
        return removed

    @staticmethod
    def _remove_state(conn: sqlite3.Connection, sid: str) -> bool:
        conn.execute("DELETE FROM versions WHERE state_id = ?", (sid,))
        conn.execute("DELETE FROM state_tags WHERE state_id = ?", (sid,))
        return conn.execute("DELETE FROM states WHERE state_id = ?", (sid,)).rowcount > 0

    # -- reads

    def _read(self, state_id: str, version: int | None, now: float) -> ReadResult:
        rows = self._conns.query(SQL_READ, {"sid": state_id, "version": version, "now": now})
        if not rows:
            return ReadResult(None)
        found = rows[0]
        row = None if found[2] is None else _version_row(found[1:])
        return ReadResult(row, found[0])

    def _read_many(self, state_ids: Sequence[str], now: float) -> dict[str, VersionRow]:
        found: dict[str, VersionRow] = {}
        unique = list(dict.fromkeys(state_ids))
        for start in range(0, len(unique), 500):  # stay under SQLite's bound-variable limit
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for values in self._conns.query(
                f"SELECT {_COLS} FROM states s JOIN versions v ON v.state_id = s.state_id "
                f"AND v.version = s.latest_version WHERE s.state_id IN ({marks}) "
                "AND (s.expires_at IS NULL OR s.expires_at > ?)",
                (*chunk, now),
            ):
                row = _version_row(values)
                found[row.state_id] = row
        return found

    def _versions(self, state_id: str, now: float) -> list[VersionRow]:
        return [_version_row(v) for v in self._conns.query(SQL_VERSIONS, (state_id, now))]

    def _list_ids(self, prefix: str | None, after: str | None, limit: int, now: float) -> list[str]:
        where, params = _prefix_clause(prefix)
        if after is not None:
            where.append("s.state_id > :after")
            params["after"] = after
        sql = (
            f"SELECT s.state_id FROM states s WHERE {_LIVE} {_and(where)} "
            "ORDER BY s.state_id LIMIT :limit"
        )
        return [r[0] for r in self._conns.query(sql, {**params, "now": now, "limit": limit})]

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
        where, params = _prefix_clause(prefix)
        descending = order.startswith("-")
        key = "s.updated_at" if "updated" in order else "s.state_id"
        op, direction = ("<", "DESC") if descending else (">", "ASC")
        if after is not None:
            where.append(f"({key}, s.state_id) {op} (:after_key, :after_id)")
            params.update(after_key=after[0], after_id=after[1])
        if tags:
            marks = ",".join(f":tag{i}" for i in range(len(tags)))
            params.update({f"tag{i}": tag for i, tag in enumerate(tags)})
            needed = len(tags) if match == "all" else 1
            where.append(
                f"(SELECT COUNT(*) FROM state_tags t WHERE t.state_id = s.state_id "
                f"AND t.tag IN ({marks})) >= {needed}"
            )
        sql = (
            f"SELECT s.version_count, {_COLS_NO_PAYLOAD} FROM states s JOIN versions v "
            f"ON v.state_id = s.state_id AND v.version = s.latest_version "
            f"WHERE {_LIVE} {_and(where)} "
            f"ORDER BY {key} {direction}, s.state_id {direction} LIMIT :limit"
        )
        rows = self._conns.query(sql, {**params, "now": now, "limit": limit})
        return [summarize(_version_row(r[1:]), r[0]) for r in rows]

    def _search(
        self, tags: tuple[str, ...], match: str, limit: int, now: float
    ) -> list[VersionRow]:
        # Walk the tag index in state-id order and stop at `limit` live states, instead of
        # gathering every state that carries the tags: a common tag costs no more than a rare
        # one. "all" walks its rarest tag and tests the others; "any" merges each tag's first
        # `limit` live states, which hold the first `limit` of the union.
        params: dict[str, Any] = {"now": now, "limit": limit}
        live = "(l.expires_at IS NULL OR l.expires_at > :now)"
        if match == "all":
            rarest = sorted(tags, key=self._tag_size) if len(tags) > 1 else tags
            params["driver"], *others = rarest
            tests = "".join(
                f" AND EXISTS (SELECT 1 FROM state_tags o WHERE o.tag = :t{i} "
                "AND o.state_id = d.state_id)"
                for i in range(len(others))
            )
            params.update({f"t{i}": tag for i, tag in enumerate(others)})
            ids = (
                "SELECT d.state_id FROM state_tags d JOIN states l ON l.state_id = d.state_id "
                f"WHERE d.tag = :driver AND {live}{tests} ORDER BY d.state_id LIMIT :limit"
            )
        else:
            arms = [
                f"SELECT state_id FROM (SELECT d.state_id FROM state_tags d "
                f"JOIN states l ON l.state_id = d.state_id WHERE d.tag = :t{i} AND {live} "
                "ORDER BY d.state_id LIMIT :limit)"
                for i in range(len(tags))
            ]
            params.update({f"t{i}": tag for i, tag in enumerate(tags)})
            ids = " UNION ".join(arms)
        sql = (
            f"SELECT {_COLS_NO_PAYLOAD} FROM ({ids}) t JOIN states s ON s.state_id = t.state_id "
            "JOIN versions v ON v.state_id = s.state_id AND v.version = s.latest_version "
            "ORDER BY s.state_id LIMIT :limit"
        )
        return [_version_row(r) for r in self._conns.query(sql, params)]

    def _tag_size(self, tag: str) -> int:
        """How many states carry ``tag``, counted up to a cap: enough to pick the rarest."""
        sql = "SELECT count(*) FROM (SELECT 1 FROM state_tags WHERE tag = ? LIMIT 20000)"
        return int(self._conns.query(sql, (tag,))[0][0])

    def _tag_counts(self, limit: int, now: float) -> list[tuple[str, int]]:
        rows = self._conns.query(
            "SELECT tag, COUNT(*) AS n FROM state_tags GROUP BY tag ORDER BY n DESC, tag LIMIT ?",
            (limit,),
        )
        return [(tag, n) for tag, n in rows]

    # -- deletes

    def _delete_version(self, state_id: str, version: int, now: float) -> bool:
        with self._conns.transaction() as conn:
            live = conn.execute(SQL_LIVE, (state_id, now)).fetchone()
            if live is None:
                return False
            removed = conn.execute(
                "DELETE FROM versions WHERE state_id = ? AND version = ?", (state_id, version)
            ).rowcount
            if not removed:
                return False
            latest = conn.execute(
                "SELECT version, created_at, tags FROM versions WHERE state_id = ? "
                "ORDER BY version DESC LIMIT 1",
                (state_id,),
            ).fetchone()
            if latest is None:
                self._remove_state(conn, state_id)
                return True
            conn.execute(
                "UPDATE states SET latest_version = ?, updated_at = ?, tags = ?, "
                "version_count = version_count - 1 WHERE state_id = ?",
                (latest[0], latest[1], latest[2], state_id),
            )
            self._index_tags(conn, state_id, orjson.loads(latest[2]))
            return True

    def _delete_state(self, state_id: str, now: float) -> bool:
        with self._conns.transaction() as conn:
            live = conn.execute(SQL_LIVE, (state_id, now)).fetchone()
            conn.execute("DELETE FROM checkpoints WHERE state_id = ?", (state_id,))
            self._remove_state(conn, state_id)
            return live is not None

    # -- checkpoints

    def _put_checkpoint(self, row: CheckpointRow) -> None:
        with self._conns.transaction() as conn:
            conn.execute(
                "INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
                (
                    row.checkpoint_id,
                    row.state_id,
                    row.created_at,
                    row.frame,
                    row.checksum,
                    row.metadata,
                ),
            )

    def _get_checkpoint(self, checkpoint_id: str) -> CheckpointRow | None:
        rows = self._conns.query(
            f"SELECT {_CHECKPOINT_COLS} FROM checkpoints WHERE checkpoint_id = ?", (checkpoint_id,)
        )
        return CheckpointRow(*rows[0]) if rows else None

    def _list_checkpoints(self, state_id: str) -> list[CheckpointRow]:
        rows = self._conns.query(
            f"SELECT {_CHECKPOINT_COLS} FROM checkpoints WHERE state_id = ? ORDER BY created_at",
            (state_id,),
        )
        return [CheckpointRow(*r) for r in rows]

    def _delete_checkpoint(self, checkpoint_id: str) -> bool:
        with self._conns.transaction() as conn:
            return (
                conn.execute(
                    "DELETE FROM checkpoints WHERE checkpoint_id = ?", (checkpoint_id,)
                ).rowcount
                > 0
            )

    # -- maintenance

    def _purge(self, limit: int, now: float) -> int:
        with self._conns.transaction() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT state_id FROM states WHERE expires_at <= ? LIMIT ?", (now, limit)
                )
            ]
            for sid in ids:
                self._remove_state(conn, sid)
            return len(ids)

    def _prune(self, keep: int, limit: int, now: float) -> int:
        with self._conns.transaction() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT state_id FROM states WHERE version_count > ? LIMIT ?", (keep, limit)
                )
            ]
            return sum(self._prune_state(conn, sid, keep) for sid in ids)

    def _counts(self, now: float) -> dict[str, int]:
        states, versions, stored, original = self._conns.query(
            "SELECT COUNT(DISTINCT s.state_id), COUNT(*), COALESCE(SUM(v.size_bytes), 0), "
            "COALESCE(SUM(v.original_size), 0) FROM states s JOIN versions v "
            "ON v.state_id = s.state_id WHERE s.expires_at IS NULL OR s.expires_at > ?",
            (now,),
        )[0]
        checkpoints = self._conns.query("SELECT COUNT(*) FROM checkpoints")[0][0]
        return {
            "states": states,
            "versions": versions,
            "checkpoints": checkpoints,
            "stored_bytes": stored,
            "original_bytes": original,
        }

    def _server_info(self) -> dict[str, Any]:
        def pragma(name: str) -> Any:
            return self._conns.query(f"PRAGMA {name}")[0][0]

        wal = f"{self.path}-wal"
        return {
            "sqlite_info": {
                "path": os.path.abspath(self.path),
                "file_bytes": os.path.getsize(self.path) if os.path.exists(self.path) else 0,
                "wal_bytes": os.path.getsize(wal) if os.path.exists(wal) else 0,
                "page_size": pragma("page_size"),
                "page_count": pragma("page_count"),
                "freelist_count": pragma("freelist_count"),
                "journal_mode": pragma("journal_mode"),
                "schema_version": pragma("user_version"),
                "sqlite_version": sqlite3.sqlite_version,
            }
        }


def _version_row(values: Sequence[Any]) -> VersionRow:
    (
        sid,
        version,
        created_at,
        payload,
        size_bytes,
        original_size,
        compression,
        checksum,
        tags,
        ttl_seconds,
        expires_at,
        metadata,
        write_id,
    ) = values
    return VersionRow(
        sid,
        version,
        created_at,
        bytes(payload),
        size_bytes,
        original_size,
        compression,
        checksum,
        tuple(orjson.loads(tags)),
        ttl_seconds,
        expires_at,
        metadata,
        write_id,
    )


def _json(tags: tuple[str, ...]) -> str:
    return orjson.dumps(list(tags)).decode()


def _prefix_clause(prefix: str | None) -> tuple[list[str], dict[str, Any]]:
    """A range condition on state_id that the primary key index can serve."""
    if prefix is None:
        return [], {}
    clauses, params = ["s.state_id >= :prefix"], {"prefix": prefix}
    end = prefix_end(prefix)  # SQLite compares text as UTF-8 bytes: code-point order
    if end is not None:
        clauses.append("s.state_id < :prefix_end")
        params["prefix_end"] = end
    return clauses, params


def _and(clauses: list[str]) -> str:
    return "".join(f" AND {c}" for c in clauses)
