"""SQLite: save and load through the store next to the raw sqlite3 driver, in one run.

    python bench/bench_sqlite.py [--n 5000]

Targets (1.7 KB JSON state, LZ4): save >= 0.4x a raw autocommitted INSERT, load >= 0.15x a raw
SELECT by key. Both sides use the same file settings (WAL, synchronous=NORMAL,
cache and mmap sizes).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import orjson

from bench.common import ops_per_second, print_table, sample_state, seconds_per_call, state_size
from persistence import CompressionType, connect


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    state = sample_state()
    payload = orjson.dumps(state)
    with tempfile.TemporaryDirectory() as tmp:
        raw = sqlite3.connect(os.path.join(tmp, "raw.db"), isolation_level=None)
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("PRAGMA synchronous = NORMAL")
        for pragma in ("wal_autocheckpoint = 8000", "cache_size = -65536", "mmap_size = 268435456"):
            raw.execute(f"PRAGMA {pragma}")
        raw.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID")

        def raw_insert(i: int) -> None:
            raw.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"k{i % 1000}", payload))

        def raw_select(i: int) -> None:
            raw.execute("SELECT v FROM kv WHERE k = ?", (f"k{abs(i) % 1000}",)).fetchone()

        store = connect(f"sqlite:///{tmp}/store.db", compression_type=CompressionType.LZ4)
        tags = ["agent", "bench", "run"]

        def save(i: int) -> None:
            store.save_with_metadata(state, f"s{i % 1000}", tags=tags)

        def load(i: int) -> None:
            store.load_with_metadata(f"s{abs(i) % 1000}")

        rows = []
        for name, mine, theirs, target in (
            ("save_with_metadata", save, raw_insert, 0.4),
            ("load_with_metadata", load, raw_select, 0.15),
        ):
            # Interleave the two sides so drift in machine load hits both alike.
            a = b = 0.0
            for _ in range(3):
                b = max(b, ops_per_second(theirs, args.n))
                a = max(a, ops_per_second(mine, args.n))
            rows.append((name, a, b, target))
        print(f"state: {state_size()} bytes of JSON, LZ4; n={args.n}, best of 3")
        ok = print_table("SQLite (store vs raw sqlite3)", rows)

        # Reads of the listing kind, next to the raw driver's nearest equivalent (one indexed
        # range read of the same number of rows); these have no target, only the ratio.
        def raw_page() -> None:
            raw.execute("SELECT k, length(v) FROM kv ORDER BY k LIMIT 50").fetchall()

        reads = {
            "search_by_tags (50 of 1,000)": lambda: store.search_by_tags(
                ["agent", "run"], limit=50
            ),
            "list_states (100 ids)": lambda: next(iter(store.list_states(page_size=100))),
            "page_states (50, by id)": lambda: store.page_states(limit=50),
            "page_states (50, newest)": lambda: store.page_states(order="-updated", limit=50),
        }
        raw_ms = seconds_per_call(raw_page, 500) * 1000
        print(f"\n{'read (1,000 states)':<32}{'store ms':>10}{'raw ms':>10}{'ratio':>8}")
        for name, fn in reads.items():
            ms = seconds_per_call(fn, 500) * 1000
            print(f"{name:<32}{ms:>10.3f}{raw_ms:>10.3f}{raw_ms / ms:>8.2f}")
        # The shared base class (validation, codec, checksum, metadata) with no I/O at all:
        # the floor under every backend's save and load.
        memory = connect("memory://", compression_type=CompressionType.LZ4)
        mem_save = ops_per_second(
            lambda i: memory.save_with_metadata(state, f"s{i % 1000}"), args.n
        )
        mem_load = ops_per_second(lambda i: memory.load_with_metadata(f"s{abs(i) % 1000}"), args.n)
        print(f"\nmemory store (no I/O): save {mem_save:,.0f} ops/s, load {mem_load:,.0f} ops/s")
        store.close()
        raw.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
