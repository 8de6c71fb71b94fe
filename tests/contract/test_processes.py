"""Several processes saving one state through their own store objects: no lost or duplicate
version. Runs on the backends that outlive a process (not memory)."""

from __future__ import annotations

import multiprocessing

import pytest

from tests.conftest import DURABLE, open_store

WORKERS, SAVES = 4, 30


def _writer(backend: str, where: str, worker: int) -> None:
    store = open_store(backend, where, max_versions=None)
    try:
        for n in range(SAVES):
            store.save_with_metadata({"worker": worker, "n": n}, "shared")
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", DURABLE)
def test_processes_saving_one_state_lose_and_duplicate_no_version(make_store, backend) -> None:
    store = make_store(max_versions=None)
    where = {"sqlite": getattr(store, "path", None)}.get(backend) or _where(store)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(backend, where, w)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WORKERS
    versions = [m.version for m in store.list_versions("shared")]
    assert versions == list(range(1, WORKERS * SAVES + 1))
    seen = set()
    for v in versions:
        loaded = store.load_with_metadata("shared", version=v)
        assert loaded is not None
        seen.add((loaded[0]["worker"], loaded[0]["n"]))
    assert len(seen) == WORKERS * SAVES


def _where(store) -> str:
    # Redis stores are isolated by namespace, PostgreSQL stores by schema.
    return getattr(store, "namespace", None) or store.schema
