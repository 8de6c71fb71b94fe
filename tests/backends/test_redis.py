"""Redis-only properties: round trips, cluster slots, native TTL, connection failures, restarts.

Everything runs against real servers: the shared one (REDIS_URL, each test in its own
namespace) or a throwaway ``redis-server`` a ``faults`` test starts and kills itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from persistence import (
    BackendUnavailableError,
    OutcomeUnknownError,
    PersistenceError,
    VersionConflictError,
    connect,
)
from persistence.backends.redis import RedisStatePersistence, _check_server_version
from tests.conftest import REDIS_URL, FakeClock, missing, run_threads

HOSTILE_IDS = ["plain", "{}", "}{", "a{b}c", "{x", "y}", "{{z}}", "a:b:{c}", "é {🚀}"]


@pytest.fixture
def open_redis(namespace: str, raw: redis.Redis) -> Iterator[Callable[..., RedisStatePersistence]]:
    opened: list[RedisStatePersistence] = []

    def factory(**options: Any) -> RedisStatePersistence:
        store = RedisStatePersistence(REDIS_URL, namespace=namespace, **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def state_keys(raw: redis.Redis, namespace: str) -> dict[str, list[bytes]]:
    """Every per-state key of a namespace, grouped by state id (global indexes left out)."""
    grouped: dict[str, list[bytes]] = {}
    for key in raw.scan_iter(match=f"{namespace}:*", count=1000):
        if key.startswith(f"{namespace}:{{_}}:".encode()):
            continue
        kind_and_id = key.split(b"}:", 1)[1]
        grouped.setdefault(kind_and_id[2:].decode(), []).append(key)
    return grouped


# ---------------------------------------------------------------- one round trip


def round_trips(
    raw: redis.Redis, client_name: str, action: Callable[[], object]
) -> tuple[int, list[str]]:
    """How many times the store wrote to its socket while ``action`` ran, and the commands
    the server executed for it (seen through MONITOR, so script-internal calls are left out).

    MONITOR is filtered on the store's own address, which keeps other tests' traffic out; a
    marker sent last by another connection tells when everything has been seen."""
    line = next(c for c in raw.client_list() if c["name"] == client_name)
    host, port = line["addr"].rsplit(":", 1)
    marker = f"end-{uuid.uuid4().hex}"
    seen: list[str] = []
    sends = 0
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(conn: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sends
        sends += 1
        original(conn, command, check_health)

    with raw.monitor() as monitor:
        redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
        try:
            action()
        finally:
            redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
        raw.echo(marker)
        while True:
            entry = monitor.next_command()
            if marker in entry["command"]:
                return sends, seen
            if (entry["client_address"], entry["client_port"]) == (host, port):
                seen.append(entry["command"].split(" ", 1)[0].upper())


def test_every_call_is_one_round_trip(open_redis, raw: redis.Redis) -> None:
    name = f"rt-{uuid.uuid4().hex[:8]}"
    store = open_redis(redis_options={"client_name": name, "max_connections": 1})
    # Connect and have the server cache every script, so a first use's NOSCRIPT reload
    # (a fresh server, or a script changed since) is not counted below.
    for n in range(2):
        store.save_with_metadata({"warm": n}, "warm-up", tags=["w"])
    store.load_with_metadata("warm-up", version=1)
    store.page_states(tags=["w"], order="-updated")
    store.search_by_tags(["w"])
    store.list_versions("warm-up")
    store.delete_version("warm-up", 1)
    state = {"messages": [{"role": "user", "text": "hi" * 50}] * 5}
    one_script = (1, ["EVALSHA"])
    assert (
        round_trips(
            raw, name, lambda: store.save_with_metadata(state, "s", tags=["a", "b"], ttl_seconds=60)
        )
        == one_script
    )
    batch = [{"state_id": f"b{i}", "state": state, "tags": ["x"]} for i in range(20)]
    assert round_trips(raw, name, lambda: store.save_many(batch)) == one_script
    # Loading the latest version needs no script at all, only one HMGET.
    assert round_trips(raw, name, lambda: store.load_with_metadata("s")) == (1, ["HMGET"])
    assert round_trips(raw, name, lambda: store.load_with_metadata("s", version=1)) == one_script
    assert round_trips(raw, name, lambda: store.load_many(["s", "warm-up", "missing"])) == (
        1,
        ["HMGET"] * 3,
    )  # pipelined
    for action in (
        lambda: store.page_states(tags=["x"], order="-updated"),
        lambda: store.search_by_tags(["a", "b"]),
        lambda: store.list_versions("s"),
        lambda: store.delete_version("s", 1),
    ):
        assert round_trips(raw, name, action) == one_script


# ---------------------------------------------------------------- connections


def test_a_connection_the_server_closed_between_calls_is_reopened(open_redis, raw) -> None:
    name = f"cl-{uuid.uuid4().hex[:8]}"
    store = open_redis(redis_options={"client_name": name, "max_connections": 1})
    store.save_with_metadata({"v": 0}, "s")
    for n in (1, 2):  # a client timeout or an operator's CLIENT KILL, then the next call
        (line,) = [c for c in raw.client_list() if c["name"] == name]
        raw.client_kill_filter(_id=line["id"])
        assert store.save_with_metadata({"v": n}, "s").version == n + 1
        loaded = store.load_with_metadata("s")
        assert loaded is not None and loaded[0] == {"v": n}


def test_connections_stay_within_max_connections_when_threads_mix_calls(open_redis) -> None:
    # Saves and loads keep their connection between calls; pipelines and reply-parsing calls
    # go through redis-py's pool, which must still find one there under max_connections.
    store = open_redis(redis_options={"max_connections": 2})

    def work(n: int) -> None:
        for i in range(150):
            sid = f"t{n}-{i % 5}"
            store.save_with_metadata({"n": n, "i": i}, sid, tags=[f"t{n}"])
            loaded = store.load_with_metadata(sid)
            assert loaded is not None and loaded[0] == {"n": n, "i": i}
            assert store.load_many([sid])[sid] is not None  # a pipeline
            assert (f"t{n}", 5 if i >= 4 else i + 1) in store.list_tags()  # via the client

    assert run_threads(work, 2) == []


@pytest.mark.parametrize("in_url", [False, True])
def test_threads_beyond_max_connections_wait_their_turn(raw, namespace, in_url: bool) -> None:
    # The seed's pooling example: max_connections=20. redis-py's own pool fails the 21st
    # caller at once ("Too many connections"); the store's calls wait for a connection,
    # whether max_connections comes in redis_options or in the URL.
    name = f"pool-{uuid.uuid4().hex[:8]}"
    url, options = REDIS_URL, {"max_connections": 3, "client_name": name}
    if in_url:
        url += "?max_connections=3"
        del options["max_connections"]
    store = RedisStatePersistence(url, options, namespace=namespace)
    barrier = threading.Barrier(12)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(40):
            store.save_with_metadata({"n": n, "i": i}, f"w{n}", tags=["pool"])
            assert store.load_many([f"w{n}"])[f"w{n}"] is not None  # a pipeline
            if i % 10 == 0:
                store.get_stats()  # INFO, through redis-py's client
        assert store.load_with_metadata(f"w{n}") is not None

    try:
        assert run_threads(work, 12) == []
        assert len(store.search_by_tags(["pool"])) == 12
        clients = [c for c in raw.client_list() if c["name"] == name]
        assert 1 <= len(clients) <= 3
    finally:
        store.close()


def test_a_pool_of_one_serves_every_kind_of_call_in_turn(open_redis) -> None:
    # Each kind of call hands the one connection back to the pool, or the next call would
    # wait out pool_timeout and fail.
    store = open_redis(redis_options={"max_connections": 1}, pool_timeout=0.5)
    for i in range(3):
        store.save_with_metadata({"v": i}, "s", tags=["t"])  # a script
        assert store.load_with_metadata("s") is not None  # HMGET
        assert store.load_many(["s"])["s"] is not None  # a pipeline
        assert store.list_tags() == [("t", 1)]  # redis-py's client
        assert store.get_stats()["redis_info"]  # INFO
        assert [m.version for m in store.list_versions("s")][-1] == i + 1


def test_a_call_that_finds_every_connection_busy_past_pool_timeout_says_so(open_redis) -> None:
    store = open_redis(redis_options={"max_connections": 1}, pool_timeout=0.3)
    store.save_with_metadata({"v": 1}, "s")
    held = store._pool.get_connection()  # as a call in another thread would hold it
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="max_connections") as info:
            store.load_with_metadata("s")
        assert 0.25 < time.monotonic() - started < 3
        assert not isinstance(info.value, OutcomeUnknownError)
    finally:
        store._pool.release(held)
    loaded = store.load_with_metadata("s")  # the connection came back: calls go on
    assert loaded is not None and loaded[0] == {"v": 1}


def test_a_forked_child_uses_its_own_connection(open_redis, raw) -> None:
    # A child sharing its parent's socket would read the parent's replies as its own.
    name = f"fork-{uuid.uuid4().hex[:8]}"
    store = open_redis(redis_options={"client_name": name, "socket_timeout": 5})
    store.save_with_metadata({"who": "parent"}, "p")  # opens the connection a child inherits
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never through pytest
        ok = False
        try:
            store.save_with_metadata({"who": "child"}, "c")
            loaded = store.load_with_metadata("c")
            ok = loaded is not None and loaded[0] == {"who": "child"}
            os.write(ready_w, b"x")
            os.read(done_r, 1)  # keep the connection open while the parent counts
        finally:
            os._exit(0 if ok else 1)
    try:
        assert os.read(ready_r, 1) == b"x"
        connections = [c for c in raw.client_list() if c["name"] == name]
        loaded = store.load_with_metadata("p")
        assert loaded is not None and loaded[0] == {"who": "parent"}
    finally:
        os.write(done_w, b"x")
        _, status = os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(connections) == 2  # the parent's and the child's own


# ---------------------------------------------------------------- layout


def test_every_key_of_a_state_is_in_one_cluster_slot(open_redis, raw, namespace) -> None:
    store = open_redis(max_versions=3)
    for sid in HOSTILE_IDS:
        for n in range(4):
            store.save_with_metadata({"n": n}, sid, tags=["{t}"], ttl_seconds=600, write_id=f"w{n}")
        store.create_checkpoint(sid, {"c": 1})
    grouped = state_keys(raw, namespace)
    assert set(grouped) == set(HOSTILE_IDS)
    for sid, keys in grouped.items():
        assert len(keys) == 3, (sid, keys)  # the state hash, its versions, its checkpoints
        assert len({key_slot(k) for k in keys}) == 1, sid
    globals_ = list(raw.scan_iter(match=f"{namespace}:{{_}}:*"))
    assert len({key_slot(k) for k in globals_}) == 1  # the indexes can be used together


def test_native_ttl_is_set_on_every_key_of_a_state(open_redis, raw, namespace) -> None:
    store = open_redis()  # the real clock
    started = time.monotonic()
    for sid in HOSTILE_IDS:
        store.save_with_metadata({"v": 1}, sid, ttl_seconds=60)
        store.create_checkpoint(sid, {"step": 1})
        store.save_with_metadata({"v": 2}, sid, ttl_seconds=60)
    for sid, keys in state_keys(raw, namespace).items():
        assert len(keys) == 3, (sid, keys)
        for key in keys:
            elapsed_ms = (time.monotonic() - started) * 1000
            if key.split(b"}:", 1)[1].startswith(b"c:"):
                # Checkpoints are the one exception, on every backend: they never expire
                # (docs/GUARANTEES.md); deleting the state deletes them.
                assert raw.pttl(key) == -1, (sid, key)
                continue
            # Expiry is set in whole milliseconds rounded up: up to 1 ms over the TTL.
            assert 59_000 - elapsed_ms < raw.pttl(key) <= 60_001, (sid, key)
    store.save_with_metadata({"v": 3}, "plain")  # no TTL any more: the keys persist
    assert all(raw.pttl(k) == -1 for k in state_keys(raw, namespace)["plain"])


@pytest.mark.parametrize("start", [1_000_000_000.0, 4_000_000_000.0])
def test_a_store_clock_far_from_the_servers_never_loses_live_data(
    open_redis, raw, namespace, start: float
) -> None:
    # In the past, expires_at is already behind the server's clock; in the future it is far
    # ahead. Either way Redis keeps the keys at least the TTL, and the store clock decides.
    clock = FakeClock(start)
    store = open_redis(clock=clock)
    started = time.monotonic()
    store.save_with_metadata({"v": 1}, "s", ttl_seconds=30)
    keys = state_keys(raw, namespace)["s"]
    elapsed_ms = (time.monotonic() - started) * 1000
    assert all(raw.pttl(k) >= 29_000 - elapsed_ms for k in keys)
    assert store.load_with_metadata("s") is not None
    clock.advance(31)
    assert store.load_with_metadata("s") is None


def test_purge_cleans_indexes_of_states_redis_already_expired(open_redis, raw, namespace):
    clock = FakeClock(1_000_000_000.0)  # expires_at lies behind the server's clock
    store = open_redis(clock=clock)
    store.save_with_metadata({"v": 1}, "gone", tags=["t"], ttl_seconds=60)
    store.save_with_metadata({"v": 1}, "kept", tags=["t"])
    assert store.purge_expired() == 0  # still live on the store clock and in Redis
    raw.delete(*state_keys(raw, namespace)["gone"])  # what Redis does when the TTL runs out
    assert store.purge_expired() == 1
    assert store.list_tags() == [("t", 1)]
    stats = store.get_stats()
    assert (stats["total_states"], stats["total_versions"]) == (1, 1)
    assert raw.zcard(f"{namespace}:{{_}}:ids") == 1
    assert store.purge_expired() == 0


def test_counts_are_kept_by_the_scripts_and_exact_after_purge(open_redis) -> None:
    clock = FakeClock()
    store = open_redis(clock=clock, max_versions=2)
    for i in range(5):
        store.save_with_metadata({"i": i, "pad": "x" * 300}, f"s{i}", ttl_seconds=10 + i)
        store.save_with_metadata({"i": i}, f"s{i}")
        store.save_with_metadata({"i": i}, f"s{i}", ttl_seconds=10 + i)
    store.create_checkpoint("s0", {"c": 1})
    stats = store.get_stats()
    assert (stats["total_states"], stats["total_versions"], stats["total_checkpoints"]) == (
        5,
        10,
        1,
    )
    clock.advance(11.5)  # s0 and s1 expire
    stats = store.get_stats()
    assert (stats["total_states"], stats["total_versions"]) == (3, 6)
    assert store.purge_expired() == 2
    after = store.get_stats()
    assert (after["total_states"], after["total_versions"]) == (3, 6)
    assert after["stored_bytes"] == stats["stored_bytes"]


def test_redis_info_reports_memory_clients_commands_and_the_stores_db(
    open_redis, raw, namespace
) -> None:
    store = open_redis()
    store.save_with_metadata({"v": 1}, "s", tags=["t"], ttl_seconds=600)
    ours = len(list(raw.scan_iter(match=f"{namespace}:*", count=1000)))
    info = store.get_stats()["redis_info"]
    assert info["namespace"] == namespace
    assert isinstance(info["used_memory"], int) and info["used_memory"] > 0
    assert isinstance(info["used_memory_human"], str) and info["used_memory_human"][-1] in "BKMG"
    assert info["connected_clients"] >= 2  # the store's and the raw client's at least
    assert info["total_commands_processed"] > 0
    # Keyspace is the server's per-db figures, keyed "db<n>"; the store's db holds its keys
    # (other tests share this server, so at least ours) and, with the TTL, expiring ones.
    db = f"db{store._pool.connection_kwargs.get('db', 0)}"
    assert db in info["keyspace"]
    figures = info["keyspace"][db]
    assert ours > 0 and figures["keys"] >= ours and figures["expires"] > 0
    assert info["maxmemory_policy"] == raw.info("memory")["maxmemory_policy"]
    before = info["total_commands_processed"]
    assert store.get_stats()["redis_info"]["total_commands_processed"] > before


def _snapshot(raw: redis.Redis, namespace: str) -> dict[bytes, tuple[Any, int]]:
    """Every key of the namespace: its contents, read by type (a DUMP is no snapshot: a
    hash's serialized order changes as Redis rehashes it on reads), and its PTTL."""
    read = {
        b"hash": raw.hgetall,
        b"zset": lambda key: raw.zrange(key, 0, -1, withscores=True),
        b"set": raw.smembers,
        b"string": raw.get,
    }
    keys = sorted(raw.scan_iter(match=f"{namespace}:*", count=1000))
    return {key: (read[raw.type(key)](key), raw.pttl(key)) for key in keys}


def test_a_refused_save_leaves_every_key_as_it_was(open_redis, raw, namespace) -> None:
    """Not only what the API shows: the script refuses before its first write, so no key,
    index, counter or expiry of the namespace changes."""
    store = open_redis(max_versions=3)
    for n in range(4):
        store.save_with_metadata({"n": n}, "s", tags=["a", "b"], ttl_seconds=600)
    store.save_with_metadata({"n": 0}, "other", tags=["b"])
    started = time.monotonic()
    before = _snapshot(raw, namespace)
    with pytest.raises(VersionConflictError):
        store.save_with_metadata({"n": 9}, "s", version=2, tags=["c"], ttl_seconds=5)
    with pytest.raises(VersionConflictError):  # the second item is refused: the first too
        store.save_many(
            [
                {"state_id": "new", "state": {"n": 1}, "tags": ["c"]},
                {"state_id": "other", "state": {"n": 2}, "version": 1},
            ]
        )
    after = _snapshot(raw, namespace)
    elapsed_ms = (time.monotonic() - started) * 1000 + 5
    assert {k: v for k, (v, _) in after.items()} == {k: v for k, (v, _) in before.items()}
    for key, (_, pttl) in after.items():  # an expiry only ran on: none was set or moved
        was = before[key][1]
        assert (pttl < 0) == (was < 0), key
        assert pttl < 0 or was - elapsed_ms <= pttl <= was, key


def test_a_server_error_inside_a_call_is_translated(open_redis, raw, namespace) -> None:
    """A reply error that is not about the connection (here a key of the wrong type, as a
    foreign writer would leave) reaches callers as PersistenceError, the driver's as cause."""
    store = open_redis()
    store.save_with_metadata({"v": 1}, "s")
    (hash_key,) = [k for k in raw.scan_iter(match=f"{namespace}:*:h:s") if b"{_}" not in k]
    raw.delete(hash_key)
    raw.set(hash_key, "not a hash")
    with pytest.raises(PersistenceError) as info:
        store.load_with_metadata("s")
    assert isinstance(info.value.__cause__, redis.ResponseError)
    assert not isinstance(info.value, ConnectionError)  # the server is up: not "unavailable"


@pytest.mark.faults  # a throwaway server of its own, as the fault tests start
def test_a_server_that_evicts_keys_is_named_at_construction(server, caplog) -> None:
    srv = server("--maxmemory-policy", "allkeys-lru")
    with caplog.at_level("WARNING", logger="persistence.backends.redis"):
        RedisStatePersistence(srv.url).close()
    assert "maxmemory-policy allkeys-lru" in caplog.text
    caplog.clear()
    quiet = server("--maxmemory-policy", "noeviction")
    with caplog.at_level("WARNING", logger="persistence.backends.redis"):
        RedisStatePersistence(quiet.url).close()
    assert "evicts" not in caplog.text


# ---------------------------------------------------------------- connection and options


def test_an_unreachable_server_raises_backend_unavailable_at_construction() -> None:
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        RedisStatePersistence("redis://127.0.0.1:1/0", {"socket_connect_timeout": 2})
    assert isinstance(info.value, ConnectionError)
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    with pytest.raises(ConnectionError):  # the seed's fallback example catches this
        connect("redis://127.0.0.1:1/0")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("version", ["5.0.7", "6.0.16", "6.1.0"])
def test_a_server_older_than_6_2_is_refused_by_name(version: str) -> None:
    with pytest.raises(BackendUnavailableError, match=f"version {version}; .* 6.2 or later"):
        _check_server_version(version, "redis://old-host:6379/0")


@pytest.mark.parametrize("version", ["6.2.0", "7.0.15", "8.0.2", "", "unknown"])
def test_a_server_of_6_2_or_later_or_an_unknown_fork_is_accepted(version: str) -> None:
    _check_server_version(version, "redis://host:6379/0")


def test_redis_options_reach_the_pool_and_replies_stay_bytes(open_redis) -> None:
    store = open_redis(
        redis_options={
            "max_connections": 3,
            "socket_timeout": 2.5,
            "socket_connect_timeout": 1.5,
            "retry_on_timeout": True,
            "socket_keepalive": True,
            "decode_responses": True,
        }
    )
    pool = store._pool
    assert pool.max_connections == 3
    kwargs = pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.5, 1.5)
    assert kwargs["socket_keepalive"] is True and kwargs["retry_on_timeout"] is True
    assert kwargs["decode_responses"] is False  # frames are bytes, whatever was asked
    big = {"blob": "é" * 5000}
    store.save_with_metadata(big, "s")
    loaded = store.load_with_metadata("s")
    assert loaded is not None and loaded[0] == big


def test_an_unreachable_server_error_never_shows_the_password(namespace: str) -> None:
    with pytest.raises(BackendUnavailableError) as info:
        RedisStatePersistence(
            "redis://user:s3cret@127.0.0.1:1/2?password=s3cret", namespace=namespace
        )
    assert "s3cret" not in str(info.value)


def test_a_bad_namespace_is_refused(raw) -> None:
    for bad in ("", "a{b}", "ns*", "a\nb"):
        with pytest.raises(ValueError, match="namespace"):
            RedisStatePersistence(REDIS_URL, namespace=bad)
    with pytest.raises(TypeError, match="namespace must be a str"):
        RedisStatePersistence(REDIS_URL, namespace=5)  # type: ignore[arg-type]


def test_a_pool_timeout_of_none_waits_for_a_connection_without_end(namespace: str) -> None:
    store = RedisStatePersistence(
        REDIS_URL, namespace=namespace, pool_timeout=None, redis_options={"max_connections": 1}
    )
    store.save_with_metadata({"a": 1}, "s")
    assert store._pool.timeout is None  # redis-py's BlockingConnectionPool: wait for ever
    store.delete_state("s")
    store.close()


@pytest.mark.parametrize(
    ("arguments", "error", "named"),
    [
        ({"redis_url": 5}, TypeError, "redis_url"),
        ({"redis_options": [("socket_timeout", 1)]}, TypeError, "redis_options"),
        ({"pool_timeout": "x", "redis_options": {"max_connections": 2}}, TypeError, "pool_timeout"),
        ({"pool_timeout": 0}, ValueError, "pool_timeout"),
        ({"clock": 5}, TypeError, "clock"),
    ],
)
def test_bad_constructor_arguments_are_refused_by_name(
    arguments: dict[str, Any], error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match=named):
        RedisStatePersistence(**{"redis_url": REDIS_URL, **arguments})


# ---------------------------------------------------------------- throwaway servers


class Server:
    """A throwaway redis-server this test owns: started, killed and restarted by pid.

    With ``tls`` (a directory ``make_certificates`` filled) it listens for TLS alone."""

    def __init__(self, workdir: Path, *extra: str, tls: Path | None = None) -> None:
        self.workdir, self.extra, self.tls = workdir, extra, tls
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        listen = ["--port", str(self.port)]
        ping_options: dict[str, Any] = {}
        if self.tls is not None:
            listen = [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls / "server.crt"),
                "--tls-key-file", str(self.tls / "server.key"),
                "--tls-ca-cert-file", str(self.tls / "ca.crt"),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
            ping_options = {"ssl": True, "ssl_ca_certs": str(self.tls / "ca.crt")}
        self.proc = subprocess.Popen(
            [
                "redis-server",
                *listen,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--daemonize",
                "no",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        password = dict(zip(self.extra[::2], self.extra[1::2], strict=True)).get("--requirepass")
        client = redis.Redis(
            "127.0.0.1", self.port, password=password, socket_connect_timeout=0.2, **ping_options
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None:  # e.g. a redis-server built without TLS
                    raise RuntimeError(f"redis-server {listen} exited at start") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


def make_certificates(directory: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 it signed, made with openssl:
    ``ca.crt``, ``server.crt`` and ``server.key`` in ``directory``, which is returned."""
    if shutil.which("openssl") is None:
        missing("openssl is not installed (needed to make test certificates)")
    directory.mkdir(exist_ok=True)
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\n"  # redis-py checks the host name by default
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        [
            "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=statehub test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
        [
            "req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1",
        ],
        [
            "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", "2", "-days", "1", "-extfile", "server.ext", "-out", "server.crt",
        ],
    ):  # fmt: skip
        subprocess.run(["openssl", *command], cwd=directory, check=True, capture_output=True)
    return directory


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed")
    started: list[Server] = []

    def start(*extra: str, tls: Path | None = None) -> Server:
        srv = Server(tmp_path, *extra, tls=tls)
        started.append(srv)  # before start: a server that never answered is killed too
        srv.start()
        return srv

    yield start
    for srv in started:
        srv.kill()


@pytest.mark.faults
def test_a_restarted_server_is_used_again_and_scripts_reload(server) -> None:
    srv = server()
    with RedisStatePersistence(srv.url, {"socket_timeout": 2}) as store:
        assert store.save_with_metadata({"v": 1}, "s", tags=["t"]).version == 1
        srv.kill()
        # While it is down every kind of call says so, translated: nothing of redis-py leaks,
        # and a write that was never sent leaves nothing to doubt (not OutcomeUnknownError).
        calls: list[Callable[[], object]] = [
            lambda: store.load_with_metadata("s"),
            lambda: store.save_with_metadata({"v": 2}, "s"),
            lambda: store.load_many(["s"]),  # a pipeline
            lambda: store.search_by_tags(["t"]),
            lambda: store.page_states(limit=5),
            lambda: store.list_tags(),  # through redis-py's client
            lambda: store.get_stats(),  # INFO
        ]
        for call in calls:
            with pytest.raises(BackendUnavailableError) as info:
                call()
            assert not isinstance(info.value, OutcomeUnknownError)
        srv.start()  # same port, empty: no data and no cached scripts (NOSCRIPT)
        assert store.load_with_metadata("s") is None
        assert store.save_with_metadata({"v": 3}, "s").version == 1
        loaded = store.load_with_metadata("s")
        assert loaded is not None and loaded[0] == {"v": 3}


def stall(srv: Server, seconds: float) -> threading.Thread:
    """Block the whole server (DEBUG SLEEP): commands sent meanwhile run when it wakes up."""

    def sleep() -> None:
        with redis.Redis(port=srv.port) as admin:
            admin.execute_command("DEBUG", "SLEEP", seconds)

    thread = threading.Thread(target=sleep)
    thread.start()
    time.sleep(0.1)
    return thread


@pytest.mark.faults
def test_a_write_whose_reply_is_lost_raises_outcome_unknown(server) -> None:
    srv = server("--enable-debug-command", "yes")
    with RedisStatePersistence(srv.url, {"socket_timeout": 0.3}) as store:
        store.save_with_metadata({"warm": 1}, "warm")
        # The reply comes long after the client gave up waiting for it.
        sleeper = stall(srv, 0.8)
        with pytest.raises(OutcomeUnknownError):
            store.save_with_metadata({"v": 1}, "s", write_id="req-1")
        sleeper.join()
        loaded = store.load_with_metadata("s")  # the write did happen after all
        assert loaded is not None and loaded[1].write_id == "req-1"
        # A retry with the same write_id returns the first attempt's version, not a second.
        assert store.save_with_metadata({"v": 1}, "s", write_id="req-1").version == 1
        assert [m.version for m in store.list_versions("s")] == [1]
        sleeper = stall(srv, 0.8)
        with pytest.raises(BackendUnavailableError) as info:  # a read: nothing to doubt
            store.load_with_metadata("s")
        assert not isinstance(info.value, OutcomeUnknownError)
        sleeper.join()


@pytest.mark.faults
def test_a_password_in_the_url_works_and_is_never_shown(server) -> None:
    srv = server("--requirepass", "s3cret")
    url = f"redis://:s3cret@127.0.0.1:{srv.port}/0"
    with connect(url) as store:
        assert store.save_with_metadata({"v": 1}, "s").version == 1
        assert "s3cret" not in store.describe() and "s3cret" not in repr(store)
        assert store.describe() == f"redis://127.0.0.1:{srv.port}/0"
    with pytest.raises(BackendUnavailableError):
        RedisStatePersistence(f"redis://:wrong@127.0.0.1:{srv.port}/0")


@pytest.mark.faults
def test_rediss_against_a_plain_server_is_unavailable_not_a_crash(server) -> None:
    srv = server()
    with pytest.raises(BackendUnavailableError):
        RedisStatePersistence(
            f"rediss://127.0.0.1:{srv.port}/0", {"socket_timeout": 1, "socket_connect_timeout": 1}
        )


@pytest.mark.faults
def test_rediss_with_a_ca_file_round_trips_and_a_wrong_password_is_unavailable(
    server, tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path / "tls")
    srv = server("--requirepass", "s3cret", tls=certs)
    ca = {"ssl_ca_certs": str(certs / "ca.crt"), "socket_timeout": 5}
    url = f"rediss://:s3cret@127.0.0.1:{srv.port}/0"
    with RedisStatePersistence(redis_url=url, redis_options=ca, namespace="tls") as store:
        assert store.describe() == f"rediss://127.0.0.1:{srv.port}/0"
        saved = store.save_with_metadata({"v": 1}, "s", tags=["a", "b"], ttl_seconds=60)
        assert saved.version == 1 and saved.tags == ("a", "b")
        loaded = store.load_with_metadata("s")
        assert loaded is not None and loaded[0] == {"v": 1}
        assert loaded[1].tags == ("a", "b") and loaded[1].ttl_seconds == 60
        assert [m.state_id for m in store.search_by_tags(["b"])] == ["s"]
        info = store.get_stats()["redis_info"]
        assert info["redis_version"] and info["keyspace"]["db0"]["keys"] > 0
    # A wrong password is refused by the server (AUTH, over TLS) at construction: redis-py
    # calls that a ConnectionError, so the store says unavailable, never showing the password.
    with pytest.raises(BackendUnavailableError) as info:
        RedisStatePersistence(url.replace("s3cret", "wr0ng"), ca, namespace="tls")
    assert not isinstance(info.value, OutcomeUnknownError)
    assert isinstance(info.value.__cause__, redis.AuthenticationError)
    assert "Redis refused the login" in str(info.value)
    assert "wr0ng" not in str(info.value) and "s3cret" not in str(info.value)


@pytest.mark.faults
def test_a_call_interrupted_before_its_reply_leaves_no_reply_for_the_next(
    server, monkeypatch
) -> None:
    srv = server("--enable-debug-command", "yes")
    with RedisStatePersistence(srv.url, {"max_connections": 1, "socket_timeout": 5}) as store:
        store.save_with_metadata({"v": "a"}, "a")
        store.save_with_metadata({"v": "b"}, "b")
        sleeper = stall(srv, 0.5)  # so "a"'s reply cannot be on the socket yet

        def interrupted(self: Any, *args: Any, **kwargs: Any) -> None:
            raise KeyboardInterrupt  # a signal arriving after the command went out

        with monkeypatch.context() as patch:
            patch.setattr(redis.connection.AbstractConnection, "read_response", interrupted)
            with pytest.raises(KeyboardInterrupt):
                store.load_with_metadata("a")
        loaded = store.load_with_metadata("b")  # the only connection: "a"'s reply is coming
        assert loaded is not None and loaded[0] == {"v": "b"}
        sleeper.join()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("/0?bogus=1", "unexpected keyword argument 'bogus'"),
        ("/x", "database number"),
        ("/0?decode_responses=true", "decode_responses"),
    ],
)
def test_a_mistake_in_the_url_is_a_value_error_naming_it(
    namespace: str, raw: redis.Redis, change: str, message: str
) -> None:
    """Not a driver error, not a ConnectionError (code falling back on one would take a typo
    for a server that is down), not a silently different database, nothing written."""
    base = REDIS_URL.rsplit("/", 1)[0]
    with pytest.raises(ValueError, match=message):
        connect(base + change, namespace=namespace)
    with pytest.raises(ValueError, match=r"not a number|integer"):
        connect("redis://127.0.0.1:notaport/0", namespace=namespace)
    assert list(raw.scan_iter(f"{namespace}:*")) == []
