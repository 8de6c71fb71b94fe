"""Server time of the dashboard's states page and tag filter on a big store (Redis, PostgreSQL).

    python bench/bench_dashboard.py                    # 1,000,000 states on both backends
    python bench/bench_dashboard.py --states 100000 --backends redis

The store is built once with ``save_many`` in batches (slow at a million: minutes) in a
namespace / schema named after its size, and reused by later runs; ``--drop`` removes it at the
end. Each page is then requested through Django's test Client in this process, so the time is
the server's: view, store round trips and template rendering. Target: under 100 ms a page.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REDIS_URL = os.environ.get("STATEHUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get(
    "STATEHUB_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
TARGET_MS = 100.0
BATCH = 2000
TENANTS = 100


def where(backend: str, n: int) -> str:
    return f"bench_dash_{n}" if backend == "postgres" else f"bench-dash-{n}"


def spec(backend: str, n: int) -> dict[str, Any]:
    if backend == "redis":
        return {"url": REDIS_URL, "options": {"namespace": where(backend, n)}}
    return {"url": POSTGRES_DSN, "options": {"schema": where(backend, n)}}


def state_for(i: int) -> dict[str, Any]:
    return {
        "run": i,
        "status": ("running", "done", "failed")[i % 3],
        "step": i % 17,
        "messages": [{"role": "agent", "text": f"step {i % 17} of run {i}"}],
    }


def tags_for(i: int) -> list[str]:
    tags = [f"tenant-{i % TENANTS}", ("agent", "session", "workflow")[i % 3]]
    if i % 1000 == 0:
        tags.append("rare")
    return tags


def build(store: Any, n: int) -> None:
    have = store.count_states()
    if have >= n:
        print(f"  store already holds {have:,} states; reusing it")
        return
    print(f"  building {n:,} states (have {have:,}) in batches of {BATCH} ...", flush=True)
    start = time.perf_counter()
    for first in range(have, n, BATCH):
        items = [
            {"state_id": f"run-{i:08}", "state": state_for(i), "tags": tags_for(i)}
            for i in range(first, min(n, first + BATCH))
        ]
        store.save_many(items)
        done = first + len(items)
        if done % 50_000 < BATCH:
            rate = (done - have) / (time.perf_counter() - start)
            print(f"    {done:,} states, {rate:,.0f}/s", flush=True)
    print(f"  built in {time.perf_counter() - start:,.0f} s")


def store_time(store: Any, params: dict[str, Any], repeat: int) -> float:
    """Median ms of the page's store call alone (page_states), to split store from render."""
    from django.http import QueryDict

    from persistence import selectors
    from persistence.forms import StateFilterForm

    data = QueryDict(mutable=True)
    for key, value in params.items():
        data.setlist(key, value if isinstance(value, list) else [value])
    query = StateFilterForm(data).query()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        selectors.state_page(store, query)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def time_get(client: Any, url: str, repeat: int) -> tuple[float, float, int]:
    """Median and worst ms of ``repeat`` GETs (after one warm-up), and the row count."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
    rows = len(response.context["page"].items) if response.context else -1
    return statistics.median(samples), max(samples), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=1_000_000)
    parser.add_argument(
        "--backends", nargs="+", default=["redis", "postgres"], choices=["redis", "postgres"]
    )
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--drop", action="store_true", help="remove the store afterwards")
    args = parser.parse_args()

    stores = {b: spec(b, args.states) for b in args.backends}
    os.environ["STATEHUB_STORES"] = json.dumps(stores)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "statehub.settings")
    import django

    django.setup()
    import logging

    logging.getLogger("axes").setLevel(logging.WARNING)  # its sign-in notes are not results
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from persistence import conf

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    setup_test_environment()  # the test Client records response.context
    connection.creation.create_test_db(verbosity=0)  # an in-memory Django DB for the user
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user("bench", password="bench-pass")
    user.groups.add(Group.objects.get(name="viewer"))  # the role that reads every page here
    client = Client()
    client.force_login(user)

    ok = True
    for backend in args.backends:
        print(f"\n== {backend}: {args.states:,} states")
        store = conf.get_store(backend)
        build(store, args.states)
        base = f"/s/{backend}/"
        first = client.get(base, {"order": "id"}).context["page"].next_cursor
        back = client.get(base, {"order": "id", "cursor": first}).context["page"].prev_cursor
        newest_next = client.get(base).context["page"].next_cursor
        pages: list[tuple[str, dict[str, Any]]] = [
            ("states, newest first", {}),
            ("states, by id", {"order": "id"}),
            ("states, by id, page 2", {"order": "id", "cursor": first}),
            ("states, by id, back to page 1", {"order": "id", "before": back}),
            ("states, newest first, page 2", {"cursor": newest_next}),
            ("id prefix search", {"q": "run-0005", "order": "id"}),
            ("id prefix search, newest first", {"q": "run-00077"}),
            ("tag filter (1% of states)", {"tag": "tenant-7"}),
            ("tag filter, rare tag", {"tag": "rare"}),
            ("tags any of two", {"tag": ["tenant-7", "tenant-8"], "match": "any"}),
            ("tags all of two", {"tag": ["tenant-7", "agent"], "match": "all"}),
        ]
        print(f"  {'page':<34}{'median ms':>10}{'max ms':>9}{'store ms':>10}{'rows':>6}  ok")
        for label, params in pages:
            url = f"{base}?{urlencode(params, doseq=True)}"
            median, worst, rows = time_get(client, url, args.repeat)
            store_ms = store_time(store, params, args.repeat)
            good = median < TARGET_MS
            ok &= good
            print(
                f"  {label:<34}{median:>10.1f}{worst:>9.1f}{store_ms:>10.1f}{rows:>6}"
                f"  {'yes' if good else 'NO'}"
            )
        if args.drop:
            conf.close_stores()
            _drop(backend, args.states)
    print(f"\nall pages under {TARGET_MS:.0f} ms (median): {'yes' if ok else 'NO'}")
    return 0 if ok else 1


def _drop(backend: str, n: int) -> None:
    name = where(backend, n)
    if backend == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{name}:*", count=5000):
            batch.append(key)
            if len(batch) == 5000:  # one round trip per batch: millions of keys
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
        client.close()
    else:
        import psycopg

        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    print(f"  dropped {name}")


if __name__ == "__main__":
    raise SystemExit(main())
