"""PostgreSQL backend: psycopg 3 through a connection pool, a save in one round trip.

Layout (in the store's own schema, created and migrated by the store): ``states`` holds one row
per state with its counters and the figures of its latest version (the listing reads only it);
``versions`` holds every kept version; ``checkpoints`` the snapshots. State ids use the "C"
collation, so the primary key serves prefix ranges and sorts in Python's code-point order.

A save is one pipeline (one round trip, one implicit transaction ended by the pipeline's Sync):

1. ``_REVIVE``: if the state has expired, lock it and drop its old versions (it restarts at 1);
2. ``_SAVE``: upsert the states row - the row lock serialises writers of one state and the
   ``ON CONFLICT ... WHERE`` refuses a stale explicit version - and insert the version;
3. ``_TRIM``: drop versions past ``keep``. It is a statement of its own because under READ
   COMMITTED each statement sees the versions committed before it, while one statement would
   only see those committed before it started (a writer it waited for would be missed).

A refused upsert returns no row, so the version insert meets a NULL version and fails on the
NOT NULL constraint: the database aborts the whole pipeline, nothing is written, and we report
the ``VersionConflictError``. psycopg errors are translated in one place, ``_translate``.
"""

from __future__ import annotations

import hashlib
import select
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg import errors, sql
from psycopg.adapt import AdaptersMap
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.numeric import Int8BinaryDumper, Int8Dumper
from psycopg_pool import ConnectionPool

from persistence.errors import (
    BackendUnavailableError,
    OutcomeUnknownError,
    PersistenceError,
    VersionConflictError,
)
from persistence.store import (
    CheckpointRow,
    ReadResult,
    StatePersistence,
    VersionRow,
    WriteRequest,
)
from persistence.types import CompressionType, StateSummary

T = TypeVar("T")
Conn = psycopg.Connection[Any]

# Each entry is applied once, in order, and recorded in schema_version.
MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    (
        1,
        (
            """CREATE TABLE {schema}.states (
            state_id text COLLATE "C" PRIMARY KEY,
            last_version bigint NOT NULL,          -- highest version ever: never reused
            latest_version bigint NOT NULL,        -- highest version kept
            pruned_below bigint NOT NULL DEFAULT 0,
            version_count integer NOT NULL,
            stored_bytes bigint NOT NULL,
            original_bytes bigint NOT NULL,
            updated_at double precision NOT NULL,  -- rounded to the microsecond, see _micros
            expires_at double precision,
            tags text[] NOT NULL,
            size_bytes integer NOT NULL,
            original_size integer NOT NULL,
            compression text NOT NULL)""",
            "CREATE INDEX states_expires_at ON {schema}.states (expires_at)"
            " WHERE expires_at IS NOT NULL",
            "CREATE INDEX states_updated ON {schema}.states (updated_at, state_id)",
            # No fast-update pending list: every search would scan it linearly until a vacuum.
            "CREATE INDEX states_tags ON {schema}.states USING gin (tags) WITH (fastupdate = off)",
            """CREATE TABLE {schema}.versions (
            state_id text COLLATE "C" NOT NULL,
            version bigint NOT NULL,
            created_at double precision NOT NULL,
            payload bytea NOT NULL,
            size_bytes integer NOT NULL,
            original_size integer NOT NULL,
            compression text NOT NULL,
            checksum text NOT NULL,
            tags text[] NOT NULL,
            ttl_seconds bigint,
            metadata text NOT NULL,                -- the caller's JSON, kept byte for byte
            write_id text,
            PRIMARY KEY (state_id, version))""",
            "CREATE UNIQUE INDEX versions_write_id ON {schema}.versions (state_id, write_id)"
            " WHERE write_id IS NOT NULL",
            """CREATE TABLE {schema}.checkpoints (
            checkpoint_id text PRIMARY KEY,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            state_id text COLLATE "C" NOT NULL,
            created_at double precision NOT NULL,
            payload bytea NOT NULL,
            checksum text NOT NULL,
            metadata text NOT NULL)""",
            "CREATE INDEX checkpoints_state ON {schema}.checkpoints (state_id, created_at, seq)",
        ),
    ),
]

_SETUP = (
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    "CREATE TABLE IF NOT EXISTS {schema}.schema_version ("
    " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
)
_SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM {schema}.schema_version"
_RECORD_VERSION = "INSERT INTO {schema}.schema_version (version) VALUES (%s)"

_LIVE = "(s.expires_at IS NULL OR s.expires_at > %(now)s::float8)"
# VersionRow's fields in order, read from versions v joined to states s.
_ROW = (
    "v.state_id, v.version, v.created_at, {payload}, v.size_bytes, v.original_size,"
    " v.compression, v.checksum, v.tags, v.ttl_seconds, s.expires_at, v.metadata, v.write_id"
)
_FULL_ROW = _ROW.format(payload="v.payload")
_META_ROW = _ROW.format(payload="''::bytea")

_REVIVE = """
WITH stale AS (
    SELECT 1 FROM {schema}.states
    WHERE state_id = %(sid)s AND expires_at <= %(now)s::float8 FOR UPDATE)
DELETE FROM {schema}.versions WHERE state_id = %(sid)s AND EXISTS (SELECT FROM stale)"""

_SAVE = (
    """
WITH dup AS (
    SELECT """
    + _META_ROW
    + """
    FROM {schema}.versions v JOIN {schema}.states s ON s.state_id = v.state_id
    WHERE v.state_id = %(sid)s AND v.write_id = %(write_id)s::text AND """
    + _LIVE
    + """
), st AS (
    INSERT INTO {schema}.states AS s (state_id, last_version, latest_version, pruned_below,
        version_count, stored_bytes, original_bytes, updated_at, expires_at, tags, size_bytes,
        original_size, compression)
    SELECT %(sid)s, n, n, 0, 1, %(size)s, %(orig)s, %(updated_at)s, %(expires_at)s,
        %(tags)s::text[], %(size)s, %(orig)s, %(compression)s
    FROM (VALUES (greatest(%(version)s::bigint, 1))) AS fresh (n)
    WHERE NOT EXISTS (SELECT FROM dup)
    ON CONFLICT (state_id) DO UPDATE SET
        last_version = CASE WHEN s.expires_at <= %(now)s::float8 THEN excluded.last_version
            ELSE greatest(%(version)s::bigint, s.last_version + 1) END,
        latest_version = CASE WHEN s.expires_at <= %(now)s::float8 THEN excluded.last_version
            ELSE greatest(%(version)s::bigint, s.last_version + 1) END,
        pruned_below = CASE WHEN s.expires_at <= %(now)s::float8 THEN 0 ELSE s.pruned_below END,
        version_count = CASE WHEN s.expires_at <= %(now)s::float8 THEN 1
            ELSE s.version_count + 1 END,
        stored_bytes = CASE WHEN s.expires_at <= %(now)s::float8 THEN 0
            ELSE s.stored_bytes END + excluded.size_bytes,
        original_bytes = CASE WHEN s.expires_at <= %(now)s::float8 THEN 0
            ELSE s.original_bytes END + excluded.original_size,
        tags = CASE WHEN %(inherit)s AND NOT coalesce(s.expires_at <= %(now)s::float8, false)
            THEN s.tags ELSE excluded.tags END,
        updated_at = excluded.updated_at, expires_at = excluded.expires_at,
        size_bytes = excluded.size_bytes, original_size = excluded.original_size,
        compression = excluded.compression
    WHERE s.expires_at <= %(now)s::float8 OR %(version)s::bigint = 0
        OR s.last_version < %(version)s::bigint
    RETURNING s.latest_version, s.tags
), ins AS (
    INSERT INTO {schema}.versions (state_id, version, created_at, payload, size_bytes,
        original_size, compression, checksum, tags, ttl_seconds, metadata, write_id)
    SELECT %(sid)s, (SELECT latest_version FROM st), %(created_at)s, %(payload)s, %(size)s,
        %(orig)s, %(compression)s, %(checksum)s,
        coalesce((SELECT tags FROM st), ARRAY[]::text[]), %(ttl)s, %(metadata)s,
        %(write_id)s::text
    WHERE NOT EXISTS (SELECT FROM dup)
    RETURNING version, tags
)
SELECT version, tags, NULL::float8, NULL::integer, NULL::integer, NULL::text, NULL::text,
    NULL::bigint, NULL::float8, NULL::text FROM ins
UNION ALL
SELECT version, tags, created_at, size_bytes, original_size, compression, checksum,
    ttl_seconds, expires_at, metadata FROM dup"""
)

_TRIM = """
WITH edge AS (
    SELECT version FROM {schema}.versions WHERE state_id = %(sid)s
    ORDER BY version DESC OFFSET %(skip)s LIMIT 1
), gone AS (
    DELETE FROM {schema}.versions v USING edge
    WHERE v.state_id = %(sid)s AND v.version < edge.version
    RETURNING v.size_bytes, v.original_size
)
UPDATE {schema}.states s SET version_count = s.version_count - g.n,
    stored_bytes = s.stored_bytes - g.size, original_bytes = s.original_bytes - g.orig,
    pruned_below = (SELECT version FROM edge)
FROM (SELECT count(*) AS n, sum(size_bytes) AS size, sum(original_size) AS orig FROM gone) g
WHERE s.state_id = %(sid)s AND g.n > 0"""

_LAST_VERSIONS = (
    """
SELECT s.state_id, CASE WHEN """
    + _LIVE
    + """ THEN s.last_version ELSE 0 END
FROM {schema}.states s WHERE s.state_id = ANY(%(ids)s::text[])"""
)

_READ = (
    """
SELECT """
    + _FULL_ROW
    + """, s.pruned_below
FROM {schema}.states s LEFT JOIN {schema}.versions v
    ON v.state_id = s.state_id AND v.version = coalesce(%(version)s::bigint, s.latest_version)
WHERE s.state_id = %(sid)s AND """
    + _LIVE
)

_READ_MANY = (
    """
SELECT """
    + _FULL_ROW
    + """
FROM {schema}.states s JOIN {schema}.versions v
    ON v.state_id = s.state_id AND v.version = s.latest_version
WHERE s.state_id = ANY(%(ids)s::text[]) AND """
    + _LIVE
)

_VERSIONS = (
    """
SELECT """
    + _META_ROW
    + """
FROM {schema}.states s JOIN {schema}.versions v ON v.state_id = s.state_id
WHERE s.state_id = %(sid)s AND """
    + _LIVE
    + " ORDER BY v.version"
)

_LOCK_LIVE = (
    """
SELECT version_count FROM {schema}.states s WHERE s.state_id = %(sid)s AND """
    + _LIVE
    + """
FOR UPDATE"""
)
_DELETE_ONE = """
DELETE FROM {schema}.versions WHERE state_id = %(sid)s AND version = %(version)s::bigint
RETURNING size_bytes, original_size"""
_NEW_LATEST = """
SELECT version, created_at, tags, size_bytes, original_size, compression
FROM {schema}.versions WHERE state_id = %(sid)s ORDER BY version DESC LIMIT 1"""
_SET_LATEST = """
UPDATE {schema}.states SET version_count = version_count - 1,
    stored_bytes = stored_bytes - %(size)s, original_bytes = original_bytes - %(orig)s,
    latest_version = %(version)s, updated_at = %(updated_at)s, tags = %(tags)s::text[],
    size_bytes = %(new_size)s, original_size = %(new_orig)s, compression = %(compression)s
WHERE state_id = %(sid)s"""
_ONE_VERSION = " WHERE state_id = %(sid)s AND version = %(version)s"
_FRAME = "SELECT payload FROM {schema}.versions" + _ONE_VERSION
_SET_FRAME = "UPDATE {schema}.versions SET payload = %(payload)s" + _ONE_VERSION
_DELETE_STATE_ROW = "DELETE FROM {schema}.states WHERE state_id = %(sid)s"
_DELETE_VERSIONS = "DELETE FROM {schema}.versions WHERE state_id = %(sid)s"
_DELETE_CHECKPOINTS = "DELETE FROM {schema}.checkpoints WHERE state_id = %(sid)s"

# Listing: the filters and the keyset condition are composed per call from these pieces.
_SUMMARY = (
    """
SELECT state_id, latest_version, version_count, updated_at, size_bytes, original_size,
    compression, tags, expires_at
FROM {schema}.states s WHERE """
    + _LIVE
)
_PREFIX = " AND state_id >= %(low)s AND state_id LIKE %(pattern)s"
_PREFIX_HIGH = " AND state_id < %(high)s"  # the range is what lets the primary key serve it
_TAGS = {"all": " AND s.tags @> %(tags)s::text[]", "any": " AND s.tags && %(tags)s::text[]"}
_ORDERS = {
    "id": ("state_id", " AND state_id > %(after_id)s"),
    "-id": ("state_id DESC", " AND state_id < %(after_id)s"),
    "updated": (
        "updated_at, state_id",
        " AND (updated_at, state_id) > (%(after_key)s::float8, %(after_id)s)",
    ),
    "-updated": (
        "updated_at DESC, state_id DESC",
        " AND (updated_at, state_id) < (%(after_key)s::float8, %(after_id)s)",
    ),
}
_LIST_IDS = "SELECT state_id FROM {schema}.states s WHERE " + _LIVE

_SEARCH = (
    """
SELECT """
    + _META_ROW
    + """
FROM {schema}.states s JOIN {schema}.versions v
    ON v.state_id = s.state_id AND v.version = s.latest_version
WHERE """
    + _LIVE
    + "{tags} ORDER BY s.state_id LIMIT %(limit)s"
)

_TAG_COUNTS = """
SELECT tag, count(*) FROM {schema}.states, unnest(tags) AS tag
GROUP BY tag ORDER BY count(*) DESC, tag COLLATE "C" LIMIT %(limit)s"""

_PUT_CHECKPOINT = """
INSERT INTO {schema}.checkpoints (checkpoint_id, state_id, created_at, payload, checksum, metadata)
VALUES (%s, %s, %s, %s, %s, %s)"""
_CHECKPOINT = (
    "SELECT checkpoint_id, state_id, created_at, payload, checksum, metadata"
    " FROM {schema}.checkpoints"
)
_GET_CHECKPOINT = _CHECKPOINT + " WHERE checkpoint_id = %s"
_LIST_CHECKPOINTS = _CHECKPOINT + " WHERE state_id = %s ORDER BY created_at, seq"
_DELETE_CHECKPOINT = "DELETE FROM {schema}.checkpoints WHERE checkpoint_id = %s"

# Two purgers never wait for each other: each skips the states the other has locked.
_PURGE = """
WITH doomed AS (
    SELECT state_id FROM {schema}.states WHERE expires_at <= %(now)s::float8
    ORDER BY expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), versions_gone AS (
    DELETE FROM {schema}.versions v USING doomed d WHERE v.state_id = d.state_id
), gone AS (
    DELETE FROM {schema}.states s USING doomed d WHERE s.state_id = d.state_id RETURNING 1
)
SELECT count(*) FROM gone"""

_PICK_OVERFULL = """
SELECT state_id FROM {schema}.states WHERE version_count > %(keep)s
ORDER BY state_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"""
_PRUNE = """
WITH ranked AS (
    SELECT state_id, version,
        row_number() OVER (PARTITION BY state_id ORDER BY version DESC) AS rank
    FROM {schema}.versions WHERE state_id = ANY(%(ids)s::text[])
), gone AS (
    DELETE FROM {schema}.versions v USING ranked r
    WHERE v.state_id = r.state_id AND v.version = r.version AND r.rank > %(keep)s
    RETURNING v.state_id, v.size_bytes, v.original_size
), totals AS (
    SELECT state_id, count(*) AS n, sum(size_bytes) AS size, sum(original_size) AS orig
    FROM gone GROUP BY state_id
), fixed AS (
    UPDATE {schema}.states s SET version_count = s.version_count - t.n,
        stored_bytes = s.stored_bytes - t.size, original_bytes = s.original_bytes - t.orig,
        pruned_below = (SELECT r.version FROM ranked r
                        WHERE r.state_id = s.state_id AND r.rank = %(keep)s)
    FROM totals t WHERE s.state_id = t.state_id
)
SELECT coalesce(sum(n), 0) FROM totals"""

_COUNTS = (
    """
SELECT count(*), coalesce(sum(version_count), 0), coalesce(sum(stored_bytes), 0),
    coalesce(sum(original_bytes), 0), (SELECT count(*) FROM {schema}.checkpoints)
FROM {schema}.states s WHERE """
    + _LIVE
)

_SERVER_INFO = """
SELECT current_setting('server_version'), pg_database_size(current_database()),
    (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),
    (SELECT json_object_agg(t, pg_total_relation_size(format('%%I.%%I', %(schema)s::text, t)))
     FROM unnest(ARRAY['states', 'versions', 'checkpoints']) AS t)"""


# Every Python int goes out as a bigint: psycopg would otherwise pick int2/int4/int8 by value,
# and each combination of parameter types is a prepared statement (and a Parse) of its own.
_ADAPTERS = AdaptersMap(psycopg.adapters)
_ADAPTERS.register_dumper(int, Int8Dumper)
_ADAPTERS.register_dumper(int, Int8BinaryDumper)


class _Retry(Exception):
    """A write lost a race the database resolved (a deadlock, a concurrent same write_id)."""


class PostgresStatePersistence(StatePersistence):
    """A store in a PostgreSQL schema, shared safely by many threads and processes."""

    backend_type = "postgres"

    def __init__(
        self,
        dsn: str = "postgresql://localhost/postgres",
        *,
        schema: str = "statehub",
        min_size: int = 1,
        max_size: int = 10,
        pool_timeout: float = 30.0,
        connect_timeout: int = 5,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not isinstance(schema, str) or not 1 <= len(schema.encode()) <= 63:
            raise ValueError(f"schema must be a name of 1 to 63 bytes (got {schema!r})")
        self.dsn = dsn
        self.schema = schema
        # Names this store's connections in pg_stat_activity (the tests terminate them by it).
        self.application_name = f"statehub:{schema[:40]}:{uuid.uuid4().hex[:8]}"
        self._q = _Queries(schema)
        self._page_sql: dict[tuple[Any, ...], str] = {}
        connect_args: dict[str, Any] = {
            "autocommit": True,  # a pipeline's Sync ends its one implicit transaction
            "connect_timeout": connect_timeout,
            "application_name": self.application_name,
            "context": _ADAPTERS,
        }
        try:
            # A direct connection fails fast when the server is down; the pool would retry.
            with psycopg.connect(dsn, **connect_args) as conn:
                self._migrate(conn)
        except psycopg.Error as exc:
            raise _translate(exc) from exc
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            dsn,
            kwargs=connect_args,
            min_size=min_size,
            max_size=max_size,
            timeout=pool_timeout,
            name=self.application_name,
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=max(connect_timeout, 1) * 2)
        except psycopg.Error as exc:
            self._pool.close()
            raise _translate(exc) from exc

    def _migrate(self, conn: Conn) -> None:
        # The advisory lock makes concurrent starters take turns; the second sees the work done.
        key = int.from_bytes(
            hashlib.sha256(f"statehub:{self.schema}".encode()).digest()[:8], "big", signed=True
        )
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [key])
            for statement in _SETUP:
                conn.execute(self._q(statement))
            row = conn.execute(self._q(_SCHEMA_VERSION)).fetchone()
            current = row[0] if row else 0
            for version, statements in MIGRATIONS:
                if version > current:
                    for statement in statements:
                        conn.execute(self._q(statement))
                    conn.execute(self._q(_RECORD_VERSION), [version])

    # -- connections and errors

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        try:
            conn = self._pool.getconn()
            # A connection the server closed while it sat in the pool (a restart,
            # pg_terminate_backend) has something to read: replace it before sending anything.
            while _closed_by_server(conn):
                conn.close()
                self._pool.putconn(conn)
                conn = self._pool.getconn()
        except psycopg.Error as exc:
            raise _translate(exc) from exc
        try:
            yield conn
        finally:
            self._pool.putconn(conn)

    def _run(self, work: Callable[[Conn], T], *, writes: bool = False) -> T:
        """Run ``work`` on a pooled connection, translating driver errors. A read that loses
        its connection is retried once; a write that does cannot know its outcome."""
        for attempt in range(2):
            with self._connection() as conn:
                try:
                    return work(conn)
                except psycopg.Error as exc:
                    lost = conn.broken
                    if lost and not writes and attempt == 0:
                        continue
                    raise _translate(exc, outcome_unknown=lost and writes) from exc
        raise AssertionError("unreachable")

    # -- writes

    def _write(self, requests: Sequence[WriteRequest], now: float) -> list[VersionRow]:
        for attempt in range(3):
            try:
                return self._run(lambda conn: self._save(conn, requests, now), writes=True)
            except _Retry:
                if attempt == 2:
                    raise BackendUnavailableError(
                        "PostgreSQL kept aborting the save (lost races); nothing was written"
                    ) from None
        raise AssertionError("unreachable")

    def _save(self, conn: Conn, requests: Sequence[WriteRequest], now: float) -> list[VersionRow]:
        q = self._q
        statements: list[tuple[str, dict[str, Any]]] = []
        for request in requests:
            params = _save_params(request, now)
            statements += [(q.revive, params), (q.save, params)]
            if request.keep is not None:
                statements.append((q.trim, params))
        try:
            results = _pipeline(conn, statements)
        except errors.NotNullViolation as exc:
            if exc.diag.column_name != "version":
                raise
            raise self._conflict(conn, requests, now) from exc
        except errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "versions_write_id":
                raise _Retry from exc  # a concurrent retry of this write_id committed first
            if exc.diag.constraint_name == "versions_pkey":
                raise self._conflict(conn, requests, now) from exc
            raise
        except errors.TransactionRollback as exc:
            raise _Retry from exc
        cursors = [
            cur for (query, _), cur in zip(statements, results, strict=True) if query is q.save
        ]
        out = []
        for request, cursor in zip(requests, cursors, strict=True):
            rec = cursor.fetchone()
            assert rec is not None
            out.append(_saved_row(request, rec))
        return out

    def _conflict(
        self, conn: Conn, requests: Sequence[WriteRequest], now: float
    ) -> VersionConflictError:
        """Which request was refused: replay the version rules on the states' current last
        versions (the refused pipeline changed nothing)."""
        ids = list({r.state_id for r in requests})
        last = dict(conn.execute(self._q.last_versions, {"ids": ids, "now": now}).fetchall())
        for request in requests:
            sid, wanted = request.state_id, request.row.version
            if wanted and wanted <= last.get(sid, 0):
                return VersionConflictError(sid, wanted, last.get(sid, 0))
            last[sid] = wanted or last.get(sid, 0) + 1
        first = next((r for r in requests if r.row.version), requests[0])
        return VersionConflictError(first.state_id, first.row.version, last.get(first.state_id, 0))

    def _delete_version(self, state_id: str, version: int) -> bool:
        now = self.clock()

        def work(conn: Conn) -> bool:
            q, key = self._q, {"sid": state_id, "version": version, "now": now}
            with conn.transaction():
                held = conn.execute(q.lock_live, key).fetchone()
                gone = held and conn.execute(q.delete_one, key).fetchone()
                if not held or not gone:
                    return False
                latest = conn.execute(q.new_latest, key).fetchone()
                if latest is None:  # that was the last version: the state goes with it
                    conn.execute(q.delete_state_row, key)
                    return True
                conn.execute(
                    q.set_latest,
                    {
                        **key,
                        "size": gone[0],
                        "orig": gone[1],
                        "version": latest[0],
                        "updated_at": _micros(latest[1]),
                        "tags": latest[2],
                        "new_size": latest[3],
                        "new_orig": latest[4],
                        "compression": latest[5],
                    },
                )
                return True

        return self._run(work, writes=True)

    def _delete_state(self, state_id: str) -> bool:
        def work(conn: Conn) -> bool:
            # The states row first, as every writer locks it first: no deadlock between them.
            key = {"sid": state_id}
            found, _, _ = _pipeline(
                conn,
                [
                    (self._q.delete_state_row, key),
                    (self._q.delete_versions, key),
                    (self._q.delete_checkpoints, key),
                ],
            )
            return found.rowcount > 0

        return self._run(work, writes=True)

    # -- reads

    def _read(self, state_id: str, version: int | None, now: float) -> ReadResult:
        params = {"sid": state_id, "version": version, "now": now}
        # Binary results: the payload arrives as it is stored instead of as hex text.
        rec = self._run(
            lambda c: c.execute(self._q.read, params, prepare=True, binary=True).fetchone()
        )
        if rec is None:
            return ReadResult(None)
        return ReadResult(None if rec[1] is None else _version_row(rec), rec[-1])

    def _read_many(self, state_ids: Sequence[str], now: float) -> dict[str, VersionRow]:
        params = {"ids": list(state_ids), "now": now}
        recs = self._run(lambda c: c.execute(self._q.read_many, params, binary=True).fetchall())
        return {rec[0]: _version_row(rec) for rec in recs}

    def _versions(self, state_id: str, now: float) -> list[VersionRow]:
        params = {"sid": state_id, "now": now}
        recs = self._run(lambda c: c.execute(self._q.versions, params).fetchall())
        return [_version_row(rec) for rec in recs]

    def _list_ids(self, prefix: str | None, after: str | None, limit: int, now: float) -> list[str]:
        query, params = self._listing(_LIST_IDS, prefix, (), "all", "id", after, limit, now)
        recs = self._run(lambda c: c.execute(query, params).fetchall())
        return [rec[0] for rec in recs]

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
        cursor = None if after is None else after[1]
        query, params = self._listing(_SUMMARY, prefix, tags, match, order, cursor, limit, now)
        if after is not None and "updated" in order:
            if not isinstance(after[0], int | float):
                raise ValueError("cursor does not belong to an 'updated' listing")
            params["after_key"] = float(after[0])
        recs = self._run(lambda c: c.execute(query, params).fetchall())
        return [_summary(rec) for rec in recs]

    def _listing(
        self,
        base: str,
        prefix: str | None,
        tags: tuple[str, ...],
        match: str,
        order: str,
        after: str | None,
        limit: int,
        now: float,
    ) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"now": now, "limit": limit, "tags": list(tags), "after_id": after}
        high = None
        if prefix is not None:
            params["low"], params["pattern"] = prefix, _like_prefix(prefix)
            params["high"] = high = _prefix_end(prefix)
        key = (
            base,
            prefix is not None,
            high is not None,
            bool(tags) and match,
            order,
            after is not None,
        )
        query = self._page_sql.get(key)
        if query is None:
            by, keyset = _ORDERS[order]
            text = base + (_PREFIX if prefix is not None else "")
            text += (_PREFIX_HIGH if high is not None else "") + (_TAGS[match] if tags else "")
            text += (keyset if after is not None else "") + f" ORDER BY {by} LIMIT %(limit)s"
            query = self._page_sql[key] = self._q(text)
        return query, params

    def _search(
        self, tags: tuple[str, ...], match: str, limit: int, now: float
    ) -> list[VersionRow]:
        query = self._q.search_all if match == "all" else self._q.search_any
        params = {"tags": list(tags), "limit": limit, "now": now}
        # Not prepared: a plan made for these tags can use their statistics (GIN or not).
        recs = self._run(lambda c: c.execute(query, params, prepare=False, binary=True).fetchall())
        return [_version_row(rec) for rec in recs]

    def _tag_counts(self, limit: int, now: float) -> list[tuple[str, int]]:
        recs = self._run(lambda c: c.execute(self._q.tag_counts, {"limit": limit}).fetchall())
        return [(tag, count) for tag, count in recs]

    # -- checkpoints

    def _put_checkpoint(self, row: CheckpointRow) -> None:
        values = (
            row.checkpoint_id,
            row.state_id,
            row.created_at,
            row.frame,
            row.checksum,
            row.metadata,
        )
        self._run(lambda c: c.execute(self._q.put_checkpoint, values), writes=True)

    def _get_checkpoint(self, checkpoint_id: str) -> CheckpointRow | None:
        rec = self._run(lambda c: c.execute(self._q.get_checkpoint, [checkpoint_id]).fetchone())
        return None if rec is None else CheckpointRow(*rec)

    def _list_checkpoints(self, state_id: str) -> list[CheckpointRow]:
        recs = self._run(lambda c: c.execute(self._q.list_checkpoints, [state_id]).fetchall())
        return [CheckpointRow(*rec) for rec in recs]

    def _delete_checkpoint(self, checkpoint_id: str) -> bool:
        cur = self._run(
            lambda c: c.execute(self._q.delete_checkpoint, [checkpoint_id]), writes=True
        )
        return cur.rowcount > 0

    # -- maintenance

    def _purge(self, limit: int, now: float) -> int:
        params = {"now": now, "limit": limit}
        rec = self._run(lambda c: c.execute(self._q.purge, params).fetchone(), writes=True)
        return int(rec[0]) if rec else 0

    def _prune(self, keep: int, limit: int, now: float) -> int:
        def work(conn: Conn) -> int:
            # Lock first, count second: the prune statement then sees every version committed
            # before the lock, so it never keeps fewer than ``keep``.
            with conn.transaction():
                params: dict[str, Any] = {"keep": keep, "limit": limit}
                params["ids"] = [r[0] for r in conn.execute(self._q.pick_overfull, params)]
                if not params["ids"]:
                    return 0
                rec = conn.execute(self._q.prune, params).fetchone()
                return int(rec[0]) if rec else 0

        return self._run(work, writes=True)

    def _counts(self, now: float) -> dict[str, int]:
        rec = self._run(lambda c: c.execute(self._q.counts, {"now": now}).fetchone())
        assert rec is not None
        names = ("states", "versions", "stored_bytes", "original_bytes", "checkpoints")
        return {name: int(value) for name, value in zip(names, rec, strict=True)}

    def _server_info(self) -> dict[str, Any]:
        params = {"schema": self.schema}
        rec = self._run(lambda c: c.execute(self._q.server_info, params).fetchone())
        assert rec is not None
        return {
            "postgres_info": {
                "server_version": rec[0],
                "database_size": rec[1],
                "connections": rec[2],
                "table_sizes": rec[3],
                "pool": self._pool.get_stats(),
            }
        }

    # -- test hooks: tests/corruption.py damages stored bytes through these, as a disk would

    def _test_read_frame(self, state_id: str, version: int) -> bytes:
        key = {"sid": state_id, "version": version}
        rec = self._run(lambda c: c.execute(self._q.frame, key).fetchone())
        if rec is None:
            raise KeyError((state_id, version))
        return bytes(rec[0])

    def _test_write_frame(self, state_id: str, version: int, frame: bytes) -> None:
        key = {"sid": state_id, "version": version, "payload": frame}
        self._run(lambda c: c.execute(self._q.set_frame, key), writes=True)

    # -- lifecycle

    def close(self) -> None:
        self._pool.close()

    def describe(self) -> str:
        try:
            info = conninfo_to_dict(self.dsn)
        except psycopg.Error:
            return f"postgresql://?schema={self.schema}"
        user = f"{info['user']}@" if info.get("user") else ""
        port = f":{info['port']}" if info.get("port") else ""
        return (
            f"postgresql://{user}{info.get('host', '')}{port}/{info.get('dbname', '')}"
            f"?schema={self.schema}"
        )


class _Queries:
    """The module's SQL with the schema's quoted name filled in, rendered once per store."""

    def __init__(self, schema: str) -> None:
        self._schema = sql.Identifier(schema)
        render = self.__call__
        self.revive, self.save, self.trim = render(_REVIVE), render(_SAVE), render(_TRIM)
        self.last_versions = render(_LAST_VERSIONS)
        self.read, self.read_many, self.versions = (
            render(_READ),
            render(_READ_MANY),
            render(_VERSIONS),
        )
        self.lock_live, self.delete_one = render(_LOCK_LIVE), render(_DELETE_ONE)
        self.new_latest, self.set_latest = render(_NEW_LATEST), render(_SET_LATEST)
        self.frame, self.set_frame = render(_FRAME), render(_SET_FRAME)
        self.delete_state_row = render(_DELETE_STATE_ROW)
        self.delete_versions = render(_DELETE_VERSIONS)
        self.delete_checkpoints = render(_DELETE_CHECKPOINTS)
        self.search_all = render(_SEARCH.replace("{tags}", _TAGS["all"]))
        self.search_any = render(_SEARCH.replace("{tags}", _TAGS["any"]))
        self.tag_counts = render(_TAG_COUNTS)
        self.put_checkpoint, self.get_checkpoint = (
            render(_PUT_CHECKPOINT),
            render(_GET_CHECKPOINT),
        )
        self.list_checkpoints = render(_LIST_CHECKPOINTS)
        self.delete_checkpoint = render(_DELETE_CHECKPOINT)
        self.purge, self.pick_overfull, self.prune = (
            render(_PURGE),
            render(_PICK_OVERFULL),
            render(_PRUNE),
        )
        self.counts, self.server_info = render(_COUNTS), render(_SERVER_INFO)

    def __call__(self, text: str) -> str:
        return sql.SQL(text).format(schema=self._schema).as_string(None)


def _translate(exc: psycopg.Error, *, outcome_unknown: bool = False) -> PersistenceError:
    """The one place psycopg errors become statehub errors."""
    if outcome_unknown:
        return OutcomeUnknownError(
            f"the connection to PostgreSQL was lost after the write was sent ({exc}); "
            "retry with the same write_id"
        )
    if isinstance(exc, psycopg.OperationalError):  # includes PoolTimeout and terminations
        return BackendUnavailableError(f"PostgreSQL is unavailable: {exc}")
    return PersistenceError(f"PostgreSQL error: {exc}")


def _pipeline(
    conn: Conn, statements: Sequence[tuple[str, dict[str, Any]]]
) -> list[psycopg.Cursor[Any]]:
    """Send the statements in one round trip; they commit together at the pipeline's Sync or,
    when one fails, not at all. Raises the first statement error, not the "aborted" ones."""
    cursors = []
    failed: psycopg.Error | None = None
    try:
        with conn.pipeline():
            try:
                for query, params in statements:
                    cursors.append(conn.execute(query, params, prepare=True))
            except psycopg.Error as exc:  # an earlier statement's error, seen while sending
                failed = exc
    except psycopg.Error as exc:
        failed = failed or exc
    if failed is not None:
        raise failed
    return cursors


def _closed_by_server(conn: Conn) -> bool:
    if conn.closed:
        return True
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _save_params(request: WriteRequest, now: float) -> dict[str, Any]:
    row = request.row
    return {
        "sid": row.state_id,
        "version": row.version,
        "now": now,
        "created_at": row.created_at,
        "updated_at": _micros(row.created_at),
        "expires_at": row.expires_at,
        "payload": row.frame,
        "size": row.size_bytes,
        "orig": row.original_size,
        "compression": row.compression,
        "checksum": row.checksum,
        # A new state inherits no tags; an existing one keeps its own (see _SAVE).
        "tags": [] if request.inherit_tags else list(row.tags),
        "inherit": request.inherit_tags,
        "ttl": row.ttl_seconds,
        "metadata": row.metadata,
        "write_id": row.write_id,
        "skip": (request.keep or 1) - 1,
    }


def _saved_row(request: WriteRequest, rec: tuple[Any, ...]) -> VersionRow:
    row = request.row
    version, tags = rec[0], tuple(rec[1])
    if rec[2] is None:  # written now
        return VersionRow(
            row.state_id,
            version,
            row.created_at,
            row.frame,
            row.size_bytes,
            row.original_size,
            row.compression,
            row.checksum,
            tags,
            row.ttl_seconds,
            row.expires_at,
            row.metadata,
            row.write_id,
        )
    # A retry of a write_id already stored: the first attempt's version, as it was saved.
    return VersionRow(
        row.state_id,
        version,
        rec[2],
        b"",
        rec[3],
        rec[4],
        rec[5],
        rec[6],
        tags,
        rec[7],
        rec[8],
        rec[9],
        row.write_id,
    )


def _version_row(rec: tuple[Any, ...]) -> VersionRow:
    return VersionRow(
        rec[0],
        rec[1],
        rec[2],
        rec[3],
        rec[4],
        rec[5],
        rec[6],
        rec[7],
        tuple(rec[8]),
        rec[9],
        rec[10],
        rec[11],
        rec[12],
    )


def _summary(rec: tuple[Any, ...]) -> StateSummary:
    expires_at = None if rec[8] is None else datetime.fromtimestamp(rec[8], tz=UTC)
    return StateSummary(
        state_id=rec[0],
        latest_version=rec[1],
        version_count=rec[2],
        updated_at=datetime.fromtimestamp(rec[3], tz=UTC),
        size_bytes=rec[4],
        original_size=rec[5],
        compression_type=CompressionType(rec[6]),
        tags=tuple(rec[7]),
        expires_at=expires_at,
    )


def _micros(timestamp: float) -> float:
    """The timestamp as StateSummary.updated_at gives it back (whole microseconds), so a page
    cursor built from a summary compares equal to the stored sort key."""
    return datetime.fromtimestamp(timestamp, tz=UTC).timestamp()


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _prefix_end(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (code-point order),
    or None when there is none."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:  # surrogates cannot be stored: skip over them
            code = 0xE000
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None


__all__ = ["MIGRATIONS", "PostgresStatePersistence"]
