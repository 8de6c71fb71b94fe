"""Redis SIGKILLed and restarted mid-run (a throwaway redis-server with ``appendonly yes
--appendfsync always`` on a free port and its own --dir; the shared server is never touched).

Two writers save continuously with a write_id each, retrying a failed save with the same
write_id. Expected: 0 acknowledged writes lost, 0 duplicated, 0 partial states (every listing
and tag-index entry points to a state that loads), every error within the socket timeout
(1 s), the first success within 2 s of the server answering again, and keys that expired
before the crash never come back.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.reliability._support import RetryingWriter, ThrowawayRedis

pytestmark = pytest.mark.faults

SOCKET_TIMEOUT = 1.0
WRITERS = 2
STATES = [f"s{i}" for i in range(10)]


def test_sigkill_and_restart_lose_no_acknowledged_write_and_leave_no_partial_state(
    tmp_path: Path,
) -> None:
    from persistence.backends.redis import RedisStatePersistence

    server = ThrowawayRedis(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    options = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT}
    store = RedisStatePersistence(
        redis_url=server.url, redis_options=options, namespace="kill", max_versions=None
    )
    stop = threading.Event()
    writers = [RetryingWriter(store, n, stop, STATES) for n in range(WRITERS)]
    try:
        for i in range(5):  # expire natively before the crash (real clock)
            store.save_with_metadata({"short": i}, f"ttl{i}", ttl_seconds=1, tags=["short"])
        time.sleep(1.5)
        for w in writers:
            w.start()
        time.sleep(2.0)
        server.kill()
        killed = time.monotonic()
        time.sleep(1.0)
        back = server.start()
        time.sleep(3.0)
        stop.set()
        for w in writers:
            w.join(timeout=30)
        _check(store, writers, killed, back)
    finally:
        stop.set()
        store.close()
        server.stop()


def _check(store: Any, writers: list[RetryingWriter], killed: float, back: float) -> None:
    assert [w.unexpected for w in writers] == [[]] * WRITERS
    acks = [a for w in writers for a in w.acks]
    errors = [e for w in writers for e in w.errors]
    print(f"\n{len(acks)} acknowledged writes, {len(errors)} failed attempts")
    assert errors, "no save failed: the server was not killed mid-run"
    slow = [(kind, round(took, 2)) for kind, took, _ in errors if took > SOCKET_TIMEOUT + 0.5]
    assert slow == [], f"errors slower than the socket timeout: {slow[:5]}"
    for w in writers:
        after = [at for _, _, _, at in w.acks if at > killed]
        assert after, f"writer {w.number} never succeeded after the restart"
        assert after[0] - back <= 2.0, f"first success {after[0] - back:.2f}s after restart"

    # 0 acknowledged writes lost, 0 duplicated.
    lost = []
    for write_id, sid, version, _ in acks:
        loaded = store.load_with_metadata(sid, version=version)
        if loaded is None or loaded[0]["write_id"] != write_id:
            lost.append((write_id, sid, version))
    assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:5]}"
    stored: dict[str, list[str]] = defaultdict(list)
    for sid in STATES:
        metas = store.list_versions(sid)
        assert [m.version for m in metas] == list(range(1, len(metas) + 1))
        for m in metas:
            stored[m.write_id].append(f"{sid}@{m.version}")
    duplicated = {wid: where for wid, where in stored.items() if len(where) > 1}
    assert duplicated == {}, f"write_ids stored twice: {list(duplicated.items())[:5]}"

    # 0 partial states: every listing and tag-index entry loads.
    listed = list(store.list_states())
    assert sorted(listed) == sorted(STATES), listed
    for sid in listed:
        assert store.load_with_metadata(sid) is not None, f"listed {sid!r} does not load"
    for tag in ("t0", "t1", "t2"):
        for meta in store.search_by_tags([tag]):
            assert store.load_with_metadata(meta.state_id) is not None
    summaries = store.page_states(limit=100).items
    assert sorted(s.state_id for s in summaries) == sorted(STATES)

    # Expired before the crash: gone for good, in reads, indexes and raw keys.
    assert store.search_by_tags(["short"]) == []
    for i in range(5):
        assert store.load_with_metadata(f"ttl{i}") is None
    store.purge_expired()
    raw = store._client  # type: ignore[attr-defined]
    leftovers = [k for k in raw.scan_iter(match="kill:*ttl*", count=1000)]
    assert leftovers == [], f"expired keys came back: {leftovers}"
    assert raw.exists("kill:{_}:t:short") == 0, "the expired states' tag set came back"
    assert all(raw.zscore("kill:{_}:ids", f"ttl{i}") is None for i in range(5))
