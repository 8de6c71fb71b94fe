"""The Redis store's connections between calls, kept out of redis-py's pool."""

from __future__ import annotations

import os
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
    taken from the pool once and then kept in a list: ``pop`` and ``append`` are atomic, so
    threads share it without a lock. (A pool bounded by ``max_connections`` uses
    PoolConnections instead: a call waiting for a connection must see every one come back.)
    Each checkout still does what the pool's would: it polls the socket, so a connection the
    server closed (a restart) or one left with an unread reply is reopened before anything is
    sent on it, and it honours redis-py's requests to reconnect (a maintenance notice) or to
    re-send a renewed credential. A forked child forgets its parent's connections
    (``_after_fork``).
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._conns: list[PooledConnection] = []
        _EVERY_IDLE.add(self)

    def get(self) -> PooledConnection:
        try:
            conn = self._conns.pop()
        except IndexError:
            fresh: PooledConnection = self._pool.get_connection()  # connected and checked
            return fresh
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

    def release_all(self) -> None:
        """Hand the idle connections back to the pool, which counts them as in use until then.

        Calls that go through redis-py's pool (pipelines, INFO) do this first, so its
        connections are reused rather than opened beside the idle ones.
        """
        while True:
            try:  # one pop at a time: another thread may be putting one back meanwhile
                conn = self._conns.pop()
            except IndexError:
                return
            self._pool.release(conn)  # type: ignore[arg-type]

    def forget(self) -> None:
        self._conns = []


class PoolConnections:
    """IdleConnections' calls done by redis-py's pool itself, for a pool of bounded size
    (``max_connections``): its BlockingConnectionPool queues the calls that wait for a
    connection, which only works if every connection is handed back to it after each call.
    Its queue is not fair: a thread that calls again at once, holding the GIL, can take the
    connection it just returned before a waiting thread wakes up."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool

    def get(self) -> PooledConnection:
        conn: PooledConnection = self._pool.get_connection()
        return conn

    def put(self, conn: PooledConnection) -> None:
        self._pool.release(conn)  # type: ignore[arg-type]

    def release_all(self) -> None:
        """Nothing is kept between calls."""


def pool_exhausted(exc: Exception) -> bool:
    """Whether redis-py gave up on a connection because max_connections stayed in use
    (BlockingConnectionPool's timeout, or the plain pool's refusal)."""
    return isinstance(exc, MaxConnectionsError) or str(exc) in {
        "No connection available.",
        "Too many connections",
    }


_EVERY_IDLE: weakref.WeakSet[IdleConnections] = weakref.WeakSet()


def _after_fork() -> None:
    # Runs in a forked child before any other thread exists there: the child must not share
    # its parent's sockets (redis-py's pool resets itself in the child too).
    for idle in list(_EVERY_IDLE):
        idle.forget()


os.register_at_fork(after_in_child=_after_fork)
