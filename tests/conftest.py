"""Fixtures shared by the whole suite: a store factory parametrized over every backend.

Redis and PostgreSQL tests talk to the real servers (REDIS_URL, POSTGRES_DSN; defaults are this
machine's). Each test gets its own Redis key namespace or PostgreSQL schema, removed afterwards.
When a server is down, or a program a test needs (redis-server, Chromium, Playwright) is missing,
the test is skipped locally but fails under CI=true: a CI run skips nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from persistence import StatePersistence, connect

REDIS_URL = os.environ.get("STATEHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get(
    "STATEHUB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("memory", "sqlite", "redis", "postgres")
# The backends whose data outlives the store object and the process that wrote it; tests of
# reopening or of several processes run on these alone (parametrizing `backend` directly).
DURABLE = ("sqlite", "redis", "postgres")


class FakeClock:
    """A clock tests move by hand: ``clock.advance(3600)``."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def missing(message: str) -> NoReturn:
    """Skip a test whose server or program is not here, but fail it under CI=true."""
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run every test)")
    pytest.skip(message)


def server_missing(backend: str, exc: BaseException) -> NoReturn:
    missing(f"{backend} server not reachable: {exc}")


def open_store(backend: str, where: str, **options: Any) -> StatePersistence:
    """A store of ``backend`` isolated under ``where`` (a file path, namespace or schema)."""
    if backend == "memory":
        return connect("memory://", **options)
    if backend == "sqlite":
        return connect(f"sqlite:///{where}", **options)
    if backend == "redis":
        from persistence.backends.redis import RedisStatePersistence

        return RedisStatePersistence(redis_url=REDIS_URL, namespace=where, **options)
    from persistence.backends.postgres import PostgresStatePersistence

    return PostgresStatePersistence(dsn=POSTGRES_DSN, schema=where, **options)


def drop_store(backend: str, where: str) -> None:
    """Remove everything ``open_store(backend, where)`` created on a server."""
    if backend == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{where}:*", count=1000):
            client.delete(key)
        client.close()
    elif backend == "postgres":
        import psycopg

        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{where}" CASCADE')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, tmp_path: Any) -> Iterator[Callable[..., StatePersistence]]:
    """``make_store(**options)`` -> a fresh, empty store of the parametrized backend.

    Calling it again with the same ``where=`` reopens the same data (a restart)."""
    opened: list[StatePersistence] = []
    default_where = (
        str(tmp_path / "state.db") if backend == "sqlite" else f"t{uuid.uuid4().hex[:12]}"
    )
    places = {default_where}

    def factory(where: str | None = None, **options: Any) -> StatePersistence:
        place = where or default_where
        places.add(place)
        try:
            store = open_store(backend, place, **options)
        except ConnectionError as exc:
            server_missing(backend, exc)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()
    for place in places:
        drop_store(backend, place)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A Redis key namespace of the test's own, its keys removed afterwards."""
    ns = f"t{uuid.uuid4().hex[:12]}"
    yield ns
    drop_store("redis", ns)


@pytest.fixture
def raw() -> Iterator[Any]:
    """A plain redis-py client of the test Redis (skipped, or failed under CI, when down)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        server_missing("redis", exc)
    yield client
    client.close()


@pytest.fixture
def store(make_store: Callable[..., StatePersistence], clock: FakeClock) -> StatePersistence:
    """A fresh store of the parametrized backend on a fake clock."""
    return make_store(clock=clock)


def new_id() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


def run_threads(work: Callable[[int], object], count: int) -> list[BaseException]:
    """Run ``work(0)`` … ``work(count - 1)`` in threads at once; what they raised, if anything."""
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # reported to the test by the return value
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


ROOT = Path(__file__).resolve().parents[1]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py *args`` in a new process, with no DJANGO_/STATEHUB_/DATABASE_URL setting
    of this one's environment: only ``env``'s."""
    inherited = (k for k in os.environ if not k.startswith(("DJANGO_", "STATEHUB_")))
    clean = {k: os.environ[k] for k in inherited if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def dead_broker() -> Iterator[Any]:
    """The Celery app pointed at a Redis port where nothing listens: Run now fails fast."""
    from statehub.celery import app

    saved = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url, app.conf.broker_transport_options = "redis://127.0.0.1:1/0", {}
    app._pool = None
    app.amqp._producer_pool = None
    yield app
    app.conf.broker_url, app.conf.broker_transport_options = saved
    app._pool = None
    app.amqp._producer_pool = None
