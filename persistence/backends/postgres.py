"""PostgreSQL backend: psycopg 3 through a connection pool, a save in one round trip.

Layout (in the store's own schema, created and migrated by the store; the statements are in
``postgres_sql``): ``states`` holds one row per state with its counters and every figure of its
latest version but the payload, so listings and tag searches read only it; ``versions`` holds
every kept version; ``checkpoints`` the snapshots. State ids use the "C" collation, so the
primary key serves prefix ranges and sorts in Python's code-point order.

A save is one call of a PL/pgSQL function (``SAVE_FUNCTION``: one statement, one round trip,
one implicit transaction); ``save_many`` pipelines one call per state. Inside it:

1. when the store prunes, lock the states row first (``LOCK``, a ``SELECT ... FOR UPDATE``
   that also finds the oldest version to keep): from then on no other writer changes the
   state's versions until this transaction ends;
2. ``REVIVE``: if the state has expired, drop its old versions (it restarts); otherwise,
   for a ``write_id`` the state already holds, return that version (``DUPLICATE``) and stop;
3. ``PRETRIM``: when the state already holds ``keep`` versions, drop the oldest beforehand, so
   that the upsert writes the states row once, with the final counters;
4. ``UPSERT`` the states row - the row lock serialises writers of one state and the
   ``ON CONFLICT ... WHERE`` refuses a stale explicit version - and ``INSERT_VERSION``;
5. ``TRIM``: only if the state still holds more than ``keep`` (two first saves of a state
   racing, with no row to lock before, or the other rare cases named at ``TRIM``), drop the
   extra versions.

Each is a statement of its own because under READ COMMITTED each statement sees the versions
committed before it, while one statement would only see those committed before it started (a
writer it waited for would be missed). Small statements also cost the server less to start
than one statement of several CTEs.

A refused upsert returns no row and the function raises a not-null violation on ``version``
(what a NULL version would raise): the database aborts the whole transaction, nothing is
written, and we report the ``VersionConflictError``. psycopg errors are translated in one place,
``postgres_connections.translate``.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict

from persistence import validation as check
from persistence.backends import postgres_sql as pg_sql
from persistence.backends import prefix_end
from persistence.backends.postgres_connections import (
    ADAPTERS,
    READ_COMMITTED,
    Conn,
    Connections,
    check_dsn,
    pipeline,
    seq_scans_allowed,
    translate,
    whole_table,
)
from persistence.backends.postgres_sql import MIGRATIONS
from persistence.errors import BackendUnavailableError, VersionConflictError
from persistence.store import (
    CheckpointRow,
    ReadResult,
    StatePersistence,
    VersionRow,
    WriteRequest,
)
from persistence.types import CompressionType, StateSummary, from_timestamp, to_micros

# How many states of the listing a tag-filtered page walks before it asks the GIN index instead
# (see TAG_PAGE): a tag on more than 51 / _TAG_WALK of the states fills a page within the walk.
_TAG_WALK = 8000

# NEW_LATEST's columns, as SET_LATEST names them.
_LATEST_FIGURES = (
    "version",
    "created_at",
    "tags",
    "new_size",
    "new_orig",
    "compression",
    "checksum",
    "ttl",
    "metadata",
    "write_id",
)


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
        connect_timeout: float = 5,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not isinstance(schema, str) or not 1 <= len(schema.encode()) <= 63:
            raise ValueError(f"schema must be a name of 1 to 63 bytes (got {schema!r})")
        check_dsn(dsn)
        max_size = check.int_between(max_size, "max_size", 1, 10_000)
        min_size = check.int_between(min_size, "min_size", 0, max_size)
        pool_timeout = check.seconds(pool_timeout, "pool_timeout")
        # 0 is psycopg's own default (130 s), as in libpq's URL; libpq reads whole seconds.
        connect_timeout = math.ceil(
            check.seconds(connect_timeout, "connect_timeout", zero_allowed=True)
        )
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
            "context": ADAPTERS,
        }
        try:
            # A direct connection fails fast when the server is down; the pool would retry.
            with Conn.connect(dsn, **connect_args) as conn:
                self._migrate(conn)
        except psycopg.Error as exc:
            raise translate(exc) from exc
        self._conns = Connections(
            dsn,
            connect_args,
            min_size=min_size,
            max_size=max_size,
            timeout=pool_timeout,
            connect_timeout=connect_timeout,
            closed_error=self._closed_error_factory(),
        )

    def _migrate(self, conn: Conn) -> None:
        # The advisory lock makes concurrent starters take turns; the second sees the work done,
        # but only under READ COMMITTED: under REPEATABLE READ its snapshot would date from
        # before it waited for the lock, and it would create the tables again.
        conn.execute(READ_COMMITTED)
        key = setup_lock_key(self.schema)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [key])
            for statement in pg_sql.SETUP:
                conn.execute(self._q(statement))
            row = conn.execute(self._q(pg_sql.SCHEMA_VERSION)).fetchone()
            current = row[0] if row else 0
            for version, statements in MIGRATIONS:
                if version > current:
                    for statement in statements:
                        conn.execute(self._q(statement))
                    conn.execute(self._q(pg_sql.RECORD_VERSION), [version])
            if not conn.execute(pg_sql.FUNCTION_EXISTS, [self.schema, self._q.save_name]).rowcount:
                conn.execute(self._q.save_function)

    # -- writes

    def _write(self, requests: Sequence[WriteRequest], now: float) -> list[VersionRow]:
        for attempt in range(3):
            try:
                return self._conns.run(lambda conn: self._save(conn, requests, now), writes=True)
            except _Retry:
                if attempt == 2:
                    raise BackendUnavailableError(
                        "PostgreSQL kept aborting the save (lost races); nothing was written"
                    ) from None
        raise AssertionError("unreachable")

    def _save(self, conn: Conn, requests: Sequence[WriteRequest], now: float) -> list[VersionRow]:
        calls = [(self._q.save, _save_params(request, now)) for request in requests]
        try:
            if len(calls) == 1:  # one statement is a transaction of its own: no pipeline
                cursors = [conn.hot().execute(*calls[0], prepare=True)]
            else:
                cursors = pipeline(conn, calls)
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
        except psycopg.OperationalError as exc:
            # Class 40: a deadlock or serialization failure rolled the transaction back; psycopg
            # files those under OperationalError (not TransactionRollback, which is 40000 only).
            if (exc.sqlstate or "").startswith("40"):
                raise _Retry from exc
            raise
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
        versions (the refused save changed nothing)."""
        ids = list({r.state_id for r in requests})
        last = dict(conn.execute(self._q.last_versions, {"ids": ids, "now": now}).fetchall())
        for request in requests:
            sid, wanted = request.state_id, request.row.version
            if wanted and wanted <= last.get(sid, 0):
                return VersionConflictError(sid, wanted, last.get(sid, 0))
            last[sid] = wanted or last.get(sid, 0) + 1
        first = next((r for r in requests if r.row.version), requests[0])
        return VersionConflictError(first.state_id, first.row.version, last.get(first.state_id, 0))

    def _delete_version(self, state_id: str, version: int, now: float) -> bool:
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
                figures = {**key, "size": gone[0], "orig": gone[1]}
                figures.update(zip(_LATEST_FIGURES, latest, strict=True))
                # Rounded: versions written before the store rounded write times are not.
                conn.execute(q.set_latest, {**figures, "updated_at": to_micros(latest[1])})
                return True

        return self._conns.run(work, writes=True)

    def _delete_state(self, state_id: str, now: float) -> bool:
        def work(conn: Conn) -> bool:
            # The states row first, as every writer locks it first: no deadlock between them.
            key = {"sid": state_id}
            found, _, _ = pipeline(
                conn,
                [
                    (self._q.delete_state_row, key),
                    (self._q.delete_versions, key),
                    (self._q.delete_checkpoints, key),
                ],
            )
            row = found.fetchone()  # an expired state is removed too, but did not exist
            return row is not None and (row[0] is None or row[0] > now)

        return self._conns.run(work, writes=True)

    # -- reads

    def _read(self, state_id: str, version: int | None, now: float) -> ReadResult:
        params = {"sid": state_id, "version": version, "now": now}
        # Binary results: the payload arrives as it is stored instead of as hex text.
        rec = self._conns.run(
            lambda c: c.hot().execute(self._q.read, params, prepare=True, binary=True).fetchone()
        )
        if rec is None:
            return ReadResult(None)
        return ReadResult(None if rec[1] is None else _version_row(rec), rec[-1])

    def _read_many(self, state_ids: Sequence[str], now: float) -> dict[str, VersionRow]:
        params = {"ids": list(state_ids), "now": now}
        recs = self._conns.run(
            lambda c: c.execute(self._q.read_many, params, binary=True).fetchall()
        )
        return {rec[0]: _version_row(rec) for rec in recs}

    def _versions(self, state_id: str, now: float) -> list[VersionRow]:
        params = {"sid": state_id, "now": now}
        recs = self._conns.run(lambda c: c.execute(self._q.versions, params).fetchall())
        return [_version_row(rec) for rec in recs]

    def _list_ids(self, prefix: str | None, after: str | None, limit: int, now: float) -> list[str]:
        query, params = self._listing(pg_sql.LIST_IDS, prefix, (), "all", "id", after, limit, now)
        recs = self._conns.run(lambda c: c.execute(query, params).fetchall())
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
        query, params = self._listing(
            pg_sql.SUMMARY, prefix, tags, match, order, cursor, limit, now
        )
        if after is not None and "updated" in order:  # the base class checked it: a float
            params["after_key"] = after[0]
        # A tag or prefix filter is planned for its values, never by a generic prepared plan:
        # a rare tag wants its GIN bitmap and a sort, a common one a walk of the ordered index.
        prepare = False if tags or prefix is not None else None
        recs = self._conns.run(lambda c: c.execute(query, params, prepare=prepare).fetchall())
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
        params["budget"] = _TAG_WALK
        high = None
        if prefix is not None:
            params["low"], params["pattern"] = prefix, _like_prefix(prefix)
            params["high"] = high = prefix_end(prefix)
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
            by, keyset = pg_sql.ORDERS[order]
            text = base + (pg_sql.PREFIX if prefix is not None else "")
            text += pg_sql.PREFIX_HIGH if high is not None else ""
            text += keyset if after is not None else ""
            if tags:
                text = pg_sql.TAG_PAGE.replace("{listing}", text).replace("{by}", by)
                text = text.replace("{tags}", pg_sql.TAGS[match])
            else:
                text += f" ORDER BY {by} LIMIT %(limit)s"
            query = self._page_sql[key] = self._q(text)
        return query, params

    def _search(
        self, tags: tuple[str, ...], match: str, limit: int, now: float
    ) -> list[VersionRow]:
        query = self._q.search_all if match == "all" else self._q.search_any
        params = {"tags": list(tags), "limit": limit, "now": now}
        # Not prepared: a plan made for these tags can use their statistics (GIN or not).
        recs = self._conns.run(
            lambda c: c.execute(query, params, prepare=False, binary=True).fetchall()
        )
        return [_latest_row(rec) for rec in recs]

    def _tag_counts(self, limit: int, now: float) -> list[tuple[str, int]]:
        recs = self._conns.run(lambda c: whole_table(c, self._q.tag_counts, {"limit": limit}))
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
        self._conns.run(lambda c: c.execute(self._q.put_checkpoint, values), writes=True)

    def _get_checkpoint(self, checkpoint_id: str) -> CheckpointRow | None:
        rec = self._conns.run(
            lambda c: c.execute(self._q.get_checkpoint, [checkpoint_id]).fetchone()
        )
        return None if rec is None else CheckpointRow(*rec)

    def _list_checkpoints(self, state_id: str) -> list[CheckpointRow]:
        recs = self._conns.run(lambda c: c.execute(self._q.list_checkpoints, [state_id]).fetchall())
        return [CheckpointRow(*rec) for rec in recs]

    def _delete_checkpoint(self, checkpoint_id: str) -> bool:
        cur = self._conns.run(
            lambda c: c.execute(self._q.delete_checkpoint, [checkpoint_id]), writes=True
        )
        return cur.rowcount > 0

    # -- maintenance

    def _purge(self, limit: int, now: float) -> int:
        params = {"now": now, "limit": limit}
        rec = self._conns.run(lambda c: c.execute(self._q.purge, params).fetchone(), writes=True)
        return int(rec[0]) if rec else 0

    def _prune(self, keep: int, limit: int, now: float) -> int:
        def work(conn: Conn) -> int:
            # Lock first, count second: the prune statement then sees every version committed
            # before the lock, so it never keeps fewer than ``keep``.
            with conn.transaction():
                seq_scans_allowed(conn)  # picking overfull states reads the whole table
                params: dict[str, Any] = {"keep": keep, "limit": limit}
                params["ids"] = [r[0] for r in conn.execute(self._q.pick_overfull, params)]
                if not params["ids"]:
                    return 0
                rec = conn.execute(self._q.prune, params).fetchone()
                return int(rec[0]) if rec else 0

        return self._conns.run(work, writes=True)

    def _counts(self, now: float) -> dict[str, int]:
        (rec,) = self._conns.run(lambda c: whole_table(c, self._q.counts, {"now": now}))
        names = ("states", "versions", "stored_bytes", "original_bytes", "checkpoints")
        return {name: int(value) for name, value in zip(names, rec, strict=True)}

    def _server_info(self) -> dict[str, Any]:
        params = {"schema": self.schema}
        rec = self._conns.run(lambda c: c.execute(self._q.server_info, params).fetchone())
        assert rec is not None
        return {
            "postgres_info": {
                "server_version": rec[0],
                "database_size": rec[1],
                "connections": rec[2],
                "table_sizes": rec[3],
                "pool": self._conns.pool.get_stats(),
            }
        }

    # -- lifecycle

    def close(self) -> None:
        self._conns.close()

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


def setup_lock_key(schema: str) -> int:
    """The advisory lock key under which stores set up (create or migrate) ``schema``."""
    return int.from_bytes(
        hashlib.sha256(f"statehub:{schema}".encode()).digest()[:8], "big", signed=True
    )


class _Queries:
    """The statements of ``postgres_sql`` with the schema's quoted name filled in, once."""

    def __init__(self, schema: str) -> None:
        self._schema = sql.Identifier(schema)
        render = self.__call__
        # Named after its text and the schema it names: a changed function, or the same in a
        # renamed schema, is a new one, created next to the old. The digest also makes the
        # body's dollar-quote tag, which a schema name cannot contain by accident.
        digest = hashlib.sha256(f"{schema}\0{pg_sql.SAVE_FUNCTION}".encode()).hexdigest()[:16]
        self.save_name = f"save_{digest}"
        name = sql.Identifier(self.save_name)
        self.save_function = self(pg_sql.SAVE_FUNCTION, name=name, tag=sql.SQL(f"$s_{digest}$"))
        self.save = self(pg_sql.SAVE_CALL, name=name)
        self.last_versions = render(pg_sql.LAST_VERSIONS)
        self.read, self.read_many = render(pg_sql.READ), render(pg_sql.READ_MANY)
        self.versions = render(pg_sql.VERSIONS)
        self.lock_live, self.delete_one = render(pg_sql.LOCK_LIVE), render(pg_sql.DELETE_ONE)
        self.new_latest, self.set_latest = render(pg_sql.NEW_LATEST), render(pg_sql.SET_LATEST)
        self.delete_state_row = render(pg_sql.DELETE_STATE_ROW)
        self.delete_versions = render(pg_sql.DELETE_VERSIONS)
        self.delete_checkpoints = render(pg_sql.DELETE_CHECKPOINTS)
        self.search_all = render(pg_sql.SEARCH.replace("{tags}", pg_sql.TAGS["all"]))
        self.search_any = render(pg_sql.SEARCH.replace("{tags}", pg_sql.TAGS["any"]))
        self.tag_counts = render(pg_sql.TAG_COUNTS)
        self.put_checkpoint = render(pg_sql.PUT_CHECKPOINT)
        self.get_checkpoint = render(pg_sql.GET_CHECKPOINT)
        self.list_checkpoints = render(pg_sql.LIST_CHECKPOINTS)
        self.delete_checkpoint = render(pg_sql.DELETE_CHECKPOINT)
        self.purge, self.prune = render(pg_sql.PURGE), render(pg_sql.PRUNE)
        self.pick_overfull = render(pg_sql.PICK_OVERFULL)
        self.counts, self.server_info = render(pg_sql.COUNTS), render(pg_sql.SERVER_INFO)

    def __call__(self, text: str, **parts: sql.Composable) -> str:
        return sql.SQL(text).format(schema=self._schema, **parts).as_string(None)


def _save_params(request: WriteRequest, now: float) -> dict[str, Any]:
    row = request.row
    return {
        "sid": row.state_id,
        "version": row.version,
        "now": now,
        "created_at": row.created_at,
        "updated_at": row.created_at,
        "expires_at": row.expires_at,
        "payload": row.frame,
        "size": row.size_bytes,
        "orig": row.original_size,
        "compression": row.compression,
        "checksum": row.checksum,
        # A new state inherits no tags; an existing one keeps its own (see UPSERT).
        "tags": "" if request.inherit_tags else "\x1f".join(row.tags),
        "inherit": request.inherit_tags,
        "ttl": row.ttl_seconds,
        "metadata": row.metadata,
        "write_id": row.write_id,
        "skip": None if request.keep is None else request.keep - 1,
    }


def _saved_row(request: WriteRequest, rec: tuple[Any, ...]) -> VersionRow:
    row = request.row
    version, tags = rec[0], tuple(rec[1])
    if rec[2] is None:  # written now: complete the request's own row
        row.version, row.tags = version, tags
        return row
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


def _latest_row(rec: tuple[Any, ...]) -> VersionRow:
    """A VersionRow without its frame from a states row (postgres_sql._LATEST_ROW)."""
    sid, version, created, size, orig, comp, checksum, tags, ttl, exp, meta, wid = rec
    return VersionRow(
        sid, version, created, b"", size, orig, comp, checksum, tuple(tags), ttl, exp, meta, wid
    )


def _summary(rec: tuple[Any, ...]) -> StateSummary:
    return StateSummary(
        state_id=rec[0],
        latest_version=rec[1],
        version_count=rec[2],
        updated_at=datetime.fromtimestamp(rec[3], tz=UTC),
        size_bytes=rec[4],
        original_size=rec[5],
        compression_type=CompressionType(rec[6]),
        tags=tuple(rec[7]),
        expires_at=from_timestamp(rec[8]),
    )


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


__all__ = ["MIGRATIONS", "PostgresStatePersistence"]
