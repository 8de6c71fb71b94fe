"""Benchmark the Redis backend against the raw driver, in one run: ``python bench/bench_redis.py``.

Part 1 times save / load / search / one listing page of a ~1.7 KB JSON state (LZ4, 3 tags)
next to one raw EVALSHA of a 3-command script (SET + SADD + EXPIRE) and one raw GET, each the
single round trip the store's call makes too. Rounds alternate store and raw so that noise from
other processes on the machine hits both alike; the best round of each is reported.
Part 2 fills a namespace with 100,000 states (save_many in batches) and times search and one
page of every listing, which must not grow with the store (target: under 20 ms each).
Everything lives in a throwaway namespace that is deleted at the end.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import sample_state
from persistence import CompressionType
from persistence.backends.memory import InMemoryStatePersistence
from persistence.backends.redis import RedisStatePersistence

URL = os.environ.get("STATEHUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECONDS = float(os.environ.get("STATEHUB_BENCH_SECONDS", "1.0"))  # per round
ROUNDS = int(os.environ.get("STATEHUB_BENCH_ROUNDS", "5"))
BIG = int(os.environ.get("STATEHUB_BENCH_STATES", "100000"))
TAGS = ["agent", "team-7", "prod"]
RAW_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""


def rate(fn: Callable[[int], object]) -> float:
    """Calls per second of ``fn(i)`` over about SECONDS."""
    n, start = 0, time.perf_counter()
    deadline = start + SECONDS
    while True:
        for _ in range(50):
            fn(n)
            n += 1
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def best_rates(
    pairs: dict[str, tuple[Callable[[int], object], Callable[[int], object]]],
) -> dict[str, tuple[float, float]]:
    """For each name, the best (store, raw) rates over ROUNDS alternating rounds."""
    best = {name: (0.0, 0.0) for name in pairs}
    for _ in range(ROUNDS):
        for name, (mine, theirs) in pairs.items():
            ours, raw = rate(mine), rate(theirs)
            best[name] = (max(best[name][0], ours), max(best[name][1], raw))
    return best


def latency_ms(fn: Callable[[], object], repeat: int = 30) -> tuple[float, float]:
    """(median, max) milliseconds of ``fn`` over ``repeat`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def server_usec(raw: redis.Redis, fn: Callable[[int], object], calls: int = 2000) -> float:
    """Microseconds the server spends running one EVALSHA of ``fn``, from ``INFO commandstats``
    before and after ``calls`` calls (a difference, so other clients' EVALSHAs would count too:
    read it on a quiet server). The rest of a call is Python and the round trip."""

    def totals() -> tuple[int, int]:
        stat = raw.info("commandstats").get("cmdstat_evalsha", {})
        return int(stat.get("calls", 0)), int(stat.get("usec", 0))

    calls_before, usec_before = totals()
    for i in range(calls):
        fn(i)
    calls_after, usec_after = totals()
    return (usec_after - usec_before) / max(1, calls_after - calls_before)


def part_one(store: RedisStatePersistence, raw: redis.Redis, ns: str) -> bool:
    state = sample_state()
    size = len(orjson.dumps(state))
    frame = store.save_with_metadata(state, "probe", tags=TAGS).size_bytes
    print(f"state: {size} bytes of JSON, {frame} bytes stored (LZ4), tags {TAGS}")
    # The steady state of a long-lived state: each id already holds max_versions versions, so
    # every timed save also prunes the oldest.
    for _ in range(store.max_versions or 1):
        store.save_many(
            [
                {"state_id": f"s{i}", "state": state, "tags": TAGS, "ttl_seconds": 3600}
                for i in range(1000)
            ]
        )
    script = raw.register_script(RAW_SCRIPT)
    payload = os.urandom(frame)
    raw_keys = [f"{ns}:raw:{{x}}:v", f"{ns}:raw:{{x}}:tags"]
    raw.set(raw_keys[0], payload)

    def save(i: int) -> object:
        return store.save_with_metadata(state, f"s{i % 1000}", tags=TAGS, ttl_seconds=3600)

    def raw_save(i: int) -> object:
        return script(keys=raw_keys, args=[payload, "agent"])

    results = best_rates(
        {
            "save": (save, raw_save),
            "load": (
                lambda i: store.load_with_metadata(f"s{i % 1000}"),
                lambda i: raw.get(raw_keys[0]),
            ),
        }
    )
    # The shared base class (validation, codec, checksum, metadata) costs the same on every
    # backend: the in-memory store shows that floor with no I/O at all.
    memory = InMemoryStatePersistence(compression_type=CompressionType.LZ4, max_versions=10)
    mem_save = rate(
        lambda i: memory.save_with_metadata(state, f"s{i % 1000}", tags=TAGS, ttl_seconds=3600)
    )
    mem_load = rate(lambda i: memory.load_with_metadata(f"s{i % 1000}"))
    search = rate(lambda i: store.search_by_tags(["team-7", "agent"], limit=20))
    page = rate(lambda i: store.page_states(limit=50))
    listing = rate(lambda i: next(iter(store.list_states(page_size=100))))

    print(f"\n{'operation':<44}{'store ops/s':>12}{'raw ops/s':>12}{'ratio':>8}{'target':>8}")
    ok = True
    targets = {"save": 0.6, "load": 0.5}
    baseline = {"save": "raw EVALSHA (SET+SADD+EXPIRE)", "load": "raw GET"}
    for name, (ours, theirs) in results.items():
        ratio = ours / theirs
        ok &= ratio >= targets[name]
        label = f"{name} vs {baseline[name]}"
        print(f"{label:<44}{ours:>12,.0f}{theirs:>12,.0f}{ratio:>8.2f}{targets[name]:>7.1f}x")
    print(
        f"server time of one save: {server_usec(raw, save):.1f} µs for the store's script, "
        f"{server_usec(raw, raw_save):.1f} µs for the raw one (INFO commandstats)"
    )
    print(f"{'memory store save (base class, no I/O)':<44}{mem_save:>12,.0f}")
    print(f"{'memory store load (base class, no I/O)':<44}{mem_load:>12,.0f}")
    print(f"{'search_by_tags (2 tags, limit 20)':<44}{search:>12,.0f}")
    print(f"{'page_states (50 summaries)':<44}{page:>12,.0f}")
    print(f"{'list_states (first page of 100 ids)':<44}{listing:>12,.0f}")
    return ok


def part_two(store: RedisStatePersistence) -> bool:
    print(f"\nfilling {BIG:,} states with save_many ...", end=" ", flush=True)
    start = time.perf_counter()
    small = {"step": 1, "status": "done", "note": "x" * 100}
    for base in range(0, BIG, 1000):
        store.save_many(
            [
                {
                    "state_id": f"run-{i:07d}",
                    "state": small,
                    "tags": [f"team-{i % 10}", f"env-{i % 3}", f"user-{i % 1000}"],
                }
                for i in range(base, min(base + 1000, BIG))
            ]
        )
    print(f"{time.perf_counter() - start:.1f} s, {store.count_states():,} states")
    middle = store.page_states(order="-updated", limit=50)
    for _ in range(20):  # a cursor deep into the listing
        assert middle.next_cursor is not None
        middle = store.page_states(order="-updated", limit=50, cursor=middle.next_cursor)
    cursor = middle.next_cursor
    prefix = f"run-{BIG // 2:07d}"[:-2]  # the 100 ids around the middle, at any BIG
    cases: list[tuple[str, Callable[[], object]]] = [
        ("search_by_tags ['user-7'] (100 hits)", lambda: store.search_by_tags(["user-7"])),
        (
            "search_by_tags ['team-3','env-1'] limit 100",
            lambda: store.search_by_tags(["team-3", "env-1"], limit=100),
        ),
        (
            "search_by_tags any ['user-1','user-2']",
            lambda: store.search_by_tags(["user-1", "user-2"], match="any"),
        ),
        ("list_states: one page of 500 ids", lambda: next(iter(store.list_states()))),
        (f"list_states {prefix!r}: one page", lambda: next(iter(store.list_states(prefix)))),
        ("page_states order=id, 50", lambda: store.page_states(limit=50)),
        ("page_states order=-updated, 50", lambda: store.page_states(order="-updated", limit=50)),
        (
            "page_states -updated, cursor at 1,000",
            lambda: store.page_states(order="-updated", limit=50, cursor=cursor),
        ),
        (
            "page_states tags=['team-3'] (10k), 50",
            lambda: store.page_states(tags=["team-3"], limit=50),
        ),
        (
            "page_states tags=['user-7'] -updated, 50",
            lambda: store.page_states(tags=["user-7"], order="-updated", limit=50),
        ),
        (
            "page_states prefix 'run-0099', 50",
            lambda: store.page_states(prefix="run-0099", limit=50),
        ),
    ]
    print(f"\n{'on ' + format(BIG, ',') + ' states':<44}{'median ms':>12}{'max ms':>10}")
    ok = True
    for label, fn in cases:
        median, worst = latency_ms(fn)
        ok &= median < 20
        print(f"{label:<44}{median:>12.2f}{worst:>10.2f}")
    return ok


def main() -> int:
    ns = f"bench{uuid.uuid4().hex[:8]}"
    raw = redis.Redis.from_url(URL)
    store = RedisStatePersistence(
        URL, namespace=ns, compression_type=CompressionType.LZ4, max_versions=10
    )
    try:
        ok = part_one(store, raw, ns)
        ok &= part_two(store)
    finally:
        store.close()
        for keys in _batches(raw.scan_iter(match=f"{ns}:*", count=5000), 5000):
            raw.unlink(*keys)
        raw.close()
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    return 0 if ok else 1


def _batches(items: Any, size: int) -> Any:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


if __name__ == "__main__":
    sys.exit(main())
