"""PostgreSQL backends terminated under load: every 2 s for 12 s, ``pg_terminate_backend`` ends
every connection of this test's store (found by its ``application_name``; no other client is
touched) while 4 writers save with a write_id each and retry a failed save with the same
write_id. Expected: 0 lost and 0 duplicated versions (versions == acknowledged writes,
contiguous, every write_id once), and every writer succeeds again within 5 s of each
termination (the pool recovers).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability._support import RetryingWriter, fresh_where, opened
from tests.reliability.test_outcomes import _terminate

pytestmark = pytest.mark.faults

WRITERS, SECONDS, EVERY, RECOVERY = 4, 12.0, 2.0, 5.0
STATES = ["p0", "p1", "p2"]


def test_backends_terminated_every_2s_under_4_writers_lose_and_duplicate_nothing(
    tmp_path: Path,
) -> None:
    where = fresh_where("postgres", tmp_path)
    with opened("postgres", where, max_versions=None, max_size=8) as store:
        app = store.application_name  # type: ignore[attr-defined]
        stop = threading.Event()
        writers = [RetryingWriter(store, n, stop, STATES) for n in range(WRITERS)]
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
        errors = Counter(kind for w in writers for kind, _, _ in w.errors)
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
