"""Pruning while other threads save: every save survives, and exactly max_versions are kept."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from persistence import cleanup, conf

pytestmark = pytest.mark.django_db

THREADS, STATES_PER_THREAD, SAVES, KEEP = 4, 5, 25, 3


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "memory":
        return f"memory://prune-{uuid.uuid4().hex}"
    return f"sqlite:///{tmp_path}/prune.db"


def test_concurrent_saves_during_prune_lose_nothing(store_url: str, settings: Any) -> None:
    # The store itself keeps every version; only the workers prune, to KEEP.
    settings.STATEHUB_STORES = {"s": {"url": store_url, "options": {"max_versions": None}}}
    settings.STATEHUB_CLEANUP_BATCH_SIZE = 2
    store = conf.get_store("s")
    written: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    overlapped = 0  # batches that removed versions while writers were still saving

    def writer(t: int) -> None:
        try:
            for n in range(SAVES):
                for i in range(STATES_PER_THREAD):
                    sid = f"t{t}-s{i}"
                    meta = store.save_with_metadata({"t": t, "n": n}, sid)
                    written.setdefault(sid, []).append(meta.version)
                time.sleep(0.002)  # yield, so prune batches interleave with the saves
                if n == SAVES // 2:  # halfway, make sure prunes ran among the saves (on a
                    deadline = time.monotonic() + 30  # loaded machine they could all come late)
                    while overlapped < 2 and time.monotonic() < deadline:
                        time.sleep(0.005)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()

    def count(progress: cleanup.Progress) -> None:
        nonlocal overlapped
        overlapped += any(thread.is_alive() for thread in threads)

    while any(thread.is_alive() for thread in threads):
        result = cleanup.run_cleanup(
            "s", "prune_versions", trigger="schedule", max_versions=KEEP, on_batch=count
        )
        assert result.outcome == "ok", result.error
    for thread in threads:
        thread.join()
    assert not errors
    cleanup.run_cleanup("s", "prune_versions", trigger="schedule", max_versions=KEEP)

    assert overlapped > 1  # the prunes really raced the saves
    for sid, versions in written.items():
        assert versions == list(range(1, SAVES + 1)), sid  # no save lost or renumbered
        kept = [m.version for m in store.list_versions(sid)]
        assert kept == list(range(SAVES - KEEP + 1, SAVES + 1)), sid
        state, meta = store.load_with_metadata(sid)
        assert (state["n"], meta.version) == (SAVES - 1, SAVES)
    assert (
        cleanup.run_cleanup("s", "prune_versions", trigger="schedule", max_versions=KEEP).removed
        == 0
    )
