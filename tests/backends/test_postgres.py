"""PostgreSQL-only properties, against the real server: round trips, schema setup, faults.

Every store here lives in its own throwaway schema and touches only its own connections
(found by the ``application_name`` the store gives them); the shared server is never stopped.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from persistence import (
    BackendUnavailableError,
    OutcomeUnknownError,
    PersistenceError,
    VersionConflictError,
    VersionPrunedError,
    connect,
)
from persistence.backends.postgres import (
    MIGRATIONS,
    PostgresStatePersistence,
    _save_params,
    setup_lock_key,
)
from tests.conftest import POSTGRES_DSN, FakeClock, drop_store, missing, open_store, run_threads
from tests.reliability._support import free_port

on_postgres = pytest.mark.parametrize("backend", ["postgres"])
# The shared server, but with sessions that default to REPEATABLE READ.
REPEATABLE_READ_DSN = (
    POSTGRES_DSN + "?options=-c%20default_transaction_isolation%3Drepeatable%5C%20read"
)
Factory = Callable[..., Any]


def admin() -> Any:
    return psycopg.connect(POSTGRES_DSN, autocommit=True)


def backends_of(store: PostgresStatePersistence, state: str | None = None) -> list[int]:
    query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
    if state == "waiting":
        query += " AND wait_event_type = 'Lock'"
    with admin() as conn:
        return [pid for (pid,) in conn.execute(query, [store.application_name])]


def terminate(pids: list[int], store: PostgresStatePersistence) -> None:
    with admin() as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 10
    while set(pids) & set(backends_of(store)) and time.monotonic() < deadline:
        time.sleep(0.02)


def started_waiting(store: PostgresStatePersistence, work: Callable[[], None]) -> threading.Thread:
    """``work`` started in a thread, returned once the store's session waits for a lock."""
    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 10
    while not backends_of(store, "waiting") and time.monotonic() < deadline:
        time.sleep(0.02)
    return thread


def round_trips(store: PostgresStatePersistence, action: Callable[[], object], tmp: Path) -> int:
    """How many times ``action`` makes the client wait for the server: libpq's protocol trace
    of the store's only connection, counting the Sync (extended) and Query (simple) messages
    the client sends - each is answered by one ReadyForQuery."""
    from psycopg import pq

    path = tmp / f"trace-{uuid.uuid4().hex}"
    with path.open("w") as sink:
        conn = store._conns.pool.getconn()
        conn.pgconn.trace(sink.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        store._conns.pool.putconn(conn)
        action()
        conn = store._conns.pool.getconn()
        conn.pgconn.untrace()
        store._conns.pool.putconn(conn)
    messages = [line.split("\t") for line in path.read_text().splitlines()]
    return sum(1 for m in messages if m[0] == "F" and len(m) > 2 and m[2] in ("Sync", "Query"))


@on_postgres
def test_a_save_and_a_load_are_one_round_trip_each(make_store: Factory, tmp_path: Path) -> None:
    store = make_store(min_size=1, max_size=1, max_versions=3)
    state = {"step": 1, "text": "x" * 500}

    def save() -> object:
        return store.save_with_metadata(state, "s", tags=["a", "b"], metadata={"k": 1})

    def load() -> object:
        return store.load_with_metadata("s")

    def save_many() -> object:
        return store.save_many([{"state_id": f"m{i}", "state": state} for i in range(20)])

    def load_many() -> object:
        return store.load_many([f"m{i}" for i in range(20)])

    def load_version() -> object:
        return store.load_with_metadata("s", version=7)

    for _ in range(6):  # statements are prepared on first use; count the steady state
        save(), load(), save_many(), load_many(), load_version()
    assert round_trips(store, save, tmp_path) == 1
    assert round_trips(store, load, tmp_path) == 1
    assert round_trips(store, save_many, tmp_path) == 1
    assert round_trips(store, load_many, tmp_path) == 1
    assert round_trips(store, load_version, tmp_path) == 1


@on_postgres
def test_a_store_started_on_an_empty_schema_never_scans_whole_tables(
    make_store: Factory,
) -> None:
    # The generic plans of a session's prepared statements are made while the tables are
    # tiny, and would be kept as they grow: they must still find rows by index. The server's
    # per-table counters of sequential scans show what the store's session did (a session
    # reports them when it ends).
    store = make_store(min_size=1, max_size=1, max_versions=3)
    schema = store.schema

    def seq_scans() -> int:
        with admin() as conn:
            (n,) = conn.execute(
                "SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_user_tables "
                "WHERE schemaname = %s AND relname IN ('states', 'versions')",
                [schema],
            ).fetchone()
        return int(n)

    def ended(store: PostgresStatePersistence) -> None:
        store.close()  # its session ends and reports its counters as it exits
        deadline = time.monotonic() + 10
        while backends_of(store) and time.monotonic() < deadline:
            time.sleep(0.05)

    for sid in ("warm-a", "warm-b"):  # the pool's session starts with a small table
        store.save_with_metadata({"n": 0}, sid)
    ended(store)
    before = seq_scans()
    store = make_store(min_size=1, max_size=1, max_versions=3)
    for i in range(40):  # far past the 5 custom plans after which a generic one is kept
        store.save_with_metadata({"n": i}, f"s{i % 4}", tags=["t"])
        store.load_with_metadata(f"s{i % 4}")
        store.load_with_metadata(f"s{i % 4}", version=max(1, i // 4 - 1))
        store.list_versions(f"s{i % 4}")
    store.save_many([{"state_id": f"m{i}", "state": {"i": i}} for i in range(20)])
    store.load_many([f"m{i}" for i in range(20)])
    ended(store)
    assert seq_scans() == before


def _start_store(schema: str, barrier: Any) -> None:
    barrier.wait(timeout=60)
    open_store("postgres", schema).close()


@on_postgres
def test_the_schema_has_the_tables_types_and_indexes_the_layout_promises(
    make_store: Factory,
) -> None:
    """States, versions (payload bytea, tags text[]) and checkpoints; a GIN index on the tags
    that searches read, indexed expiry, and the applied migrations recorded by number."""
    store = make_store()
    schema = store.schema
    with admin() as conn:
        columns = dict(
            conn.execute(
                "SELECT table_name || '.' || column_name, udt_name FROM information_schema.columns"
                " WHERE table_schema = %s",
                [schema],
            ).fetchall()
        )
        indexes = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", [schema]
            ).fetchall()
        )
        recorded = conn.execute(f'SELECT version FROM "{schema}".schema_version').fetchall()
    expected = {
        "states.state_id": "text",
        "states.tags": "_text",
        "states.expires_at": "float8",
        "states.metadata": "text",
        "versions.payload": "bytea",
        "versions.tags": "_text",
        "versions.metadata": "text",
        "checkpoints.payload": "bytea",
        "checkpoints.state_id": "text",
        "states_metadata.metadata": "jsonb",
        "versions_metadata.metadata": "jsonb",
    }
    assert {name: columns.get(name) for name in expected} == expected
    assert "USING gin (tags)" in indexes["states_tags"]
    assert "(expires_at)" in indexes["states_expires_at"]
    assert "(state_id, version)" in indexes["versions_pkey"]
    assert sorted(v for (v,) in recorded) == [version for version, _ in MIGRATIONS]


@pytest.mark.slow
def test_four_processes_setting_up_one_fresh_schema_all_succeed() -> None:
    schema = f"t{uuid.uuid4().hex[:12]}"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_start_store, args=(schema, barrier)) for _ in range(4)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
        with admin() as conn:
            recorded = conn.execute(
                f'SELECT version FROM "{schema}".schema_version ORDER BY version'
            ).fetchall()
        assert [v for (v,) in recorded] == [version for version, _ in MIGRATIONS]
    finally:
        drop_store("postgres", schema)


def test_stores_set_up_at_once_under_a_repeatable_read_default_both_start() -> None:
    # Both wait on the setup lock; the second must see the first one's tables once it has it.
    schema = f"t{uuid.uuid4().hex[:12]}"
    key = setup_lock_key(schema)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            PostgresStatePersistence(REPEATABLE_READ_DSN, schema=schema).close()
        except BaseException as exc:
            errors.append(exc)

    starters = [threading.Thread(target=start) for _ in range(2)]
    try:
        with admin() as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", [key])
            for thread in starters:
                thread.start()
            # This schema's setup lock alone (a bigint key is classid:objid, high:low halves).
            waiting = (
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND classid::bigint = %s AND objid::bigint = %s"
            )
            halves = [(key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF]
            deadline = time.monotonic() + 10
            while holder.execute(waiting, halves).fetchone() != (2,):
                assert time.monotonic() < deadline, "the two starters never queued on the lock"
                time.sleep(0.02)
            holder.execute("SELECT pg_advisory_unlock(%s)", [key])
        for thread in starters:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in starters)
        assert errors == []
    finally:
        drop_store("postgres", schema)


def test_a_server_that_is_down_raises_backend_unavailable_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        PostgresStatePersistence("postgresql://postgres@127.0.0.1:1/test", schema="tdown")
    assert time.monotonic() - started < 3
    assert isinstance(info.value, ConnectionError)
    with pytest.raises(ConnectionError):  # the seed's fallback example catches exactly this
        connect("postgresql://postgres@127.0.0.1:1/test", connect_timeout=1)


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({"min_size": "1"}, TypeError, "min_size"),
        ({"min_size": 3, "max_size": 2}, ValueError, "min_size"),
        ({"max_size": 0}, ValueError, "max_size"),
        ({"pool_timeout": 0}, ValueError, "pool_timeout"),
        ({"pool_timeout": "5"}, TypeError, "pool_timeout"),
        ({"connect_timeout": -1}, ValueError, "connect_timeout"),
        ({"connect_timeout": "5"}, TypeError, "connect_timeout"),
        ({"clock": 5}, TypeError, "clock"),
    ],
)
def test_bad_pool_options_are_refused_by_name_before_the_schema_is_made(
    options: dict[str, Any], error: type[Exception], named: str
) -> None:
    schema = "t_bad_options"
    with admin() as conn:  # left by an earlier run that failed
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    with pytest.raises(error, match=named):
        PostgresStatePersistence(POSTGRES_DSN, schema=schema, **options)
    with admin() as conn:
        made = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
    assert made is None


@on_postgres
def test_a_server_error_inside_a_call_is_translated(make_store: Factory) -> None:
    """An error the server raises for a statement (here a column gone, as a hand edit of the
    schema would leave) reaches callers as PersistenceError, the driver's as cause."""
    store = make_store()
    store.save_with_metadata({"v": 1}, "s", tags=["a"])
    with admin() as conn:
        conn.execute(f'ALTER TABLE "{store.schema}".states RENAME COLUMN tags TO tags_gone')
    with pytest.raises(PersistenceError, match="tags") as info:
        store.search_by_tags(["a"])
    assert isinstance(info.value.__cause__, psycopg.errors.UndefinedColumn)
    assert not isinstance(info.value, ConnectionError)  # the server is up: not "unavailable"


@on_postgres
def test_a_fractional_connect_timeout_works_as_the_next_whole_second(make_store: Factory) -> None:
    """libpq reads whole seconds: 2.5 given as it is broke the ping that tells a server that
    is down from a pool that is busy."""
    store = make_store(connect_timeout=2.5)
    assert store._conns.server_answers()
    store.save_with_metadata({"a": 1}, "s")
    assert store.load_with_metadata("s")[0] == {"a": 1}


@pytest.mark.faults
@on_postgres
def test_the_pool_recovers_after_its_connections_are_terminated(make_store: Factory) -> None:
    store = make_store(min_size=2, max_size=4)
    store.save_with_metadata({"v": 1}, "s")
    pids = backends_of(store)
    assert pids
    terminate(pids, store)
    # The next calls find the dead connections, replace them and succeed.
    assert store.save_with_metadata({"v": 2}, "s").version == 2
    loaded = store.load_with_metadata("s")
    assert loaded is not None and loaded[0] == {"v": 2}
    assert not set(pids) & set(backends_of(store))


def _child_saves_and_loads(store: PostgresStatePersistence, results: Any) -> None:
    """In a forked child: four threads making their first calls at once, each saving and
    loading a state of its own; then the store closed, and garbage collected (the parent's
    pool, set aside in the child, must stay untouched)."""
    wrong, errors = 0, []
    barrier = threading.Barrier(4)
    opening = ConnectionPool.open

    def slow_open(pool: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)  # the other threads arrive while the child's pool is being opened
        return opening(pool, *args, **kwargs)

    ConnectionPool.open = slow_open  # type: ignore[method-assign]  (this child only)

    def work(n: int) -> None:
        nonlocal wrong
        barrier.wait()
        for i in range(15):
            try:
                store.save_with_metadata({"who": f"child{n}", "i": i}, f"c{n}")
                loaded = store.load_with_metadata(f"c{n}")
                wrong += loaded is None or loaded[0] != {"who": f"child{n}", "i": i}
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    run_threads(work, 4)
    store.close()
    gc.collect()
    results.put((wrong, errors[:3]))


@on_postgres
def test_a_forked_child_uses_connections_of_its_own(make_store: Factory) -> None:
    store = make_store(min_size=2, max_size=2)
    store.save_with_metadata({"who": "parent", "i": -1}, "p")  # the pool holds connections
    sessions = set(backends_of(store))
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_child_saves_and_loads, args=(store, results))
    child.start()
    wrong = 0
    try:
        for i in range(60):  # at the same time, on the parent's own connections
            store.save_with_metadata({"who": "parent", "i": i}, "p")
            loaded = store.load_with_metadata("p")
            wrong += loaded is None or loaded[0] != {"who": "parent", "i": i}
        assert results.get(timeout=60) == (0, [])  # the child read only its own replies
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0 and wrong == 0
    closer = ctx.Process(target=store.close)  # a child that only closes the store
    closer.start()
    closer.join(30)
    assert closer.exitcode == 0
    # Nothing the children did, closed or freed ended a session of the parent's.
    assert sessions <= set(backends_of(store))
    assert store.load_with_metadata("p") is not None


def _load_from_closed(store: PostgresStatePersistence, results: Any) -> None:
    try:
        store.load_with_metadata("p")
        results.put("loaded")
    except BackendUnavailableError as exc:
        results.put(str(exc))


@on_postgres
def test_a_store_closed_before_a_fork_stays_closed_in_the_child(make_store: Factory) -> None:
    store = make_store()
    store.save_with_metadata({"v": 1}, "p")
    store.close()
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_load_from_closed, args=(store, results))
    child.start()
    assert "was closed" in results.get(timeout=30)
    child.join(10)


@pytest.mark.slow
@on_postgres
def test_sessions_run_read_committed_whatever_the_servers_default(make_store: Factory) -> None:
    # Under REPEATABLE READ the save function's statements would share one snapshot, and
    # concurrent saves of one state would fail on each other instead of waiting their turn.
    store = make_store(max_versions=3, max_size=4)
    strict = PostgresStatePersistence(
        REPEATABLE_READ_DSN,
        schema=store.schema,
        max_versions=3,
        max_size=4,
    )
    try:
        shown = strict._conns.run(lambda c: c.execute("SHOW transaction_isolation").fetchone())
        assert shown == ("read committed",)

        def writer(worker: int) -> None:
            for n in range(15):
                strict.save_with_metadata({"worker": worker, "n": n}, "shared")

        assert run_threads(writer, 4) == []
        assert [m.version for m in strict.list_versions("shared")] == [58, 59, 60]
    finally:
        strict.close()


@on_postgres
def test_calls_through_one_store_run_at_once_not_in_turn(make_store: Factory) -> None:
    store = make_store(max_size=4)
    store.save_with_metadata({"v": 1}, "held")
    store.save_with_metadata({"v": 1}, "free")
    with admin() as blocker, blocker.transaction():
        blocker.execute(
            f'SELECT 1 FROM "{store.schema}".states WHERE state_id = %s FOR UPDATE', ["held"]
        )
        waiting = started_waiting(store, lambda: store.save_with_metadata({"v": 2}, "held"))
        assert backends_of(store, "waiting")
        # While one thread's save waits on the server, other calls go through the pool.
        done = threading.Event()

        def others() -> None:
            assert store.save_with_metadata({"v": 2}, "free").version == 2
            assert store.load_with_metadata("free") is not None
            assert store.count_states() == 2
            done.set()

        other = threading.Thread(target=others)
        other.start()
        other.join(timeout=10)
        assert done.is_set() and waiting.is_alive()
    waiting.join(timeout=10)
    assert [m.version for m in store.list_versions("held")] == [1, 2]


@pytest.mark.slow
@on_postgres
def test_a_call_waits_past_a_second_for_a_busy_pool(make_store: Factory) -> None:
    # A second without a connection makes the store check that the server is up (it fails
    # fast when it is not); a pool that is only busy is waited for up to pool_timeout.
    store = make_store(min_size=1, max_size=1)
    store.save_with_metadata({"v": 1}, "held")
    store.save_with_metadata({"v": 1}, "free")
    result: list[object] = []
    with admin() as blocker:
        with blocker.transaction():
            blocker.execute(
                f'SELECT 1 FROM "{store.schema}".states WHERE state_id = %s FOR UPDATE', ["held"]
            )
            holder = started_waiting(store, lambda: store.save_with_metadata({"v": 2}, "held"))
            reader = threading.Thread(
                target=lambda: result.append(store.load_with_metadata("free"))
            )
            reader.start()
            time.sleep(2.0)  # the lock, and with it the pool's one connection, stays taken
            assert reader.is_alive() and not result
        reader.join(timeout=10)
        holder.join(timeout=10)
    assert len(result) == 1 and result[0] is not None
    assert [m.version for m in store.list_versions("held")] == [1, 2]


class ThrowawayPostgres:
    """A PostgreSQL cluster of our own on a free port, safe to stop and start again.

    initdb refuses to run as root, so under root the cluster belongs to the postgres user and
    lives in a directory of its own outside pytest's root-only tmp_path."""

    def __init__(self, *settings: str) -> None:
        self.settings = settings  # extra "-c name=value" server settings
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            missing("PostgreSQL's initdb is not installed")
        self.bin = found[-1].parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="statehub-pg-"))
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.data = self.root / "data"
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        try:
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _run(self, tool: str, *args: str) -> None:
        command = [*self.as_owner, str(self.bin / tool), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        options += "".join(f" -c {setting}" for setting in self.settings)
        log = str(self.root / "log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:  # immediate: the server goes away as in a crash
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def throwaway_postgres() -> Iterator[Callable[..., ThrowawayPostgres]]:
    servers: list[ThrowawayPostgres] = []

    def start(*settings: str) -> ThrowawayPostgres:
        server = ThrowawayPostgres(*settings)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.remove()


@pytest.mark.faults
def test_a_restarted_server_is_used_again(throwaway_postgres: Callable[..., Any]) -> None:
    server = throwaway_postgres()
    store = PostgresStatePersistence(server.dsn, schema="restart")  # pool_timeout 30 s
    try:
        store.save_with_metadata({"v": 1}, "s", tags=["t"])
        server.stop()
        # While it is down every kind of call says so, translated: nothing of psycopg leaks.
        calls: list[Callable[[], object]] = [
            lambda: store.load_with_metadata("s"),
            lambda: store.save_with_metadata({"v": 2}, "s"),
            lambda: store.load_many(["s"]),
            lambda: store.search_by_tags(["t"]),
            lambda: store.page_states(limit=5),
            lambda: store.get_stats(),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError) as info:
                call()
            assert not isinstance(info.value, OutcomeUnknownError)  # nothing was sent
            # A second's wait for the pool, then a refused connection: not the pool_timeout.
            assert time.monotonic() - started < 5
        server.start()
        # The next call after it is back succeeds, and nothing was lost or half-written.
        loaded = store.load_with_metadata("s")
        assert loaded is not None and loaded[0] == {"v": 1}
        assert store.save_with_metadata({"v": 3}, "s").version == 2
        assert [m.version for m in store.list_versions("s")] == [1, 2]
    finally:
        store.close()


@pytest.mark.faults
def test_a_busy_pool_on_a_server_out_of_connection_slots_is_waited_for(
    throwaway_postgres: Callable[..., Any],
) -> None:
    # The check made after a second without a connection is refused ("too many clients"):
    # the server is up, so the call goes on waiting for the pool instead of failing.
    server = throwaway_postgres("max_connections=3", "superuser_reserved_connections=0")
    store = PostgresStatePersistence(server.dsn, schema="slots", min_size=2, max_size=2)
    try:
        store.save_with_metadata({"v": 1}, "held")
        store.save_with_metadata({"v": 1}, "free")
        with psycopg.connect(server.dsn, autocommit=True) as blocker:  # the third slot
            with blocker.transaction():
                blocker.execute("SELECT 1 FROM slots.states WHERE state_id = 'held' FOR UPDATE")
                holders = [
                    threading.Thread(target=lambda: store.save_with_metadata({"v": 2}, "held"))
                    for _ in range(2)
                ]
                for thread in holders:  # both pooled connections wait on the lock
                    thread.start()
                on_lock = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                deadline = time.monotonic() + 10
                while blocker.execute(on_lock).fetchone() != (2,):
                    assert time.monotonic() < deadline, "the two saves never waited on the lock"
                    time.sleep(0.02)
                result: list[object] = []
                reader = threading.Thread(
                    target=lambda: result.append(store.load_with_metadata("free"))
                )
                reader.start()
                time.sleep(2.0)
                assert reader.is_alive() and not result
            reader.join(timeout=10)
            for thread in holders:
                thread.join(timeout=10)
        assert len(result) == 1 and result[0] is not None
        assert [m.version for m in store.list_versions("held")] == [1, 2, 3]
    finally:
        store.close()


@pytest.mark.faults
@on_postgres
def test_a_connection_lost_after_a_write_was_sent_is_outcome_unknown(
    make_store: Factory,
) -> None:
    store = make_store(min_size=1, max_size=2)
    store.save_with_metadata({"v": 1}, "s")
    outcome: list[BaseException] = []

    def save() -> None:
        try:
            store.save_with_metadata({"v": 2}, "s")
        except BaseException as exc:
            outcome.append(exc)

    with admin() as blocker, blocker.transaction():
        # Hold the state's row so the save is sent and then waits, and cut it off there.
        blocker.execute(f'SELECT 1 FROM "{store.schema}".states FOR UPDATE')
        writer = started_waiting(store, save)
        terminate(backends_of(store, "waiting"), store)
        writer.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], OutcomeUnknownError)
    assert isinstance(outcome[0], BackendUnavailableError)
    assert store.save_with_metadata({"v": 3}, "s").version == 2  # the cut-off save never landed


@pytest.mark.slow
@on_postgres
@pytest.mark.parametrize("keep", [None, 3])
def test_threads_saving_one_state_get_contiguous_versions(
    make_store: Factory, keep: int | None
) -> None:
    threads, saves = 8, 25
    store = make_store(max_versions=keep, max_size=threads)
    barrier = threading.Barrier(threads)

    def writer(worker: int) -> None:
        barrier.wait()
        for n in range(saves):
            store.save_with_metadata({"worker": worker, "n": n}, "shared", tags=[f"w{n}"])

    assert run_threads(writer, threads) == []
    total = threads * saves
    versions = [m.version for m in store.list_versions("shared")]
    if keep is None:
        assert versions == list(range(1, total + 1))
        seen = {tuple(store.load_with_metadata("shared", v)[0].values()) for v in versions}
        assert len(seen) == total
    else:
        assert versions == list(range(total - keep + 1, total + 1))
        with pytest.raises(VersionPrunedError):
            store.load_with_metadata("shared", version=total - keep)
    stats = store.get_stats()
    assert stats["total_versions"] == len(versions)  # the maintained counters agree
    assert drifted_counters(store) == []


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


@pytest.mark.slow
@on_postgres
def test_load_latest_is_an_index_lookup(make_store: Factory) -> None:
    store = make_store(max_versions=None)
    for start in range(0, 3000, 1000):
        store.save_many(
            [{"state_id": f"s{i:05d}", "state": {"i": i}} for i in range(start, start + 1000)]
        )
    store.save_many([{"state_id": "deep", "state": {"n": n}} for n in range(500)])
    with admin() as conn:
        conn.execute(f'ANALYZE "{store.schema}".states, "{store.schema}".versions')
        for version in (None, 250):
            params = {"sid": "deep", "version": version, "now": time.time()}
            (plan,) = conn.execute("EXPLAIN (FORMAT JSON) " + store._q.read, params).fetchone()
            nodes = list(plan_nodes(plan[0]["Plan"]))
            scans = {n["Relation Name"]: n["Node Type"] for n in nodes if "Relation Name" in n}
            assert scans == {"states": "Index Scan", "versions": "Index Scan"}, scans
    loaded = store.load_with_metadata("deep")
    assert loaded is not None and loaded[1].version == 500


@on_postgres
def test_two_purgers_never_wait_for_each_other(make_store: Factory, clock: FakeClock) -> None:
    store = make_store(clock=clock)
    for i in range(5):
        store.save_with_metadata({"i": i}, f"e{i}", ttl_seconds=10)
    clock.advance(20)
    with admin() as other, other.transaction():
        # Another purger holds one expired state: this one skips it instead of waiting.
        other.execute(f"SELECT 1 FROM \"{store.schema}\".states WHERE state_id = 'e0' FOR UPDATE")
        started = time.monotonic()
        assert store.purge_expired() == 4
        assert time.monotonic() - started < 2
    assert store.purge_expired() == 1
    assert store.purge_expired() == 0


@on_postgres
def test_prefixes_with_like_wildcards_and_code_point_order(make_store: Factory) -> None:
    store = make_store()
    ids = ["a%b", "a_b", "a\\b", "ab", "aXb", "a%", "Z", "é", "z", "\U0001f600", "\uffff"]
    store.save_many([{"state_id": sid, "state": {}} for sid in ids])
    assert list(store.list_states()) == sorted(ids)
    assert list(store.list_states(prefix="a%")) == ["a%", "a%b"]
    assert list(store.list_states(prefix="a_")) == ["a_b"]
    assert list(store.list_states(prefix="a\\")) == ["a\\b"]
    assert list(store.list_states(prefix="\uffff")) == ["\uffff"]
    page = store.page_states(prefix="a", order="-id", limit=3)
    assert [s.state_id for s in page.items] == sorted(i for i in ids if i[0] == "a")[::-1][:3]


@on_postgres
def test_metadata_comes_back_as_the_same_json(make_store: Factory) -> None:
    # Stored as text, not jsonb, which would reorder the keys, read 1e16 back as an integer and
    # refuse a NUL character that every other backend keeps.
    store = make_store()
    meta = {"z": 1, "a": {"y": 2.5, "b": [1, "two", None]}, "": "empty key", "big": 1e16}
    meta["nul"] = "a\x00b"
    store.save_with_metadata({"v": 1}, "s", metadata=meta)
    loaded = store.load_with_metadata("s")
    assert loaded is not None
    assert loaded[1].metadata == meta
    assert list(loaded[1].metadata) == list(meta)
    assert isinstance(loaded[1].metadata["big"], float)


@on_postgres
def test_metadata_can_be_queried_in_sql_as_jsonb(make_store: Factory) -> None:
    """The views states_metadata and versions_metadata serve SQL that filters on metadata;
    a NUL character, which jsonb refuses, shows as NULL instead of failing the query."""
    store = make_store(max_versions=None)
    store.save_with_metadata({"v": 1}, "s", metadata={"step": 1, "by": "agent"})
    store.save_with_metadata({"v": 2}, "s", metadata={"step": 2, "big": 1e16})
    store.save_with_metadata({"v": 1}, "t", metadata={"nul": "a\x00b"})
    store.save_with_metadata({"v": 1}, "u", metadata={"text": "\\u0000", "step": 3})
    schema = store.schema
    with admin() as conn:
        versions = conn.execute(
            f'SELECT state_id, version FROM "{schema}".versions_metadata'
            " WHERE metadata @> '{\"step\": 1}'"
        ).fetchall()
        latest = conn.execute(
            f"SELECT state_id, version, metadata ->> 'step' FROM \"{schema}\".states_metadata"
            " ORDER BY state_id"
        ).fetchall()
        kind = conn.execute(
            "SELECT table_name, data_type FROM information_schema.columns WHERE table_schema = %s"
            " AND column_name = 'metadata' AND table_name LIKE '%%_metadata' ORDER BY 1",
            [schema],
        ).fetchall()
    assert versions == [("s", 1)]
    # "\\u0000" in a string is a backslash and "u0000", which jsonb holds: not NULL.
    assert latest == [("s", 2, "2"), ("t", 1, None), ("u", 1, "3")]
    assert kind == [("states_metadata", "jsonb"), ("versions_metadata", "jsonb")]


@on_postgres
def test_describe_hides_the_password_and_stats_show_the_server(make_store: Factory) -> None:
    store = make_store()
    secret = PostgresStatePersistence(
        POSTGRES_DSN.replace("postgres@", "postgres:s3cret@"), schema=store.schema
    )
    try:
        assert "s3cret" not in secret.describe() and "s3cret" not in repr(secret)
        assert secret.schema in secret.describe()
    finally:
        secret.close()
    store.save_with_metadata({"v": 1}, "s")
    info = store.get_stats()["postgres_info"]
    assert info["server_version"] and info["database_size"] > 0
    assert set(info["table_sizes"]) == {"states", "versions", "checkpoints"}
    assert info["pool"]["pool_max"] == 10 and info["connections"] >= 1


# The latest version's figures that states repeats (migration 2); they must always agree.
_FIGURES = (
    "created_at, size_bytes, original_size, compression, checksum, tags, ttl_seconds,"
    " metadata, write_id"
)


def stale_figures(store: PostgresStatePersistence) -> list[Any]:
    """States whose copy of the latest version's figures differs from that version."""
    schema = f'"{store.schema}"'
    query = (
        f"SELECT s.state_id FROM {schema}.states s LEFT JOIN {schema}.versions v"
        " ON v.state_id = s.state_id AND v.version = s.latest_version"
        f" WHERE v.version IS NULL OR (s.{_FIGURES.replace(', ', ', s.')})"
        f" IS DISTINCT FROM (v.{_FIGURES.replace(', ', ', v.')})"
    )
    with admin() as conn:
        return [sid for (sid,) in conn.execute(query)]


@on_postgres
def test_states_keep_the_latest_versions_figures_through_every_write(
    make_store: Factory, clock: FakeClock
) -> None:
    store = make_store(clock=clock, max_versions=3)
    store.save_with_metadata({"v": 1}, "a", tags=["x"], ttl_seconds=60, metadata={"m": 1})
    store.save_with_metadata({"v": 2}, "a", metadata={"m": 2}, write_id="w2")  # inherits tags
    store.save_with_metadata({"v": 2}, "a", metadata={"m": 2}, write_id="w2")  # a retry
    store.save_many([{"state_id": f"b{i}", "state": {"i": i}, "tags": ["y"]} for i in range(5)])
    store.save_with_metadata({"v": 3}, "a", tags=["z"], metadata={"m": 3})
    store.rollback("a", 2, metadata={"why": "test"})
    assert store.delete_version("a", 4)  # the latest: version 3's figures come back
    store.save_with_metadata({"v": 1}, "old", tags=["x"], ttl_seconds=10)
    clock.advance(30)
    store.save_with_metadata({"v": 9}, "old", tags=["w"], write_id="again")  # revived
    assert stale_figures(store) == []
    hits = store.search_by_tags(["z"])
    assert hits == [store.load_with_metadata("a")[1]]  # type: ignore[index]
    assert hits[0].version == 3 and hits[0].metadata == {"m": 3}
    # A pruning save trusts the version counter (PRETRIM): every write keeps it exact.
    assert store.prune_versions(max_versions=1) > 0
    assert drifted_counters(store) == []


def drifted_counters(store: PostgresStatePersistence) -> list[Any]:
    """States whose counters (count, sizes, oldest kept version) differ from their versions."""
    schema = f'"{store.schema}"'
    query = f"""
        SELECT s.state_id FROM {schema}.states s LEFT JOIN (
            SELECT state_id, count(*) AS n, sum(size_bytes) AS size,
                sum(original_size) AS orig, min(version) AS oldest
            FROM {schema}.versions GROUP BY state_id) v ON v.state_id = s.state_id
        WHERE (s.version_count, s.stored_bytes, s.original_bytes)
            IS DISTINCT FROM (v.n, v.size, v.orig)
            OR (s.pruned_below > 0 AND s.pruned_below <> v.oldest)"""
    with admin() as conn:
        return [sid for (sid,) in conn.execute(query)]


@on_postgres
def test_a_pruning_save_writes_the_states_row_once_and_keeps_its_counters(
    make_store: Factory,
) -> None:
    store = make_store(max_versions=3)
    store.save_with_metadata({"v": 0}, "a")
    schema = f'"{store.schema}"'
    with admin() as conn:  # every write of a states row, counted by a trigger
        conn.execute(f"CREATE TABLE {schema}.row_writes (state_id text)")
        conn.execute(
            f"CREATE FUNCTION {schema}.count_write() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$BEGIN INSERT INTO {schema}.row_writes VALUES (NEW.state_id); RETURN NULL; END$$"
        )
        conn.execute(
            f"CREATE TRIGGER count_write AFTER UPDATE ON {schema}.states"
            f" FOR EACH ROW EXECUTE FUNCTION {schema}.count_write()"
        )

    def row_writes() -> int:
        with admin() as conn:
            return conn.execute(f"SELECT count(*) FROM {schema}.row_writes").fetchone()[0]

    for n in range(1, 8):  # from the fourth version on, each save prunes the oldest
        store.save_with_metadata({"v": n, "pad": "x" * n}, "a", write_id=f"w{n}")
    assert row_writes() == 7  # once per save, pruning or not (it used to be twice)
    assert [m.version for m in store.list_versions("a")] == [6, 7, 8]
    with pytest.raises(VersionPrunedError):
        store.load_with_metadata("a", version=5)
    # Refused saves at the limit prune nothing: a retried write_id and a stale version.
    store.save_with_metadata({"v": 7, "pad": "x" * 7}, "a", write_id="w7")
    with pytest.raises(VersionConflictError):
        store.save_with_metadata({"v": 9}, "a", version=8)
    assert [m.version for m in store.list_versions("a")] == [6, 7, 8]
    # A store keeping fewer drops every extra version in the one save.
    make_store(where=store.schema, max_versions=1).save_with_metadata({"v": 9}, "a")
    assert [m.version for m in store.list_versions("a")] == [9]
    with pytest.raises(VersionPrunedError):
        store.load_with_metadata("a", version=8)
    assert drifted_counters(store) == [] and stale_figures(store) == []
    assert store.get_stats()["total_versions"] == 1


@on_postgres
@pytest.mark.parametrize("drift", [1, 5])
def test_a_version_counter_found_too_high_never_costs_the_newest_versions(
    make_store: Factory, drift: int
) -> None:
    store = make_store(max_versions=3)
    for n in range(1, 6):
        store.save_with_metadata({"n": n}, "a")
    with admin() as conn:  # what no write does: a counter that no longer matches the versions
        conn.execute(
            f'UPDATE "{store.schema}".states SET version_count = version_count + %s', [drift]
        )
    store.save_with_metadata({"n": 6}, "a")
    assert [m.version for m in store.list_versions("a")] == [4, 5, 6]
    assert store.load_with_metadata("a", version=4)[0] == {"n": 4}  # type: ignore[index]


@on_postgres
def test_a_pruning_save_that_waited_for_another_writer_keeps_the_newest_versions(
    make_store: Factory,
) -> None:
    store = make_store(max_versions=3)
    for n in range(1, 4):
        store.save_with_metadata({"n": n}, "a")
    request = store._request({"n": 4}, "a", None, None, None, None, None)
    with admin() as other:  # another writer's save of "a", its transaction held open
        other.execute("BEGIN")
        other.execute(store._q.save, _save_params(request, store.clock()))
        writer = started_waiting(store, lambda: store.save_with_metadata({"n": 5}, "a"))
        assert backends_of(store, "waiting")
        # The waiting save's lock returns the row as this writer leaves it (version 4 added,
        # version 1 dropped), while the versions it reads are still those of before.
        other.execute("COMMIT")
        writer.join(timeout=30)
    assert [m.version for m in store.list_versions("a")] == [3, 4, 5]
    assert store.load_with_metadata("a", version=3)[0] == {"n": 3}  # type: ignore[index]
    assert drifted_counters(store) == []


@on_postgres
def test_a_pruning_save_that_waited_for_a_revive_keeps_the_newest_versions(
    make_store: Factory, clock: FakeClock
) -> None:
    store = make_store(max_versions=3, clock=clock)
    for n in (10, 20, 30):
        store.save_with_metadata({"n": n}, "a", version=n, ttl_seconds=60)
    clock.advance(120)  # expired: the next save starts it afresh, numbered from 1
    with admin() as other:  # another writer revives it at 1, then saves 2 and 100
        other.execute("BEGIN")
        for n in (1, 2, 100):
            request = store._request({"n": n}, "a", n, None, None, None, None)
            other.execute(store._q.save, _save_params(request, store.clock()))
        writer = started_waiting(store, lambda: store.save_with_metadata({"n": 101}, "a"))
        assert backends_of(store, "waiting")
        # The waiting save's statement began while versions 10, 20 and 30 were still there.
        other.execute("COMMIT")
        writer.join(timeout=30)
    assert not writer.is_alive()
    assert [m.version for m in store.list_versions("a")] == [2, 100, 101]
    assert drifted_counters(store) == []


@on_postgres
def test_an_old_store_is_upgraded_with_the_latest_figures_in_states(make_store: Factory) -> None:
    store = make_store(max_versions=None)
    for n in range(3):
        store.save_with_metadata(
            {"n": n},
            "a",
            tags=["t", f"n{n}"],
            ttl_seconds=3600,
            metadata={"n": n},
            write_id=f"w{n}",
        )
    store.save_many([{"state_id": f"b{i}", "state": {"i": i}, "tags": ["t"]} for i in range(20)])
    before = store.search_by_tags(["t"])
    assert len(before) == 21
    store.close()
    # Take the schema back to version 1, as a store written by an older release left it.
    with admin() as conn:
        schema = store.schema
        conn.execute(f'DROP VIEW "{schema}".states_metadata, "{schema}".versions_metadata')
        conn.execute(
            f'ALTER TABLE "{schema}".states DROP COLUMN created_at, DROP COLUMN checksum,'
            " DROP COLUMN ttl_seconds, DROP COLUMN metadata, DROP COLUMN write_id"
        )
        conn.execute(f'DELETE FROM "{store.schema}".schema_version WHERE version > 1')
    upgraded = make_store(where=store.schema, max_versions=None)
    assert upgraded.search_by_tags(["t"]) == before
    assert stale_figures(upgraded) == []
    with admin() as conn:
        recorded = conn.execute(f'SELECT version FROM "{store.schema}".schema_version').fetchall()
    assert sorted(v for (v,) in recorded) == [version for version, _ in MIGRATIONS]


@on_postgres
def test_a_changed_save_function_is_created_beside_the_one_older_code_calls(
    make_store: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # During a rolling upgrade, processes with the old and the new code share one schema:
    # each must keep calling the save function its own code was written against.
    old = make_store()
    old.save_with_metadata({"n": 1}, "s", tags=["t"])
    from persistence.backends import postgres_sql

    changed = postgres_sql.SAVE_FUNCTION.replace("BEGIN", "BEGIN\n    -- a later release", 1)
    monkeypatch.setattr(postgres_sql, "SAVE_FUNCTION", changed)
    new = make_store(where=old.schema)
    assert new._q.save_name != old._q.save_name
    new.save_with_metadata({"n": 2}, "s")
    old.save_with_metadata({"n": 3}, "s")
    assert [m.version for m in new.list_versions("s")] == [1, 2, 3]
    assert new.load_with_metadata("s")[1].tags == ("t",)
    with admin() as conn:
        functions = conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = %s ORDER BY 1",
            [old.schema],
        ).fetchall()
    assert sorted(name for (name,) in functions) == sorted([old._q.save_name, new._q.save_name])


@on_postgres
def test_a_renamed_schema_and_one_with_dollar_quotes_in_its_name_keep_saving(
    make_store: Factory,
) -> None:
    odd = make_store(where=f"odd$save$name$s_{uuid.uuid4().hex[:6]}")
    odd.save_with_metadata({"n": 1}, "s")
    assert odd.load_with_metadata("s")[0] == {"n": 1}

    store = make_store()
    store.save_with_metadata({"n": 1}, "s")
    store.close()
    renamed = f"{store.schema}_renamed"
    with admin() as conn:
        conn.execute(f'ALTER SCHEMA "{store.schema}" RENAME TO "{renamed}"')
    moved = make_store(where=renamed)
    moved.save_with_metadata({"n": 2}, "s")
    assert [m.version for m in moved.list_versions("s")] == [1, 2]


@pytest.mark.slow
@on_postgres
def test_a_save_that_loses_a_deadlock_is_retried(make_store: Factory) -> None:
    store = make_store(max_size=1)
    store.save_many([{"state_id": sid, "state": {"n": 0}} for sid in ("p", "q")])
    table = f'"{store.schema}".states'
    outcome: list[object] = []

    def save_q_then_p() -> None:
        try:
            outcome.append(
                store.save_many([{"state_id": sid, "state": {"n": 1}} for sid in ("q", "p")])
            )
        except Exception as exc:
            outcome.append(exc)

    with admin() as other:
        other.execute("SET deadlock_timeout = '30s'")  # the store's session detects it first
        other.execute("BEGIN")
        other.execute(f"SELECT FROM {table} WHERE state_id = 'p' FOR UPDATE")
        writer = started_waiting(store, save_q_then_p)
        # The store holds q and waits for p; taking q closes the cycle. The store's session is
        # the one the server rolls back, and the store tries its save again.
        other.execute(f"SELECT FROM {table} WHERE state_id = 'q' FOR UPDATE")
        other.execute("COMMIT")
        writer.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], list), outcome
    assert [store.load_with_metadata(sid)[1].version for sid in ("p", "q")] == [2, 2]


@on_postgres
def test_a_server_error_inside_the_save_reads_as_its_message_not_the_sql(
    make_store: Factory,
) -> None:
    store = make_store()
    store.save_with_metadata({"n": 0}, "s")
    slow = PostgresStatePersistence(
        f"{POSTGRES_DSN}?options=-c%20statement_timeout%3D300", schema=store.schema
    )
    try:
        with admin() as other:
            other.execute("BEGIN")
            other.execute(f"SELECT FROM \"{store.schema}\".states WHERE state_id = 's' FOR UPDATE")
            with pytest.raises(BackendUnavailableError) as caught:
                slow.save_with_metadata({"n": 1}, "s")
            other.execute("ROLLBACK")
    finally:
        slow.close()
    message = str(caught.value)
    assert "statement timeout" in message
    assert "SELECT" not in message and len(message) < 200, message
    assert store.load_with_metadata("s")[1].version == 1  # the timed-out save wrote nothing


@pytest.mark.slow
@on_postgres
def test_search_and_tag_pages_read_only_states_and_are_planned_per_tag(
    make_store: Factory,
) -> None:
    store = make_store(min_size=1, max_size=1)
    for start in range(0, 4000, 1000):
        store.save_many(
            [
                {
                    "state_id": f"s{i:05d}",
                    "state": {"i": i},
                    "tags": ["common"] + ["rare"] * (i == 7),
                }
                for i in range(start, start + 1000)
            ]
        )
    with admin() as conn:
        conn.execute(f'ANALYZE "{store.schema}".states, "{store.schema}".versions')
        params = {"tags": ["rare"], "limit": 1000, "now": time.time()}
        for query in (store._q.search_all, store._q.search_any):
            (plan,) = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()
            nodes = list(plan_nodes(plan[0]["Plan"]))
            assert {n["Relation Name"] for n in nodes if "Relation Name" in n} == {"states"}
            assert any(n.get("Index Name") == "states_tags" for n in nodes), nodes
    # Many pages of a common tag must not leave a generic plan behind for a rare one.
    for _ in range(12):
        store.page_states(tags=["common"], order="-updated", limit=10)
        store.page_states(prefix="s0", order="-updated", limit=10)
    page = store.page_states(tags=["rare"], order="-updated", limit=10)
    assert [s.state_id for s in page.items] == ["s00007"]
    conn = store._conns.pool.getconn()
    try:
        prepared = [s for (s,) in conn.execute("SELECT statement FROM pg_prepared_statements")]
    finally:
        store._conns.pool.putconn(conn)
    assert not [s for s in prepared if "tags @>" in s or "LIKE" in s]


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://postgres@127.0.0.1:notaport/test", "port 'notaport'"),
        ("postgresql://postgres@127.0.0.1:5432/test?schema=x", "query parameter"),
        ("postgresql://postgres@127.0.0.1:5432/test?sslmode=bogus", "sslmode 'bogus'"),
    ],
)
def test_a_mistake_in_the_dsn_is_a_value_error_naming_it(dsn: str, message: str) -> None:
    """A ConnectionError would make a typo look like a server that is down, and code that
    falls back to another store on one (as the seed's example does) would quietly use it."""
    with pytest.raises(ValueError, match=message) as info:
        connect(dsn, schema=f"t{uuid.uuid4().hex[:12]}")
    assert not isinstance(info.value, ConnectionError)
