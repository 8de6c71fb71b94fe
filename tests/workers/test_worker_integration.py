"""Real Celery workers on this machine's Redis broker, cleaning real SQLite, PostgreSQL and Redis
stores; plus the embedded default (filesystem broker, worker with beat, no server at all)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from persistence import StatePersistence
from tests.conftest import POSTGRES_DSN, REDIS_URL, drop_store, open_store, server_missing
from tests.workers.harness import BROKER_URL, ROOT, Cluster, _migrated_database

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("celery-workers")]
N = 10_000  # expired states, and as many live ones
CHUNK = 500


def _broker_or_skip() -> None:
    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        server_missing("redis (broker)", exc)


def _open(backend: str, where: str) -> StatePersistence:
    try:
        return open_store(backend, where)
    except ConnectionError as exc:
        server_missing(backend, exc)


def _seed(store: StatePersistence, expired: int, live: int) -> list[str]:
    """Save ``expired`` states with a 1 s TTL and ``live`` ones without, in batches of 500 on
    four threads; wait until the first have expired for every process (the SQL stores keep
    expires_at, Redis expires its keys)."""
    expired_items = [
        {"state_id": f"exp-{i:05d}", "state": {"i": i}, "ttl_seconds": 1} for i in range(expired)
    ]
    live_ids = [f"live-{i:05d}" for i in range(live)]
    live_items = [{"state_id": sid, "state": {"id": sid}} for sid in live_ids]
    with ThreadPoolExecutor(4) as pool:
        for items in (expired_items, live_items):
            chunks = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
            list(pool.map(store.save_many, chunks))
            if items is expired_items:
                expired_at = time.time() + 1
    time.sleep(max(0.0, expired_at - time.time()) + 0.3)
    return live_ids


def _assert_only_live_remain(store: StatePersistence, live_ids: list[str]) -> None:
    assert list(store.list_states()) == live_ids
    for start in range(0, len(live_ids), CHUNK):
        chunk = live_ids[start : start + CHUNK]
        loaded = store.load_many(chunk)
        assert all(loaded[sid] is not None and loaded[sid][0] == {"id": sid} for sid in chunk)


# ------------------------------------------------------------------ one worker, three stores


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tag = f"wk{uuid.uuid4().hex[:10]}"
    return {
        "sqlite": str(tmp_path_factory.mktemp("stores") / "states.db"),
        "overlap": str(tmp_path_factory.mktemp("stores") / "overlap.db"),
        "postgres": tag,
        "redis": tag,
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, places: dict[str, str]) -> Iterator[Cluster]:
    _broker_or_skip()
    stores = {
        "sqlite": f"sqlite:///{places['sqlite']}",
        "overlap": f"sqlite:///{places['overlap']}",
        "postgres": {"url": POSTGRES_DSN, "options": {"schema": places["postgres"]}},
        "redis": {"url": REDIS_URL, "options": {"namespace": places["redis"]}},
    }
    # Two workers, so that two runs can overlap; batches of 100 make a purge last long enough.
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), stores, STATEHUB_CLEANUP_BATCH_SIZE=100)
    try:
        cluster.start_workers(2)
        yield cluster
    finally:
        cluster.close()
        for backend in ("postgres", "redis"):
            with contextlib.suppress(Exception):  # a server that was down holds nothing
                drop_store(backend, places[backend])


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
def test_worker_purges_exactly_the_expired_and_then_nothing(
    cluster: Cluster, places: dict[str, str], backend: str
) -> None:
    store = _open(backend, places[backend])
    try:
        live_ids = _seed(store, N, N)

        first = cluster.wait_for(task_id=cluster.send("purge_expired", store=backend))
        assert [(r["outcome"], r["removed"], r["error"]) for r in first] == [("ok", N, "")]
        _assert_only_live_remain(store, live_ids)

        second = cluster.wait_for(task_id=cluster.send("purge_expired", store=backend))
        assert [(r["outcome"], r["removed"]) for r in second] == [("ok", 0)]
        _assert_only_live_remain(store, live_ids)
    finally:
        store.close()


def test_fan_out_task_runs_every_store_on_the_workers(cluster: Cluster) -> None:
    before = {r["id"] for r in cluster.runs(task="prune_versions")}
    cluster.send("cleanup_all_stores", task="prune_versions", trigger="manual")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = [r for r in cluster.runs(task="prune_versions") if r["id"] not in before]
        if len(new) == 4 and all(r["outcome"] != "running" for r in new):
            break
        time.sleep(0.2)
    assert sorted(r["store"] for r in new) == ["overlap", "postgres", "redis", "sqlite"]
    assert {r["trigger"] for r in new} == {"manual"}
    sqlite_run = next(r for r in new if r["store"] == "sqlite")
    assert sqlite_run["outcome"] == "ok" and sqlite_run["max_versions"] == 10


# ------------------------------------------------------------------ overlap and crashes


def test_two_overlapping_runs_one_works_the_other_reports_busy(
    cluster: Cluster, places: dict[str, str]
) -> None:
    store = open_store("sqlite", places["overlap"])
    try:
        live_ids = _seed(store, 40000, 100)
        first = cluster.send("purge_expired", store="overlap")
        # The second is sent once the first is under way (sent together, the first could be
        # over before the other worker took the second: a run, not an overlap).
        deadline = time.monotonic() + 30
        while not any(r["batches"] >= 1 for r in cluster.runs(task_id=first)):
            assert time.monotonic() < deadline, "the first purge never started"
            time.sleep(0.01)
        ids = [first, cluster.send("purge_expired", store="overlap")]
        runs = [cluster.wait_for(task_id=task_id)[0] for task_id in ids]

        assert sorted((r["outcome"], r["removed"]) for r in runs) == [("busy", 0), ("ok", 40000)]
        busy = next(r for r in runs if r["outcome"] == "busy")
        assert busy["batches"] == 0 and "holds the lock" in busy["error"]
        assert len(cluster.runs(store="overlap", task="purge_expired")) == 2  # no duplicates
        _assert_only_live_remain(store, live_ids)
    finally:
        store.close()


@pytest.mark.faults
def test_worker_killed_mid_purge_is_finished_by_redelivery(tmp_path: Path) -> None:
    _broker_or_skip()
    path = tmp_path / "kill.db"
    cluster = Cluster(
        tmp_path / "c",
        {"kill": f"sqlite:///{path}"},
        visibility_timeout=5,  # the killed worker's task comes back after 5 s
        STATEHUB_CLEANUP_BATCH_SIZE=10,
    )
    store = open_store("sqlite", str(path))
    try:
        live_ids = _seed(store, 3000, 300)
        (worker,) = cluster.start_workers()
        task_id = cluster.send("purge_expired", store="kill")
        deadline = time.monotonic() + 30
        while not any(r["batches"] >= 3 for r in cluster.runs(task_id=task_id)):
            assert time.monotonic() < deadline, "the purge never started"
            time.sleep(0.02)
        cluster.kill(worker)  # SIGKILL mid-purge: the message stays unacknowledged
        (killed,) = cluster.runs(task_id=task_id)
        assert killed["outcome"] == "running" and 0 < killed["removed"] < 3000

        cluster.start_workers()  # Redis hands the message back after the visibility timeout
        deadline = time.monotonic() + 60
        while not any(r["outcome"] == "ok" for r in cluster.runs(task_id=task_id)):
            assert time.monotonic() < deadline, cluster.runs(task_id=task_id)
            time.sleep(0.2)

        rows = cluster.runs(task_id=task_id)
        assert rows[0]["outcome"] == "error" and "worker lost" in rows[0]["error"]
        assert rows[1]["outcome"] == "ok"
        # The end state is a clean run's: only the live states, and nothing left to purge.
        _assert_only_live_remain(store, live_ids)
        again = cluster.wait_for(task_id=cluster.send("purge_expired", store="kill"))
        assert [(r["outcome"], r["removed"]) for r in again] == [("ok", 0)]
    finally:
        store.close()
        cluster.close()


# ------------------------------------------------------------------ the embedded default


def test_embedded_worker_with_beat_needs_no_server(tmp_path: Path) -> None:
    data = tmp_path / "data"  # does not exist yet: the app creates its broker folders
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    env.update(
        DJANGO_SETTINGS_MODULE="statehub.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'django.sqlite3'}",
        STATEHUB_DATA_DIR=str(data),
        STATEHUB_STORES=json.dumps({"fs": f"sqlite:///{tmp_path / 'fs.db'}"}),
        STATEHUB_PURGE_INTERVAL="1",
    )
    shutil.copyfile(_migrated_database(), tmp_path / "django.sqlite3")
    schedule = data / "celerybeat-schedule"
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "statehub",
                "worker",
                "--beat",
                f"--schedule={schedule}",
                "--pool=solo",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        import sqlite3

        deadline = time.monotonic() + 45
        rows: list[Any] = []
        while time.monotonic() < deadline and not rows:
            time.sleep(0.5)
            with sqlite3.connect(tmp_path / "django.sqlite3", timeout=10) as db:
                rows = db.execute(
                    "SELECT store, trigger, outcome FROM persistence_workerrun "
                    "WHERE outcome != 'running'"
                ).fetchall()
        assert rows, log.read_text()
        assert rows[0] == ("fs", "schedule", "ok")
        assert (data / "broker").is_dir()
        assert any(p.name.startswith("celerybeat-schedule") for p in data.iterdir())
    finally:
        worker.send_signal(signal.SIGQUIT)
        worker.wait(timeout=20)
