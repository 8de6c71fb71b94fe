"""PostgreSQL backends terminated under load: every 2 s for 12 s, ``pg_terminate_backend`` ends
every connection of this test's store (found by its ``application_name``; no other client is
touched) while 4 writers save with a write_id each and retry a failed save with the same
write_id. Expected: 0 lost and 0 duplicated versions (versions == acknowledged writes,
contiguous, every write_id once), and every writer succeeds again within 5 s of each
termination (the pool recovers).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from persistence import BackendUnavailableError, StatePersistence
from tests.reliability._support import fresh_where, opened
from tests.reliability.test_outcomes import _terminate

pytestmark = pytest.mark.faults

WRITERS, SECONDS, EVERY, RECOVERY = 4, 12.0, 2.0, 5.0
STATES = ["p0", "p1", "p2"]


class Writer(threading.Thread):
    def __init__(self, store: StatePersistence, number: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.store, self.number, self.stop = store, number, stop
        self.acks: list[tuple[str, str, int, float]] = []
        self.errors: Counter[str] = Counter()
        self.unexpected: list[BaseException] = []

    def run(self) -> None:
        rng = random.Random(self.number)
        n = 0
        while not self.stop.is_set():
            n += 1
            sid, write_id = rng.choice(STATES), f"w{self.number}-{n}"
            deadline = time.monotonic() + 60
            while True:  # the same write_id until acknowledged
                try:
                    meta = self.store.save_with_metadata(
                        {"write_id": write_id}, sid, write_id=write_id
                    )
                except BackendUnavailableError as exc:  # OutcomeUnknownError included
                    self.errors[type(exc).__name__] += 1
                    if time.monotonic() > deadline:
                        self.unexpected.append(exc)
                        return
                    time.sleep(0.01)
                    continue
                except BaseException as exc:
                    self.unexpected.append(exc)
                    return
                self.acks.append((write_id, sid, meta.version, time.monotonic()))
                break


def test_backends_terminated_every_2s_under_4_writers_lose_and_duplicate_nothing(
    tmp_path: Path,
) -> None:
    where = fresh_where("postgres", tmp_path)
    with opened("postgres", where, max_versions=None, max_size=8) as store:
        app = store.application_name  # type: ignore[attr-defined]
        stop = threading.Event()
        writers = [Writer(store, n, stop) for n in range(WRITERS)]
        for w in writers:
            w.start()
        terminations: list[tuple[float, int]] = []
        started = time.monotonic()
        while time.monotonic() - started < SECONDS:
            time.sleep(EVERY)
            terminations.append((time.monotonic(), _terminate(app)))
        time.sleep(RECOVERY)  # room to recover from the last one
        stop.set()
        for w in writers:
            w.join(timeout=90)

        assert [w.unexpected for w in writers] == [[]] * WRITERS
        errors = sum((w.errors for w in writers), Counter())
        acks = [a for w in writers for a in w.acks]
        print(f"\n{len(acks)} writes acknowledged; terminated {terminations}; errors {errors}")
        assert sum(n for _, n in terminations) >= len(terminations), "nothing was terminated"
        assert errors, "no save failed: the terminations did not hit a write"

        slow = []
        for at, _ in terminations:
            for w in writers:
                nxt = next((t for _, _, _, t in w.acks if t > at), None)
                if nxt is None or nxt - at > RECOVERY:
                    slow.append((w.number, round(at - started, 1), nxt and round(nxt - at, 2)))
        assert slow == [], f"(writer, termination at, recovered after s) over {RECOVERY}s: {slow}"

        stored = []
        for sid in STATES:
            metas = store.list_versions(sid)
            assert [m.version for m in metas] == list(range(1, len(metas) + 1)), sid
            stored += [(m.write_id, sid, m.version) for m in metas]
        acked = {(wid, sid, v) for wid, sid, v, _ in acks}
        assert len(acked) == len(acks)
        lost = acked - set(stored)
        assert lost == set(), f"{len(lost)} acknowledged writes lost: {sorted(lost)[:5]}"
        ids = Counter(wid for wid, _, _ in stored)
        assert [w for w, c in ids.items() if c > 1] == [], "a write_id stored twice"
        assert len(stored) == len(acks), "versions that no acknowledged write accounts for"
