"""Lost updates: 8 writers x 250 load-increment-save cycles on one counter.

With ``version=latest+1`` and a retry on ``VersionConflictError`` (optimistic concurrency),
the counter must end at exactly 2,000 with 2,000 contiguous versions, every write_id once
and 0 lost updates; at least 1% of the attempts must have conflicted, or the run did not
race and proves nothing (it fails). The control run saves with ``version=None`` (last writer
wins) and must lose updates (counter < 2,000): the proof that this test can fail.

sqlite, redis and postgres run 8 spawned processes; memory lives in one process, so it runs 8
threads with a tiny GIL switch interval to make them interleave.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from persistence import StatePersistence
from tests.conftest import BACKENDS, open_store
from tests.reliability._support import fresh_where, opened
from tests.reliability._workers import COUNTER_ID, increment, increment_process

WORKERS, CYCLES = 8, 250
TOTAL = WORKERS * CYCLES  # 2,000
MIN_CONFLICT_RATE = 0.01

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lost-updates")]


def _run_threads(store: StatePersistence) -> dict[str, list[tuple[int, int, float]]]:
    out: dict[str, list[tuple[int, int, float]]] = {"checked": [], "control": []}
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for phase, checked in (("checked", True), ("control", False)):
            barrier = threading.Barrier(WORKERS)
            lock = threading.Lock()

            def work(
                worker: int,
                phase: str = phase,
                checked: bool = checked,
                barrier: threading.Barrier = barrier,
                lock: threading.Lock = lock,
            ) -> None:
                barrier.wait()
                started = time.monotonic()
                sid = f"{COUNTER_ID}-{phase}"
                attempts, conflicts = increment(store, sid, worker, CYCLES, checked)
                with lock:
                    out[phase].append((attempts, conflicts, time.monotonic() - started))

            threads = [threading.Thread(target=work, args=(w,)) for w in range(WORKERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        sys.setswitchinterval(old)
    return out


def _run_processes(backend: str, where: str) -> dict[str, list[tuple[int, int, float]]]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [
        ctx.Process(target=increment_process, args=(backend, where, w, CYCLES, barrier, results))
        for w in range(WORKERS)
    ]
    for p in procs:
        p.start()
    collected = []
    try:
        for _ in range(WORKERS):
            collected.append(results.get(timeout=600))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * WORKERS
    return {phase: [out[phase] for _, out in collected] for phase in ("checked", "control")}


@pytest.fixture(scope="module", params=BACKENDS)
def experiment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Runs both phases once per backend; yields (backend, store, per-phase worker figures)."""
    backend = str(request.param)
    where = fresh_where(backend, Path(tmp_path_factory.mktemp("lost")))
    with opened(backend, where, max_versions=None) as store:
        started = time.monotonic()
        run_in_threads = backend == "memory"
        figures = _run_threads(store) if run_in_threads else _run_processes(backend, where)
        print(f"\n{backend}: both runs took {time.monotonic() - started:.1f}s")
        yield backend, store, figures


def test_8_writers_x_250_checked_increments_end_at_2000_with_0_lost(experiment: Any) -> None:
    backend, store, figures = experiment
    sid = f"{COUNTER_ID}-checked"
    attempts = sum(a for a, _, _ in figures["checked"])
    conflicts = sum(c for _, c, _ in figures["checked"])
    rate = conflicts / attempts
    print(f"{backend}: {attempts} attempts, {conflicts} conflicts ({rate:.1%})")

    metas = store.list_versions(sid)
    assert [m.version for m in metas] == list(range(1, TOTAL + 1)), "versions not contiguous"
    write_ids = [m.write_id for m in metas]
    expected = {f"w{w}-{c}" for w in range(WORKERS) for c in range(CYCLES)}
    assert len(write_ids) == len(set(write_ids)) == TOTAL, "a write_id was stored twice"
    assert set(write_ids) == expected
    lost = [v for v in range(1, TOTAL + 1) if _counter(store, sid, v) != v]
    assert lost == [], f"{len(lost)} lost updates (first at versions {lost[:5]})"
    assert rate >= MIN_CONFLICT_RATE, (
        f"only {conflicts} of {attempts} attempts conflicted ({rate:.2%} < 1%): the writers "
        "did not race, so this run proves nothing"
    )


def test_8_writers_x_250_control_run_without_version_check_loses_updates(
    experiment: Any,
) -> None:
    backend, store, _ = experiment
    sid = f"{COUNTER_ID}-control"
    assert [m.version for m in store.list_versions(sid)] == list(range(1, TOTAL + 1))
    final = _counter(store, sid, None)
    print(f"{backend}: last-writer-wins counter ended at {final} of {TOTAL}")
    assert final < TOTAL, "the control run lost no update: the experiment cannot detect any"


def _counter(store: StatePersistence, sid: str, version: int | None) -> int:
    loaded = store.load_with_metadata(sid, version=version)
    assert loaded is not None
    return int(loaded[0]["counter"])


def test_children_can_reopen_the_store(tmp_path: Path) -> None:
    """Guard for the helpers above: ``open_store`` on a sqlite path sees the parent's data."""
    path = str(tmp_path / "x.db")
    with opened("sqlite", path) as parent:
        parent.save_with_metadata({"counter": 1}, "c")
        child = open_store("sqlite", path)
        try:
            assert _counter(child, "c", None) == 1
        finally:
            child.close()
