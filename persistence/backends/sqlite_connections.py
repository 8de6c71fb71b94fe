"""The SQLite store's connections: one per thread, and the translation of sqlite3's errors.

Each thread's connection to the file is closed when its thread ends and never crosses a fork;
``transaction`` is BEGIN IMMEDIATE, retried while another process holds the write lock, and
``translate`` the one place sqlite3 errors become statehub errors.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from persistence.errors import BackendUnavailableError, PersistenceError, StateIntegrityError

_LOCKED_RETRY_SECONDS = 120.0


def _after_fork() -> None:
    # A parent's thread may have held a store's list lock at the fork (opening or dropping its
    # connection): in the child it would stay held, and the first call there would hang.
    for conns in list(_EVERY):
        conns._all_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


class Connections:
    """This file's connections, one per thread. A call holds its thread's connection from
    ``acquire`` to ``release``: ``close`` waits for it, because closing a connection while
    another thread runs a statement on it crashes the process."""

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float,
        synchronous: str,
        closed_error: Callable[[], Exception],
    ) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._closed_error = closed_error
        self._local = threading.local()
        self._all: list[tuple[sqlite3.Connection, threading.RLock, int]] = []
        self._all_lock = threading.Lock()
        self._closed = False
        _EVERY.add(self)

    def acquire(self) -> sqlite3.Connection:
        """This thread's connection, held until ``release``."""
        conn, busy = self._local_conn()
        busy.acquire()
        if self._closed:
            busy.release()
            raise self._closed_error()
        return conn

    def release(self) -> None:
        self._local.held.busy.release()

    def _local_conn(self) -> tuple[sqlite3.Connection, threading.RLock]:
        if self._closed:
            raise self._closed_error()
        held: _Held | None = getattr(self._local, "held", None)
        # A connection must not cross a fork: the child opens its own.
        if held is None or held.pid != os.getpid():
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                conn.execute("PRAGMA foreign_keys = OFF")
                conn.execute("PRAGMA wal_autocheckpoint = 8000")
                conn.execute("PRAGMA cache_size = -65536")
                conn.execute("PRAGMA mmap_size = 268435456")
            except sqlite3.Error as exc:
                error = translate(exc, self.path)
                if not isinstance(error, StateIntegrityError):  # a damaged first page is that
                    error = BackendUnavailableError(f"cannot open SQLite file {self.path}: {exc}")
                raise error from exc
            busy = threading.RLock()  # re-entrant: a query may run inside a transaction
            entry = (conn, busy, os.getpid())
            with self._all_lock:
                if self._closed:  # closed while this one opened: close() cannot see it
                    conn.close()
                    raise self._closed_error()
                self._all.append(entry)
            held = self._local.held = _Held(*entry)
            # The thread's locals go when it ends, and this with them: a server that starts a
            # thread per request (runserver) would otherwise keep one open file per request.
            weakref.finalize(held, self._drop, entry)
        return held.conn, held.busy

    def transaction(self) -> _Transaction:
        """BEGIN IMMEDIATE ... COMMIT, retried while another process holds the write lock."""
        return _Transaction(self)

    def query(self, sql: str, params: Any = ()) -> list[Any]:
        conn = self.acquire()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc
        finally:
            self.release()

    def _drop(self, entry: tuple[sqlite3.Connection, threading.RLock, int]) -> None:
        """Close the connection of a thread that ended, unless close() has taken it already.
        The list and its lock are read now, not when the thread opened it: close() replaces
        the list, and a fork the lock."""
        with self._all_lock:
            if entry not in self._all:
                return
            self._all.remove(entry)
        conn, busy, pid = entry
        if pid == os.getpid() and busy.acquire(blocking=False):  # died mid-call: leave it
            try:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            finally:
                busy.release()

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            opened, self._all = self._all, []
        for conn, busy, pid in opened:
            if pid != os.getpid():
                continue  # the parent's, copied by a fork: its lock may be held for ever here
            with busy, contextlib.suppress(sqlite3.ProgrammingError):  # already closed: fine
                conn.close()


_EVERY: weakref.WeakSet[Connections] = weakref.WeakSet()


# SQLite's primary result codes for a file whose pages are not a valid database.
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def translate(exc: sqlite3.Error, path: str) -> PersistenceError:
    """The one place sqlite3 errors become statehub errors."""
    # Extended codes keep the primary in the low byte; errors the sqlite3 module raises itself
    # (a closed connection, a bad binding) carry none.
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _DAMAGED:
        return StateIntegrityError(f"SQLite file {path} is damaged: {exc}")
    if isinstance(exc, sqlite3.OperationalError):  # locked past the timeout, a full disk, I/O
        return BackendUnavailableError(f"SQLite {path}: {exc}")
    return PersistenceError(f"SQLite {path}: {exc}")


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class _Held:
    """One thread's connection, with the lock ``close`` waits on and the process it belongs to."""

    __slots__ = ("__weakref__", "busy", "conn", "pid")

    def __init__(self, conn: sqlite3.Connection, busy: threading.RLock, pid: int) -> None:
        self.conn, self.busy, self.pid = conn, busy, pid


class _Transaction:
    """``with connections.transaction() as conn``: BEGIN IMMEDIATE, then COMMIT or ROLLBACK.

    A class rather than @contextmanager because it wraps every save: the generator machinery
    cost more than the rest of the Python around the statements."""

    __slots__ = ("_conn", "_conns")

    def __init__(self, conns: Connections) -> None:
        self._conns = conns

    def __enter__(self) -> sqlite3.Connection:
        conn = self._conn = self._conns.acquire()
        try:  # around the whole loop: an interrupt may come in the sleep, inside the except
            deadline = time.monotonic() + _LOCKED_RETRY_SECONDS
            delay = 0.005
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return conn
                except sqlite3.Error as exc:
                    locked = isinstance(exc, sqlite3.OperationalError) and _is_locked(exc)
                    if not locked or time.monotonic() > deadline:
                        raise translate(exc, self._conns.path) from exc
                    time.sleep(delay)
                    delay = min(delay * 2, 0.2)
        except BaseException:
            # An interrupt raised as BEGIN returns (SQLite waited for the lock in C) leaves a
            # transaction open: end it, or this connection would hold the write lock for good.
            _rollback(conn)
            self._conns.release()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, error: BaseException | None, _: object
    ) -> None:
        try:
            if exc_type is None:
                try:
                    self._conn.execute("COMMIT")
                    return
                except sqlite3.Error as exc:
                    _rollback(self._conn)
                    raise translate(exc, self._conns.path) from exc
                except BaseException:
                    _rollback(self._conn)
                    raise
            _rollback(self._conn)
            if isinstance(error, sqlite3.Error):  # a full disk, an I/O error, a damaged file
                raise translate(error, self._conns.path) from error
        finally:
            self._conns.release()


def _rollback(conn: sqlite3.Connection) -> None:
    """ROLLBACK if a transaction is open; never in the way of the error that led here (SQLite
    may have rolled back by itself already: a full disk, an I/O error)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
