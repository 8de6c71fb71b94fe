"""A process forked while another thread holds one of the library's locks can still use it.

A lock held at the fork stays held in the child, where the thread that would release it does
not exist. Prefork servers (gunicorn, Celery) fork whenever they like: the library replaces
its process-wide locks in the child.
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

from persistence import connect, registry


def _save_in_child(store: Any, results: Any) -> None:
    store.save_with_metadata({"in": "child"}, "s")
    connect("memory://fork-test-other")  # takes the named-store lock
    results.put(store.load_with_metadata("s")[0])


def test_a_child_forked_while_a_thread_holds_the_locks_is_not_stuck() -> None:
    store = connect("memory://fork-test")
    store.save_with_metadata({"in": "parent"}, "s")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.op_stats._lock, registry._named_lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_save_in_child, args=(store, results))
    try:
        child.start()
        assert results.get(timeout=20) == {"in": "child"}
    finally:
        release.set()
        holder.join(10)
        child.join(10)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
