"""Concurrent writers and readers on 3 states for STATEHUB_HISTORY_SECONDS (20 s under CI,
3 s locally by default): every read returns the latest write acknowledged before the read
began, or a newer one (0 violations). The checker itself is tested first on known-bad and
known-good histories, so a pass means something.
"""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BACKENDS
from tests.reliability._support import env_number, fresh_where, opened
from tests.reliability._workers import history_process, record_history
from tests.reliability.history import check_history

STATES = ["h-0", "h-1", "h-2"]
WRITERS, READERS = 2, 2

# ------------------------------------------------------------------ the checker on known histories

W, R = "write", "read"


def test_checker_accepts_a_read_overlapping_a_write_seeing_either_version() -> None:
    history = [
        (W, "s", 0.0, 1.0, 1, "a"),
        (W, "s", 2.0, 4.0, 2, "b"),
        (R, "s", 2.5, 3.0, 1, "a"),  # concurrent with write 2: old value is fine
        (R, "s", 2.6, 3.5, 2, "b"),  # ... and so is the new one
        (R, "s", 5.0, 6.0, 2, "b"),
        (R, "s", -1.0, -0.5, None, None),  # before anything was written
    ]
    assert check_history(history) == []


def test_checker_catches_a_stale_read() -> None:
    history = [(W, "s", 0.0, 1.0, 1, "a"), (W, "s", 2.0, 3.0, 2, "b"), (R, "s", 4.0, 5.0, 1, "a")]
    (problem,) = check_history(history)
    assert problem.startswith("stale read") and "version 2 was acknowledged" in problem


def test_checker_catches_a_read_of_nothing_after_an_acknowledged_write() -> None:
    history = [(W, "s", 0.0, 1.0, 1, "a"), (R, "s", 2.0, 3.0, None, None)]
    assert check_history(history)[0].startswith("stale read")


def test_checker_catches_a_read_from_a_write_that_never_happened() -> None:
    history = [(W, "s", 0.0, 1.0, 1, "a"), (R, "s", 2.0, 3.0, 7, "zzz")]
    assert check_history(history)[0].startswith("read from the future")


def test_checker_catches_a_read_of_a_write_invoked_after_the_read_completed() -> None:
    history = [(R, "s", 0.0, 1.0, 1, "a"), (W, "s", 2.0, 3.0, 1, "a")]
    assert check_history(history)[0].startswith("read from the future")


def test_checker_accepts_a_failed_write_that_took_effect_and_rejects_one_from_later() -> None:
    ok = [(W, "s", 0.0, None, None, "a"), (R, "s", 0.5, 1.0, 1, "a")]
    assert check_history(ok) == []
    late = [(W, "s", 2.0, None, None, "a"), (R, "s", 0.5, 1.0, 1, "a")]
    assert check_history(late)[0].startswith("read from the future")


def test_checker_catches_a_wrong_value_under_an_acknowledged_version() -> None:
    history = [(W, "s", 0.0, 1.0, 1, "a"), (R, "s", 2.0, 3.0, 1, "b")]
    assert check_history(history)[0].startswith("wrong value")


def test_checker_catches_reads_going_back_in_time() -> None:
    history = [
        (W, "s", 0.0, 10.0, 1, "a"),  # one long write: both reads overlap it
        (R, "s", 1.0, 2.0, 1, "a"),
        (R, "s", 3.0, 4.0, None, None),
    ]
    problems = check_history(history)
    assert len(problems) == 1 and problems[0].startswith("non-monotonic")


def test_checker_keeps_states_apart() -> None:
    history = [(W, "a", 0.0, 1.0, 5, "x"), (R, "b", 2.0, 3.0, None, None)]
    assert check_history(history) == []


# ------------------------------------------------------------------ live histories


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_reads_never_stale_under_concurrent_writers_for_history_seconds(
    backend: str, tmp_path: Path
) -> None:
    seconds = env_number("STATEHUB_HISTORY_SECONDS", 20, 3)
    where = fresh_where(backend, tmp_path)
    with opened(backend, where, max_versions=None) as store:
        roles = ["writer"] * WRITERS + ["reader"] * READERS
        if backend == "memory":
            ops = _threads(store, roles, seconds)
        else:
            ops = _processes(backend, where, roles, seconds)
    writes = [op for op in ops if op[0] == "write"]
    reads = [op for op in ops if op[0] == "read"]
    failed = [op for op in writes if op[3] is None]
    print(f"\n{backend}: {len(writes)} writes ({len(failed)} failed), {len(reads)} reads")
    assert len(writes) >= 50 and len(reads) >= 50, "too little traffic to mean anything"
    assert failed == []
    problems = check_history(ops)
    assert problems == [], "\n".join(problems)


def _threads(store: Any, roles: list[str], seconds: float) -> list[Any]:
    ops: list[Any] = []
    lock = threading.Lock()

    def run(worker: int, role: str) -> None:
        got = record_history(store, role, worker, STATES, seconds)
        with lock:
            ops.extend(got)

    threads = [threading.Thread(target=run, args=(i, r)) for i, r in enumerate(roles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ops


def _processes(backend: str, where: str, roles: list[str], seconds: float) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(roles)), ctx.Queue()
    procs = [
        ctx.Process(
            target=history_process,
            args=(backend, where, role, i, STATES, seconds, barrier, results),
        )
        for i, role in enumerate(roles)
    ]
    for p in procs:
        p.start()
    ops: list[Any] = []
    try:
        for _ in procs:
            ops.extend(results.get(timeout=seconds + 300))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return ops
