"""Cleanup services: purge expired states and prune old versions of one store, in bounded batches.

Every caller goes through :func:`run_cleanup`: the Celery tasks, the management commands (cron)
and, through the queue, "Run now" on the dashboard. A run

- takes the (store, task) lock: a ``running`` WorkerRun row, unique per (store, task) by a
  partial unique constraint, so it holds across the processes that share Django's database
  (and across hosts when that database is PostgreSQL). A run that finds the lock taken records
  ``busy`` and does nothing. A holder that makes no progress for STATEHUB_CLEANUP_LOCK_TIMEOUT
  seconds (its worker was killed, or one batch blocked that long) is marked ``error`` and its
  lock taken over, and so is a holder whose own message is delivered again;
- calls the store's ``purge_expired`` / ``prune_versions`` with ``limit=batch_size`` until one
  returns 0 or the time budget is spent (the rest waits for the next run), recording progress
  after every batch (the heartbeat the lock's expiry reads, and the workers page's live view);
- deletes run records older than STATEHUB_RUN_RETENTION_DAYS.

Both store operations are idempotent, so a run repeated after a crash, or racing one that took
over a stale lock, removes each item once. Counts are recorded after each batch: a batch the
store committed just before its worker died (or its Django database went away) is removed
but counted by no run.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, timedelta
from typing import Any, Literal, cast

from django.db import IntegrityError, transaction
from django.db.models.functions import Now

from persistence import OutcomeUnknownError, StatePersistence, conf
from persistence.models import WorkerRun
from persistence.store import versions_kept

log = logging.getLogger(__name__)
_LOCK_LOST = (
    "lock lost after {batches} batches: a batch took longer than the lock timeout (so the run "
    "was taken for dead), or this run's message was delivered again"
)

TaskName = Literal["purge_expired", "prune_versions"]
Trigger = Literal["schedule", "manual", "command"]
TRIGGERS: tuple[Trigger, ...] = ("schedule", "manual", "command")
TASKS: tuple[TaskName, ...] = ("purge_expired", "prune_versions")


def check_task(task: str) -> TaskName:
    """``task`` if it is one of TASKS; ValueError naming them otherwise."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)} (got {task!r})")
    return task


_RECORD_DELETE_CHUNK = 1000
_RUNNING = WorkerRun.Outcome.RUNNING
BROKER_TIMEOUT = 3.0  # seconds "Run now" waits for the broker


class LockLost(Exception):
    """This run stalled so long that another one took its lock over; it stops."""


class BrokerUnavailable(Exception):
    """The task could not be queued: the Celery broker is unreachable or refused it."""


@dataclass(frozen=True)
class Progress:
    """What a run has done so far; passed to ``on_batch`` after every batch."""

    store: str
    task: TaskName
    removed: int
    batches: int
    last_batch: int


@dataclass(frozen=True)
class RunResult:
    run_id: int
    store: str
    task: TaskName
    outcome: str
    removed: int
    batches: int
    more_left: bool
    error: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_cleanup(
    store: str,
    task: TaskName,
    *,
    trigger: Trigger,
    batch_size: int | None = None,
    time_limit: float | None = None,
    max_versions: int | None = None,
    task_id: str = "",
    requested_by: str = "",
    on_batch: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Run ``task`` on the configured store ``store`` once, under its lock, and record it.

    ``batch_size`` and ``time_limit`` default to the settings (a time limit of 0 means none);
    ``max_versions`` (prune only) defaults to the store's configured option, read now, so a
    settings change applies to the next prune.
    """
    check_task(task)
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {', '.join(TRIGGERS)} (got {trigger!r})")
    config = conf.store_configs()
    if store not in config:
        raise KeyError(f"no store named {store!r}; configured: {', '.join(config)}")
    limits = conf.cleanup_settings()
    batch = batch_size or limits.batch_size
    budget = limits.time_limit if time_limit is None else time_limit
    run = _acquire(store, task, trigger, limits.lock_timeout, task_id, requested_by)
    if run.outcome == _RUNNING:
        _work(run, batch, budget, max_versions, on_batch)
    # Not in a finally: when Django's database fails mid-run, its error must reach the caller
    # as it is, not hidden behind the same failure of this housekeeping.
    prune_run_records()
    if run.outcome == WorkerRun.Outcome.ERROR:
        # Recorded, and the task itself succeeds (its result says error): log it as what it
        # is, so that alerting on warnings sees a store that cannot be cleaned.
        log.warning("%s on store %r failed (run #%d): %s", task, store, run.pk, run.error)
    return RunResult(
        run.pk, store, task, run.outcome, run.removed, run.batches, run.more_left, run.error
    )


def _work(
    run: WorkerRun,
    batch: int,
    budget: float,
    max_versions: int | None,
    on_batch: Callable[[Progress], None] | None,
) -> None:
    task = cast(TaskName, run.task)
    deadline = time.monotonic() + budget if budget else None
    try:
        keep = None
        if task == "prune_versions":
            keep = max_versions if max_versions is not None else _configured_keep(run.store)
            run.max_versions = keep
        if task == "purge_expired" or keep is not None:  # None: every version is kept
            step = _step(conf.get_store(run.store), task, keep)
            while True:
                removed = step(batch)
                run.removed += removed
                run.batches += 1
                if removed == 0:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    run.more_left = True
                    break
                _heartbeat(run)
                if on_batch is not None:
                    on_batch(Progress(run.store, task, run.removed, run.batches, removed))
        run.outcome = WorkerRun.Outcome.OK
    except LockLost as exc:
        run.outcome, run.error = WorkerRun.Outcome.ERROR, str(exc)
        _count_lost(run)
        return
    except OutcomeUnknownError:  # its advice (retry with the write_id) is for saves
        run.outcome = WorkerRun.Outcome.ERROR
        run.error = (
            "OutcomeUnknownError: the connection failed during a batch, which may or may not "
            "have been applied; the next run finishes the job"
        )
    except Exception as exc:  # recorded for the operator, then the run ends
        run.outcome, run.error = WorkerRun.Outcome.ERROR, f"{type(exc).__name__}: {exc}"
    _finish(run)


def _step(store: StatePersistence, task: TaskName, keep: int | None) -> Callable[[int], int]:
    if task == "purge_expired":
        return lambda limit: store.purge_expired(limit=limit)
    return lambda limit: store.prune_versions(keep, limit=limit)


def _configured_keep(name: str) -> int | None:
    """The versions a state keeps by the store's current settings (None: all); the store
    opened may predate them (a named memory store keeps its first options)."""
    options = conf.store_configs()[name].options
    store = conf.get_store(name)
    return versions_kept(
        options.get("enable_versioning", store.enable_versioning),
        options.get("max_versions", store.max_versions),
    )


# ---------------------------------------------------------------------- the lock


def _acquire(
    store: str,
    task: TaskName,
    trigger: Trigger,
    lock_timeout: float,
    task_id: str,
    requested_by: str,
) -> WorkerRun:
    """A new ``running`` row (the lock is ours) or a finished ``busy`` row (it is not).

    Every time on a run row is the Django database's clock (``Now()``), never the local one
    of the process writing it: workers on several machines judge each other's heartbeats by
    one clock, so a worker whose clock runs slow is not taken for dead, nor a dead one whose
    clock ran fast taken for alive."""
    _release_abandoned(store, task, lock_timeout, task_id)
    fields: dict[str, Any] = {
        "store": store,
        "task": task,
        "trigger": trigger,
        "task_id": task_id,
        "requested_by": requested_by,
        "host": f"{socket.gethostname()}:{os.getpid()}",
    }
    try:
        with transaction.atomic():
            run = WorkerRun.objects.create(
                outcome=_RUNNING, started_at=Now(), heartbeat_at=Now(), **fields
            )
    except IntegrityError:
        holder = WorkerRun.objects.filter(store=store, task=task, outcome=_RUNNING).first()
        note = "another run held the lock"
        if holder:  # a date and zone, as the note is read wherever the page is
            started = f"{holder.started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
            note = f"run #{holder.pk} ({holder.trigger}, started {started}) holds the lock"
        run = WorkerRun.objects.create(
            outcome=WorkerRun.Outcome.BUSY,
            started_at=Now(),
            heartbeat_at=Now(),
            finished_at=Now(),
            error=f"busy: {note}",
            **fields,
        )
    run.refresh_from_db(fields=["started_at", "heartbeat_at", "finished_at"])
    return run


def _release_abandoned(store: str, task: str, lock_timeout: float, task_id: str) -> None:
    held = WorkerRun.objects.filter(store=store, task=task, outcome=_RUNNING)
    _lost(held, lock_timeout)
    if task_id:
        # Our own message delivered again: the broker hands a message out again when the
        # worker that had it died, and also when only its connection to the broker dropped
        # (RabbitMQ requeues at once, Redis on reconnecting) while the run goes on. Waiting
        # for the heartbeat to go stale would record this delivery busy and, in the first
        # case, leave the job undone; taking over costs the second case one batch done twice
        # (the store calls are idempotent: nothing is removed twice), after which the first
        # run finds its lock lost at its next heartbeat and stops.
        held.filter(task_id=task_id).update(
            outcome=WorkerRun.Outcome.ERROR,
            finished_at=Now(),
            error="lock taken over: its message was delivered again (its worker died or "
            "lost the broker)",
        )


def _lost(running: Any, lock_timeout: float) -> None:
    """Mark the ``running`` rows (a queryset) that made no progress for ``lock_timeout``,
    by the database's clock."""
    running.filter(heartbeat_at__lt=Now() - timedelta(seconds=lock_timeout)).update(
        outcome=WorkerRun.Outcome.ERROR,
        finished_at=Now(),
        error=f"worker lost: no progress for over {lock_timeout:g} s",
    )


def _heartbeat(run: WorkerRun) -> None:
    updated = WorkerRun.objects.filter(pk=run.pk, outcome=_RUNNING).update(
        heartbeat_at=Now(), removed=run.removed, batches=run.batches
    )
    if not updated:
        raise LockLost(_LOCK_LOST.format(batches=run.batches))


def _finish(run: WorkerRun) -> None:
    finished = WorkerRun.objects.filter(pk=run.pk, outcome=_RUNNING).update(
        outcome=run.outcome,
        finished_at=Now(),
        heartbeat_at=Now(),
        removed=run.removed,
        batches=run.batches,
        more_left=run.more_left,
        max_versions=run.max_versions,
        error=run.error,
    )
    if not finished:  # taken over during the last batch: say so, as the row does
        lost = _LOCK_LOST.format(batches=run.batches)
        run.error = f"{run.error}; then {lost}" if run.error else lost
        run.outcome = WorkerRun.Outcome.ERROR
        _count_lost(run)


def _count_lost(run: WorkerRun) -> None:
    """A run whose lock was taken over keeps the row the taker marked lost, but with what it
    removed: the items are gone either way, and the record should count them."""
    WorkerRun.objects.filter(pk=run.pk).update(removed=run.removed, batches=run.batches)


# ---------------------------------------------------------------------- records


def prune_run_records() -> int:
    """Delete finished run records older than STATEHUB_RUN_RETENTION_DAYS; returns how many."""
    limits = conf.cleanup_settings()
    # Runs of any store and task whose worker is gone, also those nothing will run again (a
    # store taken out of STATEHUB_STORES): marked lost here, they are pruned like the rest.
    _lost(WorkerRun.objects.filter(outcome=_RUNNING), limits.lock_timeout)
    cutoff = Now() - timedelta(days=limits.run_retention_days)
    old = WorkerRun.objects.filter(started_at__lt=cutoff).exclude(outcome=_RUNNING)
    deleted = 0
    while ids := list(old.values_list("pk", flat=True)[:_RECORD_DELETE_CHUNK]):
        deleted += WorkerRun.objects.filter(pk__in=ids).delete()[0]
    return deleted


# ---------------------------------------------------------------------- run now


def request_run(user: Any, store: str, task: str) -> str:
    """Queue ``task`` for ``store`` on behalf of ``user`` ("Run now"); returns the task id.

    Needs the operator role (PermissionDenied otherwise) and writes one audit row. Raises
    KeyError / ValueError for an unknown store or task and BrokerUnavailable when the broker
    cannot take the message. This is the one place a manual run is started from.
    """
    from persistence.audit import Action, audited

    with audited(Action.RUN_WORKER, user, "operator", store=store) as details:
        details["task"] = task
        check_task(task)
        if store not in conf.store_configs():
            raise KeyError(f"no store named {store!r}")
        details["task_id"] = task_id = _send(user, store, task)
    return task_id


def _send(user: Any, store: str, task: str) -> str:
    from statehub.celery import app  # the project's app; the services stay importable without it

    username = user.get_username() if getattr(user, "is_authenticated", False) else ""
    try:
        with app.connection_for_write() as connection:
            # One attempt, no retries: the operator gets an answer now, not after backoffs.
            connection.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT)
            result = app.send_task(
                f"persistence.{task}",
                kwargs={"store": store, "trigger": "manual", "requested_by": username},
                connection=connection,
                retry=False,
            )
    except Exception as exc:  # kombu raises OperationalError, OSError and friends
        raise BrokerUnavailable(f"could not queue {task} for {store!r}: {exc}") from exc
    return str(result.id)
