"""Code that runs in child processes of the reliability tests (kept light to import)."""

from __future__ import annotations

import contextlib
import os
import random
import time
from typing import Any

from persistence import StatePersistence, VersionConflictError
from tests.conftest import open_store

COUNTER_ID = "counter"


def increment(
    store: StatePersistence, state_id: str, worker: int, cycles: int, checked: bool
) -> tuple[int, int]:
    """``cycles`` load-increment-save cycles on one counter; returns (attempts, conflicts).

    ``checked`` saves with ``version=latest+1`` and retries on a conflict (optimistic
    concurrency); unchecked saves with ``version=None``: last writer wins, updates get lost.
    """
    attempts = conflicts = 0
    for cycle in range(cycles):
        write_id = f"w{worker}-{cycle}"
        while True:
            attempts += 1
            loaded = store.load_with_metadata(state_id)
            counter, latest = (0, 0)
            if loaded is not None:
                counter, latest = loaded[0]["counter"], loaded[1].version
            state = {"counter": counter + 1, "write_id": write_id}
            # A moment between read and write, as a caller computing its update has: it lets
            # threads (the memory store's run) interleave there as processes do on their own.
            time.sleep(0)
            try:
                store.save_with_metadata(
                    state, state_id, version=latest + 1 if checked else None, write_id=write_id
                )
                break
            except VersionConflictError:
                conflicts += 1
    return attempts, conflicts


def increment_process(
    backend: str, where: str, worker: int, cycles: int, barrier: Any, results: Any
) -> None:
    """Both runs of the lost-update experiment in one process: checked, then the control."""
    store = open_store(backend, where, max_versions=None)
    try:
        out = {}
        for phase, checked in (("checked", True), ("control", False)):
            barrier.wait(timeout=300)  # every process starts each phase together
            started = time.monotonic()
            attempts, conflicts = increment(store, f"{COUNTER_ID}-{phase}", worker, cycles, checked)
            out[phase] = (attempts, conflicts, time.monotonic() - started)
        results.put((worker, out))
    finally:
        store.close()


# ------------------------------------------------------------------ history recording


def history_process(
    backend: str, where: str, role: str, worker: int, state_ids: list[str], seconds: float,
    barrier: Any, results: Any,
) -> None:  # fmt: skip
    store = open_store(backend, where, max_versions=None)
    try:
        barrier.wait(timeout=300)
        results.put(record_history(store, role, worker, state_ids, seconds))
    finally:
        store.close()


def record_history(
    store: StatePersistence, role: str, worker: int, state_ids: list[str], seconds: float
) -> list[tuple[Any, ...]]:
    """Operations as ``(kind, state_id, invoked, completed, version, token)``; times are
    ``time.monotonic()`` (one system-wide clock on Linux, so processes can be compared).
    A write that raised is recorded with completed=None (it may or may not have happened)."""
    rng = random.Random(worker * 7919 + os.getpid())
    ops: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        sid = rng.choice(state_ids)
        n += 1
        if role == "writer":
            token = f"{worker}-{n}"
            invoked = time.monotonic()
            try:
                meta = store.save_with_metadata({"token": token}, sid)
            except Exception:
                ops.append(("write", sid, invoked, None, None, token))
                continue
            ops.append(("write", sid, invoked, time.monotonic(), meta.version, token))
        else:
            invoked = time.monotonic()
            loaded = store.load_with_metadata(sid)
            completed = time.monotonic()
            version = token = None
            if loaded is not None:
                version, token = loaded[1].version, loaded[0]["token"]
            ops.append(("read", sid, invoked, completed, version, token))
    return ops


# ------------------------------------------------------------------ SQLite kill loop


def sqlite_writer(path: str, token: str, ack_path: str) -> None:
    """Save forever, appending each acknowledged write to ``ack_path`` only after save returned.

    Lines: ``R`` ready; ``A <write_id> <state_id> <version>`` an ack; ``E <type> <message>``
    an exception that reached this caller. Each line is one small write(); a line cut short
    by SIGKILL has no newline and is ignored by the reader (an ack not fully reported is not
    claimed).
    """
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    store = open_store("sqlite", path, max_versions=None)
    rng = random.Random(token)
    os.write(fd, b"R\n")
    n = 0
    while True:
        n += 1
        sid = f"s{rng.randrange(8)}"
        write_id = f"{token}-{n}"
        state = {"write_id": write_id, "pad": "x" * rng.randrange(0, 400)}
        try:
            if rng.random() < 0.1:
                metas = store.save_many(
                    [
                        {"state_id": sid, "state": state, "write_id": write_id},
                        {"state_id": f"m{n % 5}", "state": state, "tags": ["many"]},
                    ]
                )
                meta = metas[0]
            else:
                meta = store.save_with_metadata(state, sid, tags=[f"t{n % 3}"], write_id=write_id)
        except Exception as exc:  # report everything: the test decides what is allowed
            text = f"E {type(exc).__name__} {exc}".replace("\n", " ")[:400]
            with contextlib.suppress(OSError):
                os.write(fd, text.encode() + b"\n")
            continue
        os.write(fd, f"A {write_id} {sid} {meta.version}\n".encode())
        time.sleep(0.001)  # keeps the file small enough to check 100 times
