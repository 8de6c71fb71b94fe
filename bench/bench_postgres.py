"""PostgreSQL: the store next to the raw psycopg driver in one run, plus scale figures.

    python bench/bench_postgres.py [--n 3000] [--states 100000] [--dsn postgresql://…]

Targets (1.7 KB JSON state, LZ4, 3 tags):
- save_with_metadata >= 0.6x one raw autocommitted INSERT of a similar row (bytea payload),
  timed on states already at max_versions (each save prunes one) and on a store keeping all;
- load_with_metadata >= 0.5x one raw SELECT by primary key;
- loading the latest version of a state with 10,000 versions costs <= 1.2x one with 10;
- search_by_tags (also with 1,000 hits) and a page of page_states (also filtered by a tag on
  0.1% of the states, as the dashboard asks for it) / list_states on 100,000 states < 20 ms each.
Everything lives in a throwaway schema (bench_…) dropped at the end. The tables are vacuumed
after filling them, as autovacuum would (the server of this project's CI runs without it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from itertools import islice

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psycopg

from bench.common import ops_per_second, print_table, sample_state, seconds_per_call, state_size
from persistence import CompressionType
from persistence.backends.postgres import PostgresStatePersistence

DSN = os.environ.get("STATEHUB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TAGS = ["agent", "bench", "run"]

RAW_TABLE = """CREATE TABLE {schema}.raw (
    state_id text PRIMARY KEY, version bigint, created_at double precision, payload bytea,
    checksum text, tags text[], metadata text)"""
RAW_INSERT = "INSERT INTO {schema}.raw VALUES (%s, 1, %s, %s, %s, %s, '{{}}')"
RAW_SELECT = "SELECT payload, checksum, tags, metadata FROM {schema}.raw WHERE state_id = %s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--states", type=int, default=100_000)
    parser.add_argument("--dsn", default=DSN)
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(args.dsn, autocommit=True)
    try:
        ok = run(args, schema)
    finally:
        admin.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                psycopg.sql.Identifier(schema)
            )
        )
        admin.close()
    return 0 if ok else 1


def run(args: argparse.Namespace, schema: str) -> bool:
    state = sample_state()
    store = PostgresStatePersistence(args.dsn, schema=schema, compression_type=CompressionType.LZ4)
    raw = psycopg.connect(args.dsn, autocommit=True)
    ident = psycopg.sql.Identifier(schema)

    def q(text: str) -> psycopg.sql.Composed:
        return psycopg.sql.SQL(text).format(schema=ident)

    raw.execute(q(RAW_TABLE))
    encoded = store._encode(state, "state")  # the same bytes the store writes
    insert, select = q(RAW_INSERT).as_string(raw), q(RAW_SELECT).as_string(raw)
    keys = iter(range(10**9))

    def raw_insert(i: int) -> None:
        raw.execute(insert, (f"k{next(keys)}", time.time(), encoded.frame, encoded.checksum, TAGS))

    def raw_select(i: int) -> None:
        raw.execute(select, (f"k{abs(i) % 1000}",)).fetchone()

    # The steady state of a long-lived state: each already holds max_versions (10) versions,
    # so every timed save also prunes the oldest. A store keeping every version never prunes.
    for _ in range(store.max_versions or 0):
        store.save_many([{"state_id": f"s{i}", "state": state, "tags": TAGS} for i in range(1000)])
    unpruned = PostgresStatePersistence(
        args.dsn, schema=schema, compression_type=CompressionType.LZ4, max_versions=None
    )
    unpruned.save_many([{"state_id": f"u{i}", "state": state, "tags": TAGS} for i in range(1000)])
    # The fill left nine dead states rows per state. Autovacuum, on by default, would remove them
    # within a minute; this machine's server runs without it, and every save would pay for the
    # fill's leftovers (walking dead index entries): about 1.7x the server time of a save.
    for table in ("states", "versions"):
        raw.execute(q(f"VACUUM (ANALYZE) {{schema}}.{table}"))

    def save(i: int) -> None:
        store.save_with_metadata(state, f"s{i % 1000}", tags=TAGS)

    def save_all_kept(i: int) -> None:
        unpruned.save_with_metadata(state, f"u{i % 1000}", tags=TAGS)

    def load(i: int) -> None:
        store.load_with_metadata(f"s{abs(i) % 1000}")

    rows = []
    for name, mine, theirs, target in (
        ("save, prunes one", save, raw_insert, 0.6),
        ("save, max_versions=None", save_all_kept, raw_insert, 0.6),
        ("load_with_metadata", load, raw_select, 0.5),
    ):
        a, b = interleaved(mine, theirs, args.n)
        rows.append((name, a, b, target))
    print(f"state: {state_size()} bytes of JSON, LZ4, {len(TAGS)} tags; n={args.n}, best of 3")
    ok = print_table("PostgreSQL (store vs raw psycopg)", rows)
    raw.close()
    store.close()
    unpruned.close()
    ok &= deep_history(args, schema)
    ok &= big_store(args, schema)
    return ok


def interleaved(
    mine: Callable[[int], object], theirs: Callable[[int], object], n: int
) -> tuple[float, float]:
    """Best-of-3 ops/s of both sides, calls alternating one by one so that the load of a
    shared machine, which drifts by the second, weighs on both alike."""
    ops_per_second(theirs, 200), ops_per_second(mine, 200)  # warm up: prepared statements
    best_mine = best_theirs = 0.0
    for _ in range(3):
        spent_mine = spent_theirs = 0.0
        for i in range(n):
            started = time.perf_counter()
            theirs(i)
            middle = time.perf_counter()
            mine(i)
            spent_theirs += middle - started
            spent_mine += time.perf_counter() - middle
        best_mine, best_theirs = max(best_mine, n / spent_mine), max(best_theirs, n / spent_theirs)
    return best_mine, best_theirs


def deep_history(args: argparse.Namespace, schema: str) -> bool:
    store = PostgresStatePersistence(args.dsn, schema=schema, max_versions=None)
    state = sample_state()
    store.save_many([{"state_id": "deep-10", "state": state} for _ in range(10)])
    for _ in range(10):
        store.save_many([{"state_id": "deep-10k", "state": state} for _ in range(1000)])
    deep, shallow = interleaved(
        lambda i: store.load_with_metadata("deep-10k"),
        lambda i: store.load_with_metadata("deep-10"),
        args.n,
    )
    times = {"deep-10": 1 / shallow, "deep-10k": 1 / deep}
    ratio = times["deep-10k"] / times["deep-10"]
    print("\nload latest version, by history length (best of 3, the two loads alternating)")
    for sid, seconds in times.items():
        print(f"  {sid:<10} {seconds * 1e6:8.1f} us/load")
    met = ratio <= 1.2
    print(f"  10,000 / 10 versions: {ratio:.2f}x (target <= 1.20x)  {'yes' if met else 'NO'}")
    store.close()
    return met


def big_store(args: argparse.Namespace, schema: str) -> bool:
    store = PostgresStatePersistence(args.dsn, schema=schema)
    state = sample_state()
    started = time.perf_counter()
    for start in range(0, args.states, 1000):
        store.save_many(
            [
                {
                    "state_id": f"run-{i:07d}",
                    "state": state,
                    "tags": [f"team-{i % 100}", f"kind-{i % 7}", f"shard-{i % 1000}"],
                }
                for i in range(start, min(start + 1000, args.states))
            ]
        )
    built = time.perf_counter() - started
    print(
        f"\n{args.states:,} states built with save_many in {built:.1f} s "
        f"({args.states / built:,.0f} states/s)"
    )
    with psycopg.connect(args.dsn, autocommit=True) as conn:  # what autovacuum would do soon
        conn.execute(
            psycopg.sql.SQL("ANALYZE {}.states, {}.versions").format(
                psycopg.sql.Identifier(schema), psycopg.sql.Identifier(schema)
            )
        )
    middle = store.page_states(limit=50, cursor=None)
    for _ in range(200):
        middle = store.page_states(limit=50, cursor=middle.next_cursor)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("search_by_tags all (2 tags)", lambda: store.search_by_tags(["team-5", "kind-3"])),
        (
            "search_by_tags any (2 tags)",
            lambda: store.search_by_tags(["shard-5", "shard-6"], match="any"),
        ),
        ("search_by_tags all, 1,000 hits", lambda: store.search_by_tags(["team-5"])),
        ("page_states first page", lambda: store.page_states(limit=50)),
        ("page_states page 200", lambda: store.page_states(limit=50, cursor=middle.next_cursor)),
        ("page_states -updated", lambda: store.page_states(order="-updated", limit=50)),
        ("page_states tag filter", lambda: store.page_states(tags=["team-5"], limit=50)),
        (
            "page_states rare tag (0.1%), newest",
            lambda: store.page_states(tags=["shard-5"], order="-updated", limit=51),
        ),
        (
            "page_states rare tag (0.1%), by id",
            lambda: store.page_states(tags=["shard-5"], order="id", limit=51),
        ),
        (
            "page_states any of 2 tags",
            lambda: store.page_states(tags=["shard-1", "shard-2"], match="any", limit=50),
        ),
        ("page_states prefix", lambda: store.page_states(prefix="run-00123", limit=50)),
        (
            "list_states page of 500",
            lambda: list(islice(store.list_states(prefix="run-005", page_size=500), 500)),
        ),
    ]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nlisting and search on {args.states:,} states (median of 21, target < 20 ms;"
        f" load average {load} on {os.cpu_count()} CPUs)"
    )
    ok = True
    for name, call in cases:
        samples = sorted(seconds_per_call(call, 1) for _ in range(21))
        ms = samples[10] * 1000
        ok &= ms < 20
        print(f"  {name:<38}{ms:8.2f} ms  {'yes' if ms < 20 else 'NO'}")
    store.close()
    return ok


if __name__ == "__main__":
    sys.exit(main())
