"""SQLite writer processes SIGKILLed at random moments, 100 times.

Three writer processes save continuously into one file (single saves and save_many, with a
write_id each). 100 times, one of them is killed with SIGKILL after a random 20-250 ms and
replaced. After every kill: ``PRAGMA integrity_check`` is ok, and every write a writer
acknowledged (reported only after save returned) is in the file: 0 acknowledged writes lost.
No exception at all reaches a writer, "database is locked" included.

Writers are forked from a forkserver that has already imported the store, so 100 restarts
cost milliseconds each instead of a fresh interpreter each.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import open_store
from tests.reliability._workers import sqlite_writer

pytestmark = pytest.mark.faults

KILLS, WRITERS = 100, 3


class Report:
    """One writer's report file, read incrementally; a cut-off last line waits for more."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0
        self.ready = False
        self.acks: set[tuple[str, str, int]] = set()
        self.errors: list[str] = []

    def read(self) -> Report:
        if not self.path.exists():
            return self
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            if line == "R":
                self.ready = True
            elif line.startswith("A "):
                _, write_id, sid, version = line.split(" ")
                self.acks.add((write_id, sid, int(version)))
            elif line.startswith("E "):
                self.errors.append(line)
        return self


def _check_file(db: str) -> set[tuple[str, str, int]]:
    conn = sqlite3.connect(db, timeout=60)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchall()
        assert result == [("ok",)], f"integrity_check: {result}"
        rows = conn.execute(
            "SELECT write_id, state_id, version FROM versions WHERE write_id IS NOT NULL"
        ).fetchall()
    finally:
        conn.close()
    return {(w, s, int(v)) for w, s, v in rows}


def test_100_sigkills_of_writers_keep_the_file_intact_and_every_acknowledged_write(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "kill.db")
    open_store("sqlite", db).close()  # the schema exists before the first kill
    ctx: Any = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["persistence.backends.sqlite", "tests.reliability._workers"])
    rng = random.Random(7)
    reports: list[Report] = []
    live: list[tuple[Any, Report]] = []

    def spawn() -> None:
        token = uuid.uuid4().hex[:8]
        reports.append(Report(tmp_path / f"acks-{token}"))
        args = (db, token, str(reports[-1].path))
        proc = ctx.Process(target=sqlite_writer, args=args, daemon=True)
        proc.start()
        live.append((proc, reports[-1]))

    for _ in range(WRITERS):
        spawn()
    kills_while_writing = 0
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.02, 0.25))
            victim, report = live.pop(rng.randrange(len(live)))
            kills_while_writing += report.read().ready
            os.kill(victim.pid, 9)
            victim.join(timeout=30)
            assert victim.exitcode == -9
            # Acks first, the file second: an ack read now was committed before the file is
            # read, while the live writers keep acknowledging more in the meantime.
            acked: set[tuple[str, str, int]] = set()
            errors: list[str] = []
            for each in reports:
                each.read()
                acked |= each.acks
                errors += each.errors
            in_file = _check_file(db)
            lost = acked - in_file
            assert lost == set(), f"{len(lost)} acknowledged writes lost: {sorted(lost)[:5]}"
            assert errors == [], f"exceptions reached a writer: {errors[:5]}"
            spawn()
    finally:
        for proc, _ in live:
            proc.kill()
            proc.join(timeout=30)

    total_acks = set().union(*(r.read().acks for r in reports))
    print(f"\n{KILLS} kills ({kills_while_writing} mid-writing), {len(total_acks)} acks kept")
    assert len(total_acks) > KILLS, "the writers hardly wrote: the kills proved little"
    assert kills_while_writing >= KILLS // 2, "most kills hit writers that were still starting"
    store = open_store("sqlite", db, max_versions=None)
    try:
        for sid in store.list_states():
            versions = [m.version for m in store.list_versions(sid)]
            assert versions == list(range(1, len(versions) + 1)), sid
            assert store.load_with_metadata(sid) is not None
    finally:
        store.close()
