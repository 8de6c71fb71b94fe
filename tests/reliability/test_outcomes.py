"""Typed outcomes: a write whose fate is unknown says so (OutcomeUnknownError), a retry with the
same write_id returns the version written (never a second one), and a pruned version says it
was pruned (VersionPrunedError) instead of looking missing.

The Redis and PostgreSQL fault cases are marked ``faults``: Redis runs on a throwaway
server paused with SIGSTOP; PostgreSQL terminates only this test's own connections, found by
the store's ``application_name``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from persistence import (
    BackendUnavailableError,
    OutcomeUnknownError,
    StateNotFoundError,
    StatePersistence,
    VersionPrunedError,
)
from tests.conftest import BACKENDS, POSTGRES_DSN
from tests.reliability._support import ThrowawayRedis, fresh_where, opened

# ------------------------------------------------------------------ every backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pruned_version_raises_version_pruned_error(
    make_store: Callable[..., StatePersistence],
) -> None:
    store = make_store(max_versions=2)
    for n in range(1, 6):
        store.save_with_metadata({"n": n}, "s")
    for version in (1, 2, 3):
        with pytest.raises(VersionPrunedError) as caught:
            store.load_with_metadata("s", version=version)
        assert caught.value.oldest_kept == 4
        with pytest.raises(VersionPrunedError):
            store.rollback("s", version)
    assert store.load_with_metadata("s", version=9) is None  # never existed: plain None
    with pytest.raises(StateNotFoundError):
        store.rollback("s", 9)
    store.prune_versions(1)
    with pytest.raises(VersionPrunedError):
        store.load_with_metadata("s", version=4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_write_id_retry_returns_the_first_version_and_is_scoped_to_its_state(
    make_store: Callable[..., StatePersistence],
) -> None:
    store = make_store(max_versions=3)
    first = store.save_with_metadata({"n": 1}, "s", write_id="op-1")
    store.save_with_metadata({"n": 2}, "s")
    again = store.save_with_metadata({"n": 99}, "s", write_id="op-1")
    assert again.version == first.version == 1 and again.checksum == first.checksum
    assert [m.version for m in store.list_versions("s")] == [1, 2]
    many = store.save_many([{"state_id": "s", "state": {"n": 98}, "write_id": "op-1"}])
    assert many[0].version == 1
    # Scope: the same write_id on another state is another write.
    assert store.save_with_metadata({"n": 1}, "other", write_id="op-1").version == 1
    # Kept as long as the version is kept: once version 1 is pruned, a retry writes again.
    store.save_with_metadata({"n": 3}, "s")
    store.save_with_metadata({"n": 4}, "s")
    assert [m.version for m in store.list_versions("s")] == [2, 3, 4]
    assert store.save_with_metadata({"n": 1}, "s", write_id="op-1").version == 5


# ------------------------------------------------------------------ Redis: a paused server

SOCKET_TIMEOUT = 0.5


@pytest.mark.faults
def test_redis_write_timing_out_raises_outcome_unknown_and_retry_returns_the_same_version(
    tmp_path: Path,
) -> None:
    from persistence.backends.redis import RedisStatePersistence

    server = ThrowawayRedis(tmp_path)
    server.start()
    options = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT}
    store = RedisStatePersistence(redis_url=server.url, redis_options=options, namespace="o")
    try:
        store.save_with_metadata({"n": 0}, "s")  # version 1; scripts loaded
        server.pause()
        started = time.monotonic()
        with pytest.raises(OutcomeUnknownError):
            store.save_with_metadata({"n": 1}, "s", write_id="op-1")
        write_took = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as read_error:
            store.load_with_metadata("s")
        read_took = time.monotonic() - started
        assert not isinstance(read_error.value, OutcomeUnknownError), "a read changes nothing"
        server.resume()
        retried = store.save_with_metadata({"n": 1}, "s", write_id="op-1")
        again = store.save_with_metadata({"n": 1}, "s", write_id="op-1")
        assert retried.version == again.version == 2
        assert [m.version for m in store.list_versions("s")] == [1, 2], "a second version"
        assert write_took < SOCKET_TIMEOUT + 1.0 and read_took < SOCKET_TIMEOUT + 1.0
    finally:
        store.close()
        server.stop()


# ------------------------------------------------- PostgreSQL: a terminated backend


def _terminate(application_name: str, *, only_waiting: bool = False) -> int:
    import psycopg

    query = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()"
    )
    if only_waiting:
        query += " AND wait_event_type = 'Lock'"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        row = conn.execute(query, [application_name]).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.faults
def test_postgres_write_in_flight_when_its_backend_is_terminated_raises_outcome_unknown(
    tmp_path: Path,
) -> None:
    import psycopg

    where = fresh_where("postgres", tmp_path)
    with opened("postgres", where) as store:
        store.save_with_metadata({"n": 0}, "s")
        app = store.application_name  # type: ignore[attr-defined]
        errors: list[BaseException] = []
        with psycopg.connect(POSTGRES_DSN) as locker:  # holds the state's row lock
            locker.execute(f'SELECT 1 FROM "{where}".states WHERE state_id = %s FOR UPDATE', ["s"])

            def save() -> None:
                try:
                    store.save_with_metadata({"n": 1}, "s", write_id="op-1")
                except BaseException as exc:
                    errors.append(exc)

            writer = threading.Thread(target=save)
            writer.start()
            deadline = time.monotonic() + 10
            while not _terminate(app, only_waiting=True):  # the save waits on the lock
                assert time.monotonic() < deadline, "the save never blocked on the row lock"
                time.sleep(0.05)
            writer.join(timeout=10)
            locker.rollback()
        assert len(errors) == 1 and isinstance(errors[0], OutcomeUnknownError), errors
        retried = store.save_with_metadata({"n": 1}, "s", write_id="op-1")
        again = store.save_with_metadata({"n": 1}, "s", write_id="op-1")
        assert retried.version == again.version == 2
        assert [m.version for m in store.list_versions("s")] == [1, 2]
