"""The PostgreSQL store's connections: a psycopg pool, and the translation of its errors.

The pool is shared by threads and renewed in a forked child; a ping tells a busy pool from a
server that is down; ``translate`` is the one place psycopg errors become statehub errors, and
the helpers below run statements the way the store needs (a pipeline, a whole-table read).
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.adapt import AdaptersMap
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.numeric import Int8BinaryDumper, Int8Dumper
from psycopg_pool import ConnectionPool, PoolTimeout

from persistence.errors import BackendUnavailableError, OutcomeUnknownError, PersistenceError

T = TypeVar("T")

# A forked child must not use its parent's pool: one server session would carry two
# conversations, each process reading the other's replies, and the pool's threads do not exist
# in the child. Each store opens a new pool on its first call in a child (``Connections._get``)
# and keeps the parent's here for good, never closed: closing a connection sends the server a
# Terminate message, which would end the parent's session (psycopg itself frees a forked copy
# without one).
_INHERITED: list[ConnectionPool[Any]] = []
_repool_lock = threading.Lock()


def _after_fork() -> None:
    global _repool_lock
    _repool_lock = threading.Lock()  # a parent's thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork)


class Conn(psycopg.Connection[Any]):
    """A pooled connection that keeps one cursor for the calls a store makes most: a save of one
    state and a read. ``Connection.execute`` builds a new cursor on every call (its adapters
    and loaders with it), some 20 µs, as much as a tenth of a whole save on a local server.
    Only one thread uses a pooled connection at a time, and each of those calls reads its
    result before the cursor is used again, so one cursor serves them all."""

    _hot: psycopg.Cursor[Any] | None = None

    def hot(self) -> psycopg.Cursor[Any]:
        if self._hot is None:
            self._hot = self.cursor()
        return self._hot


# Every Python int goes out as a bigint: psycopg would otherwise pick int2/int4/int8 by value,
# and each combination of parameter types is a prepared statement (and a Parse) of its own.
ADAPTERS = AdaptersMap(psycopg.adapters)
ADAPTERS.register_dumper(int, Int8Dumper)
ADAPTERS.register_dumper(int, Int8BinaryDumper)

READ_COMMITTED = "SET default_transaction_isolation = 'read committed'"


class Connections:
    """A store's pool of ``Conn``, opened at once; ``run`` is how the store uses it."""

    def __init__(
        self,
        dsn: str,
        connect_args: dict[str, Any],
        *,
        min_size: int,
        max_size: int,
        timeout: float,
        connect_timeout: int,
        closed_error: Callable[[], Exception],
    ) -> None:
        self._dsn = dsn
        self._timeout = timeout
        self._closed_error = closed_error
        self._ping_conninfo = make_conninfo(dsn, connect_timeout=connect_timeout).encode()
        self._pinged_at, self._answers = -math.inf, True
        self._pool_options: dict[str, Any] = {
            "kwargs": connect_args,
            "min_size": min_size,
            "max_size": max_size,
            "timeout": timeout,
            "name": connect_args["application_name"],
        }
        self._pid = os.getpid()
        self._ping_lock = threading.Lock()
        self.pool = self._new_pool()
        try:
            self.pool.open(wait=True, timeout=max(connect_timeout, 1) * 2)
        except psycopg.Error as exc:
            self.pool.close()
            raise translate(exc) from exc

    def _new_pool(self) -> ConnectionPool[Conn]:
        return ConnectionPool(
            self._dsn,
            **self._pool_options,
            connection_class=Conn,
            configure=_configure_session,
            open=False,
        )

    def run(self, work: Callable[[Conn], T], *, writes: bool = False) -> T:
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
                    raise translate(exc, outcome_unknown=lost and writes) from exc
        raise AssertionError("unreachable")

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        try:
            conn = self._get()
            # A connection the server closed while it sat in the pool (a restart,
            # pg_terminate_backend) has something to read: replace it before sending anything.
            while _closed_by_server(conn):
                conn.close()
                self.pool.putconn(conn)
                conn = self._get()
        except psycopg.Error as exc:
            raise translate(exc) from exc
        try:
            yield conn
        finally:
            self.pool.putconn(conn)

    def _get(self) -> Conn:
        """A pooled connection, waiting up to the pool's timeout for one, but not for a server
        that is down: the pool would keep retrying in the background and each call would
        wait the whole timeout. After a second without a connection, a ping (as pg_isready's:
        no login) tells a busy pool (wait on) from a server that does not answer (fail now)."""
        if self._pid != os.getpid():
            self._repool_after_fork()
        if self.pool.closed:
            raise self._closed_error()
        try:
            return self.pool.getconn(timeout=min(1.0, self._timeout))
        except PoolTimeout:
            if self._timeout <= 1.0:
                raise
        if not self.server_answers():
            raise psycopg.OperationalError("the server does not answer (pinged as pg_isready)")
        return self.pool.getconn(timeout=self._timeout - 1.0)

    def _repool_after_fork(self, *, reopen: bool = True) -> None:
        """In a forked child: set the parent's pool aside (``_INHERITED``) for a new one, open
        if ``reopen`` and the store was not closed. The new pool is opened before it is put in
        place, and the pid recorded last: a thread that sees this process's pid sees its pool."""
        with _repool_lock:
            if self._pid == os.getpid():  # not a child, or another thread got there first
                return
            pool = self._new_pool()
            if reopen and not self.pool.closed:
                pool.open(wait=False)  # its first getconn waits for a connection
            _INHERITED.append(self.pool)
            self.pool = pool
            self._ping_lock = threading.Lock()  # a parent's thread may have held it at the fork
            self._pid = os.getpid()

    def server_answers(self) -> bool:
        """Whether the server accepts connections; one ping at a time, and its answer serves
        every call that asks within a second (many calls may be waiting for a busy pool)."""
        with self._ping_lock:
            if time.monotonic() - self._pinged_at > 1.0:
                ping = pq.PGconn.ping(self._ping_conninfo)
                # A server that is full, or refuses this role, still answers OK: it is up.
                self._answers = ping == pq.Ping.OK
                self._pinged_at = time.monotonic()
            return self._answers

    def close(self) -> None:
        self._repool_after_fork(reopen=False)  # in a child: leave the parent's pool be
        self.pool.close()


def translate(exc: psycopg.Error, *, outcome_unknown: bool = False) -> PersistenceError:
    """The one place psycopg errors become statehub errors."""
    # The server's own message, without the CONTEXT lines that quote the whole statement
    # (an error inside the save function would carry its several KB of SQL).
    text = exc.diag.message_primary or str(exc)
    if outcome_unknown:
        return OutcomeUnknownError(
            f"the connection to PostgreSQL was lost after the write was sent ({text}); "
            "retry with the same write_id"
        )
    if isinstance(exc, psycopg.OperationalError):  # includes PoolTimeout and terminations
        return BackendUnavailableError(f"PostgreSQL is unavailable: {text}")
    return PersistenceError(f"PostgreSQL error: {text}")


def pipeline(
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


def _configure_session(conn: Conn) -> None:
    """Set a new pooled session to READ COMMITTED, with sequential scans off.

    The save function needs each of its statements to take a fresh snapshot, which READ
    COMMITTED gives; a server or role whose default isolation is REPEATABLE READ or SERIALIZABLE
    would make concurrent saves of one state fail instead of wait.

    Every statement of the hot path finds its rows by an index. A prepared statement's
    generic plan is made once per session, from the table's size at that moment: made on a
    new, nearly empty table it would scan it, and keep scanning as it grows to millions of
    rows (until an ANALYZE, which a server without autovacuum never runs). Disabling
    sequential scans keeps those plans on the indexes; reads of whole tables
    (whole_table, pruning) turn them back on for their own transaction. A SET rather than
    a startup option, so the DSN's and PGOPTIONS' own options stand and PgBouncer, which
    refuses unknown startup parameters, accepts the connection. (In PgBouncer's transaction
    pooling a session's SETs do not stick: use session pooling or connect directly.)"""
    conn.execute(READ_COMMITTED + "; SET enable_seqscan = off")


def seq_scans_allowed(conn: Conn) -> None:
    conn.execute("SET LOCAL enable_seqscan = on")


def whole_table(conn: Conn, query: str, params: dict[str, Any]) -> list[Any]:
    """Run a read of a whole table (counts, tag counts) with sequential scans allowed."""
    with conn.transaction():
        seq_scans_allowed(conn)
        return conn.execute(query, params).fetchall()


def _closed_by_server(conn: Conn) -> bool:
    if conn.closed:
        return True
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


_SSLMODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


def check_dsn(dsn: Any) -> None:
    """Refuse a DSN that cannot work as a ValueError naming the mistake, before connecting: as
    a connection error (a ConnectionError) a typo would look like a server that is down, and
    code that falls back to another store on ConnectionError would take it for one."""
    if not isinstance(dsn, str):
        raise TypeError(f"dsn must be a str, not {type(dsn).__name__}")
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"invalid PostgreSQL DSN: {str(exc).strip()}") from exc
    for port in str(params.get("port") or "").split(","):  # libpq takes one port per host
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"invalid PostgreSQL DSN: port {port!r} is not a port number")
    sslmode = params.get("sslmode")
    if sslmode is not None and sslmode not in _SSLMODES:
        valid = ", ".join(sorted(_SSLMODES))
        raise ValueError(f"invalid PostgreSQL DSN: sslmode {sslmode!r} is not one of {valid}")
