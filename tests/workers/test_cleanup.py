"""The cleanup service on the memory store: exact counts, idempotence, the lock, run records."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from persistence import StatePersistence, cleanup, conf
from persistence.models import WorkerRun
from tests.conftest import FakeClock

pytestmark = pytest.mark.django_db


def seed(store: StatePersistence, clock: FakeClock, *, expired: int, live: int) -> list[str]:
    """``expired`` states that have expired by now and ``live`` ones; returns the live ids."""
    store.save_many(
        {"state_id": f"old-{i}", "state": {"i": i}, "ttl_seconds": 10} for i in range(expired)
    )
    clock.advance(11)
    live_ids = [f"live-{i}" for i in range(live)]
    store.save_many({"state_id": sid, "state": {"id": sid}} for sid in live_ids)
    return live_ids


def held(store: StatePersistence) -> int:
    """States the memory store still holds, expired or not."""
    return int(store.get_stats()["memory_info"]["states_held"])


def test_purge_removes_exactly_the_expired_then_nothing(mem: StatePersistence, clock) -> None:
    live = seed(mem, clock, expired=30, live=20)

    first = cleanup.run_cleanup("mem", "purge_expired", trigger="schedule")
    assert (first.outcome, first.removed, first.batches) == ("ok", 30, 6)  # 5 batches of 7, then 0
    assert held(mem) == 20
    assert all(mem.load_with_metadata(sid) is not None for sid in live)

    second = cleanup.run_cleanup("mem", "purge_expired", trigger="schedule")
    assert (second.outcome, second.removed, second.batches) == ("ok", 0, 1)
    assert held(mem) == 20


def test_prune_keeps_exactly_max_versions_newest(configure: Any) -> None:
    store = configure(max_versions=None)
    for n in range(8):
        store.save_many({"state_id": f"s-{i}", "state": {"n": n}} for i in range(10))
    configure(max_versions=3)

    result = cleanup.run_cleanup("mem", "prune_versions", trigger="schedule")

    assert (result.outcome, result.removed) == ("ok", 50)
    for i in range(10):
        assert [m.version for m in store.list_versions(f"s-{i}")] == [6, 7, 8]
        assert store.load_with_metadata(f"s-{i}")[0] == {"n": 7}
    assert cleanup.run_cleanup("mem", "prune_versions", trigger="schedule").removed == 0
    assert WorkerRun.objects.get(pk=result.run_id).max_versions == 3


def test_prune_applies_a_changed_max_versions_on_the_next_run(configure: Any) -> None:
    store = configure(max_versions=None)
    for n in range(5):
        store.save_with_metadata({"n": n}, "s")
    configure(max_versions=4)
    assert cleanup.run_cleanup("mem", "prune_versions", trigger="schedule").removed == 1
    configure(max_versions=2)
    assert cleanup.run_cleanup("mem", "prune_versions", trigger="schedule").removed == 2
    assert [m.version for m in store.list_versions("s")] == [4, 5]


def test_prune_with_max_versions_none_keeps_everything(mem: StatePersistence) -> None:
    for n in range(5):
        mem.save_with_metadata({"n": n}, "s")
    result = cleanup.run_cleanup("mem", "prune_versions", trigger="schedule")
    assert (result.outcome, result.removed) == ("ok", 0)
    assert len(mem.list_versions("s")) == 5


def test_explicit_max_versions_overrides_settings(mem: StatePersistence) -> None:
    for n in range(5):
        mem.save_with_metadata({"n": n}, "s")
    result = cleanup.run_cleanup("mem", "prune_versions", trigger="command", max_versions=1)
    assert result.removed == 4


def test_run_finding_the_lock_taken_records_busy_and_does_nothing(mem, clock) -> None:
    seed(mem, clock, expired=5, live=0)
    holder = WorkerRun.objects.create(store="mem", task="purge_expired", trigger="schedule")

    result = cleanup.run_cleanup("mem", "purge_expired", trigger="manual")

    assert (result.outcome, result.removed, result.batches) == ("busy", 0, 0)
    assert f"run #{holder.pk}" in result.error
    assert held(mem) == 5
    # The lock is per (store, task): pruning the same store is not blocked.
    assert cleanup.run_cleanup("mem", "prune_versions", trigger="manual").outcome == "ok"
    holder.refresh_from_db()
    assert holder.outcome == "running"


def test_the_lock_is_judged_by_the_database_clock_not_each_workers_own(
    mem, clock, monkeypatch
) -> None:
    """A worker whose clock runs two minutes slow, busy with a run, is not taken for dead by
    a worker whose clock is right (nor, the other way round, would a dead worker whose clock
    ran fast keep the lock past the timeout): every time on a run row is the database's."""
    seed(mem, clock, expired=5, live=0)
    right = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: right() - timedelta(seconds=120))
    slow = cleanup._acquire("mem", "purge_expired", "schedule", 60, "msg-slow", "")
    monkeypatch.setattr(timezone, "now", right)

    result = cleanup.run_cleanup("mem", "purge_expired", trigger="manual")

    assert result.outcome == "busy" and f"run #{slow.pk}" in result.error
    slow.refresh_from_db()
    assert slow.outcome == "running" and abs(slow.heartbeat_at - right()) < timedelta(seconds=5)
    assert held(mem) == 5


@pytest.mark.parametrize("task_id", ["", "msg-9"], ids=["another-run", "its-own-redelivery"])
def test_a_lock_without_progress_past_the_timeout_is_taken_over(
    mem, clock, settings, task_id: str
) -> None:
    """Also when the taker is the dead run's own message delivered again: the stale heartbeat
    is looked at first, so the row says its worker was lost, as any dead worker's does."""
    seed(mem, clock, expired=5, live=0)
    stale = timezone.now() - timedelta(seconds=61)
    dead = WorkerRun.objects.create(
        store="mem",
        task="purge_expired",
        trigger="schedule",
        task_id=task_id,
        started_at=stale,
        heartbeat_at=stale,
    )

    result = cleanup.run_cleanup("mem", "purge_expired", trigger="schedule", task_id=task_id)

    assert (result.outcome, result.removed) == ("ok", 5)
    dead.refresh_from_db()
    assert dead.outcome == "error" and dead.error == "worker lost: no progress for over 60 s"


def test_a_redelivered_message_takes_over_its_own_dead_run(mem, clock) -> None:
    """A message comes back when the worker that had it died, while that run's heartbeat is
    still fresh: the redelivery must finish the job, not record busy against itself."""
    seed(mem, clock, expired=5, live=0)
    dead = WorkerRun.objects.create(
        store="mem", task="purge_expired", trigger="schedule", task_id="msg-1"
    )

    result = cleanup.run_cleanup("mem", "purge_expired", trigger="schedule", task_id="msg-1")

    assert (result.outcome, result.removed) == ("ok", 5)
    dead.refresh_from_db()
    assert dead.outcome == "error" and "delivered again" in dead.error
    # Another message still finds a live lock busy.
    holder = WorkerRun.objects.create(
        store="mem", task="purge_expired", trigger="schedule", task_id="msg-2"
    )
    other = cleanup.run_cleanup("mem", "purge_expired", trigger="schedule", task_id="msg-3")
    assert other.outcome == "busy" and f"run #{holder.pk}" in other.error


@pytest.mark.parametrize(("expired", "removed"), [(20, 14), (5, 5)])
def test_a_run_whose_lock_is_taken_over_stops_and_its_removals_stay_counted(
    mem, clock, expired: int, removed: int
) -> None:
    """Taken over mid-run (20: at the next heartbeat) or in its last batch (5: when it
    finishes), a run reports the error the row shows, and the row counts what it removed."""
    seed(mem, clock, expired=expired, live=0)

    def taken_over(progress: cleanup.Progress) -> None:
        WorkerRun.objects.filter(outcome="running").update(outcome="error", error="worker lost")

    result = cleanup.run_cleanup("mem", "purge_expired", trigger="schedule", on_batch=taken_over)

    assert (result.outcome, result.removed) == ("error", removed)
    assert "lock lost" in result.error
    row = WorkerRun.objects.get(pk=result.run_id)
    assert (row.outcome, row.removed, row.error) == ("error", removed, "worker lost")


def test_a_run_that_fails_and_loses_its_lock_keeps_its_own_error(mem, clock, monkeypatch) -> None:
    seed(mem, clock, expired=3, live=0)

    def down(limit: int = 1000) -> int:
        WorkerRun.objects.filter(outcome="running").update(outcome="error", error="worker lost")
        raise ConnectionError("store down")

    monkeypatch.setattr(mem, "purge_expired", down)
    result = cleanup.run_cleanup("mem", "purge_expired", trigger="schedule")
    assert result.outcome == "error"
    assert result.error.startswith("ConnectionError: store down; then lock lost")


def test_run_record_holds_times_counts_and_trigger(mem, clock) -> None:
    seed(mem, clock, expired=9, live=1)
    result = cleanup.run_cleanup(
        "mem", "purge_expired", trigger="manual", task_id="abc", requested_by="ops"
    )
    run = WorkerRun.objects.get(pk=result.run_id)
    assert (run.store, run.task, run.trigger, run.outcome) == (
        "mem",
        "purge_expired",
        "manual",
        "ok",
    )
    assert (run.removed, run.batches, run.task_id, run.requested_by) == (9, 3, "abc", "ops")
    assert run.started_at <= run.finished_at
    assert run.error == "" and not run.more_left and run.host


def test_time_budget_stops_between_batches_and_the_next_run_continues(mem, clock) -> None:
    seed(mem, clock, expired=20, live=0)
    first = cleanup.run_cleanup("mem", "purge_expired", trigger="schedule", time_limit=1e-9)
    assert (first.outcome, first.removed, first.batches, first.more_left) == ("ok", 7, 1, True)
    rest = cleanup.run_cleanup("mem", "purge_expired", trigger="schedule")
    assert (rest.removed, rest.more_left) == (13, False)


def test_an_error_is_recorded_logged_and_releases_the_lock(settings, tmp_path, caplog) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    settings.STATEHUB_STORES = {"broken": f"sqlite:///{tmp_path}/a-file/x.db"}
    result = cleanup.run_cleanup("broken", "purge_expired", trigger="schedule")
    assert result.outcome == "error" and result.error
    assert not WorkerRun.objects.filter(outcome="running").exists()
    # The task succeeds with an error result: a warning is what log alerting can see.
    (warning,) = [r for r in caplog.records if r.name == "persistence.cleanup"]
    assert warning.levelname == "WARNING" and "'broken' failed" in warning.getMessage()


def test_progress_is_reported_after_every_batch(mem, clock) -> None:
    seed(mem, clock, expired=15, live=0)
    seen: list[cleanup.Progress] = []
    cleanup.run_cleanup("mem", "purge_expired", trigger="command", on_batch=seen.append)
    assert [(p.batches, p.last_batch, p.removed) for p in seen] == [
        (1, 7, 7),
        (2, 7, 14),
        (3, 1, 15),
    ]


def test_unknown_store_task_or_trigger_is_refused_by_name(mem) -> None:
    with pytest.raises(KeyError, match="no store named 'nope'"):
        cleanup.run_cleanup("nope", "purge_expired", trigger="schedule")
    with pytest.raises(ValueError, match="task must be one of purge_expired, prune_versions"):
        cleanup.run_cleanup("mem", "vacuum", trigger="schedule")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trigger must be one of schedule, manual, command"):
        cleanup.run_cleanup("mem", "purge_expired", trigger="bogus")  # type: ignore[arg-type]
    assert not WorkerRun.objects.exists()


def test_old_run_records_are_pruned_by_the_next_run(mem, settings) -> None:
    settings.STATEHUB_RUN_RETENTION_DAYS = 30
    old = timezone.now() - timedelta(days=31)
    for _ in range(3):
        WorkerRun.objects.create(
            store="mem",
            task="purge_expired",
            trigger="schedule",
            outcome="ok",
            started_at=old,
            finished_at=old,
        )
    recent = WorkerRun.objects.create(
        store="mem",
        task="prune_versions",
        trigger="schedule",
        outcome="ok",
        started_at=old + timedelta(days=2),
    )

    result = cleanup.run_cleanup("mem", "purge_expired", trigger="schedule")

    assert set(WorkerRun.objects.values_list("pk", flat=True)) == {recent.pk, result.run_id}


def test_tasks_are_thin_callers_recording_their_task_id(mem, clock) -> None:
    from persistence import tasks

    seed(mem, clock, expired=3, live=0)
    outcome = tasks.purge_expired.apply(kwargs={"store": "mem"}, task_id="t-1").get()
    assert (outcome["outcome"], outcome["removed"]) == ("ok", 3)
    run = WorkerRun.objects.get(task_id="t-1")
    assert (run.trigger, run.removed) == ("schedule", 3)
    assert tasks.purge_expired.acks_late and tasks.purge_expired.reject_on_worker_lost
    assert tasks.prune_versions.acks_late and tasks.prune_versions.reject_on_worker_lost


@pytest.mark.parametrize("size", [0, 100_001, "1000", True])
def test_a_batch_size_no_store_takes_is_refused_when_read(settings, size: Any) -> None:
    """Caught when the worker imports its tasks, not by every run failing later."""
    settings.STATEHUB_CLEANUP_BATCH_SIZE = size
    with pytest.raises(ValueError, match="STATEHUB_CLEANUP_BATCH_SIZE must be a number from 1"):
        conf.cleanup_settings()


def test_a_lost_django_database_is_reported_as_it_is(mem, clock, monkeypatch) -> None:
    """Django's database failing mid-run: its error reaches the caller, not hidden behind the
    run-record housekeeping failing the same way afterwards."""
    from django.db import OperationalError

    seed(mem, clock, expired=3, live=0)

    def connection_closed(run: Any) -> None:
        raise OperationalError("the connection is closed")

    def housekeeping() -> int:
        raise AssertionError("housekeeping ran after the database failed")

    monkeypatch.setattr(cleanup, "_finish", connection_closed)
    monkeypatch.setattr(cleanup, "prune_run_records", housekeeping)
    with pytest.raises(OperationalError, match="the connection is closed"):
        cleanup.run_cleanup("mem", "purge_expired", trigger="schedule")


def test_a_batch_with_an_unknown_outcome_is_recorded_without_the_save_advice(
    mem, clock, monkeypatch
) -> None:
    """OutcomeUnknownError tells a saver to retry with its write_id; a purge has none."""
    from persistence import OutcomeUnknownError

    seed(mem, clock, expired=3, live=0)

    def cut(limit: int = 1000) -> int:
        raise OutcomeUnknownError(
            "the connection failed after a write was sent; retry with the same write_id"
        )

    monkeypatch.setattr(mem, "purge_expired", cut)
    result = cleanup.run_cleanup("mem", "purge_expired", trigger="schedule")
    assert result.outcome == "error" and "the next run finishes the job" in result.error
    assert "write_id" not in result.error
