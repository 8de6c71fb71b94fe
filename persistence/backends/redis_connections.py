"""The Redis store's connections between calls, kept out of redis-py's pool."""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any, Protocol

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError


class PooledConnection(Protocol):
    """The calls of a pooled redis-py connection that ``_send`` uses (typed for mypy)."""

    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def can_read(self) -> bool: ...
    def should_reconnect(self) -> bool: ...
    def re_auth(self) -> None: ...
    def send_command(self, *args: Any) -> None: ...
    def send_packed_command(self, command: Any) -> None: ...
    def read_response(self) -> Any: ...


class IdleConnections:
    """Connections between two calls of the store's ``_send``, kept out of redis-py's pool.

    Checking a connection out of redis-py 8's pool and back costs 20-45 µs a call (a lock,
    metrics counters, two pid checks), as much as the Python of a whole save. Connections are
    taken from the pool once, so ``max_connections`` still bounds them, and then kept in a
    list: ``pop`` and ``append`` are atomic, so threads share it without a lock. Each checkout
    still does what the pool's would: it polls the socket, so a connection the server closed
    (a restart) or one left with an unread reply is reopened before anything is sent on it,
    and it honours redis-py's requests to reconnect (a maintenance notice) or to re-send a
    renewed credential. A forked child forgets its parent's connections (``_after_fork``).

    When ``max_connections`` are all in use, a call waits up to ``timeout`` seconds for one to
    come back (redis-py's own pool would fail at once with "Too many connections").
    """

    def __init__(self, pool: redis.ConnectionPool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conns: list[PooledConnection] = []
        self._returned = threading.Condition()
        self._waiting = 0
        _EVERY_IDLE.add(self)

    def get(self) -> PooledConnection:
        deadline = None
        while True:
            try:
                conn = self._conns.pop()
                break
            except IndexError:
                pass
            try:
                fresh: PooledConnection = self._pool.get_connection()  # connected and checked
                return fresh
            except RedisConnectionError as exc:
                if not pool_full(exc):
                    raise
                deadline = self.wait(deadline, exc)
        try:
            try:
                stale = conn.can_read() or conn.should_reconnect()
            except (RedisConnectionError, RedisTimeoutError, OSError):
                stale = True
            if stale:
                conn.disconnect()
            conn.connect()  # reconnects one that an error disconnected; else a no-op
            conn.re_auth()  # a no-op unless a credential provider renewed its token
        except BaseException:
            self._conns.append(conn)
            raise
        return conn

    def put(self, conn: PooledConnection) -> None:
        self._conns.append(conn)
        # Appended before `_waiting` is read, and a waiter counts itself before it looks at
        # the list: either the waiter sees this connection or this call sees the waiter.
        if self._waiting:
            with self._returned:
                self._returned.notify()

    def wait(self, deadline: float | None, exc: Exception) -> float:
        """Wait a moment for a connection to come back while every one the pool allows is in
        use; returns the deadline of the whole wait, which started with the first call."""
        now = time.monotonic()
        if deadline is None:
            deadline = now + self._timeout
        if now >= deadline:
            raise MaxConnectionsError(
                f"all {self._pool.max_connections} connections (max_connections) stayed "
                f"busy for {self._timeout:g} s"
            ) from exc
        with self._returned:
            self._waiting += 1
            try:
                if not self._conns:
                    # Bounded: a connection a pipeline hands back goes to redis-py's pool,
                    # which does not notify.
                    self._returned.wait(min(0.05, deadline - now))
            finally:
                self._waiting -= 1
        return deadline

    def release_all(self) -> None:
        """Hand the idle connections back to the pool, which counts them as in use until then.

        Calls that go through redis-py's pool (pipelines, INFO) do this first, so connections
        idle here never exhaust a small ``max_connections``.
        """
        while True:
            try:  # one pop at a time: another thread may be putting one back meanwhile
                conn = self._conns.pop()
            except IndexError:
                return
            self._pool.release(conn)  # type: ignore[arg-type]

    def forget(self) -> None:
        self._conns = []


def pool_full(exc: Exception) -> bool:
    """Whether redis-py refused a connection because max_connections are all in use (before
    redis-py 6 its pool raised a plain ConnectionError for that)."""
    return isinstance(exc, MaxConnectionsError) or str(exc) == "Too many connections"


_EVERY_IDLE: weakref.WeakSet[IdleConnections] = weakref.WeakSet()


def _after_fork() -> None:
    # Runs in a forked child before any other thread exists there: the child must not share
    # its parent's sockets (redis-py's pool resets itself in the child too).
    for idle in list(_EVERY_IDLE):
        idle.forget()


os.register_at_fork(after_in_child=_after_fork)
