"""Selectors for the Workers page: runs, schedule and the workers online (reads only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, Max, Q, Value, When
from django.db.models.functions import Now

from persistence import cleanup, conf
from persistence.models import WorkerRun


@dataclass(frozen=True)
class ScheduleEntry:
    task: str
    every_seconds: float
    stores: tuple[str, ...]


@dataclass(frozen=True)
class StoreTask:
    """One row of the Run now table: a store, a task and its latest run (if any)."""

    store: str
    task: str
    last: WorkerRun | None


@dataclass(frozen=True)
class OnlineWorker:
    name: str
    active: tuple[str, ...]  # names of the tasks it is running now


@dataclass(frozen=True)
class WorkersOnline:
    available: bool
    note: str
    workers: tuple[OnlineWorker, ...] = ()


def _with_stalled() -> Any:
    """Runs, each with ``stalled``: running, but with no progress for the lock timeout by the
    database's clock (its worker is likely gone; the next run of its store and task marks it
    lost), so that the page does not go on calling it running."""
    cutoff = Now() - timedelta(seconds=conf.cleanup_settings().lock_timeout)
    stalled = Q(outcome=WorkerRun.Outcome.RUNNING, heartbeat_at__lt=cutoff)
    return WorkerRun.objects.annotate(
        stalled=Case(When(stalled, then=Value(True)), default=Value(False))
    )


def recent_runs(limit: int = 30) -> list[WorkerRun]:
    return list(_with_stalled().order_by("-started_at", "-id")[:limit])


def any_running() -> bool:
    """Whether a run is making progress (a running row whose worker died is not: the page
    would poll for it until another run of its store and task marks it lost)."""
    fresh = Now() - timedelta(seconds=conf.cleanup_settings().lock_timeout)  # as the lock
    running = WorkerRun.objects.filter(outcome=WorkerRun.Outcome.RUNNING)
    return running.filter(heartbeat_at__gte=fresh).exists()


def waiting_for(task_id: str) -> bool:
    """True while the queued task ``task_id`` has not finished a run yet."""
    done = WorkerRun.objects.filter(task_id=task_id).exclude(outcome=WorkerRun.Outcome.RUNNING)
    return not done.exists()


def store_tasks() -> list[StoreTask]:
    latest = {
        (row["store"], row["task"]): row["last"]
        # A busy row is a run that did not happen: it must not hide the one that did.
        for row in WorkerRun.objects.exclude(outcome=WorkerRun.Outcome.BUSY)
        .values("store", "task")
        .annotate(last=Max("id"))
    }
    runs = _with_stalled().in_bulk(list(latest.values()))
    return [
        StoreTask(name, task, runs.get(latest.get((name, task), 0)))
        for name in conf.store_names()
        for task in cleanup.TASKS
    ]


def schedule(beat_schedule: dict[str, Any]) -> list[ScheduleEntry]:
    """The cleanup entries of Celery's beat schedule (``app.conf.beat_schedule``)."""
    entries = []
    for entry in beat_schedule.values():
        if entry.get("task") != "persistence.cleanup_all_stores":
            continue
        every = entry["schedule"]
        seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
        task = entry.get("kwargs", {}).get("task", "?")
        entries.append(ScheduleEntry(task, seconds, tuple(conf.store_names())))
    return entries


def workers_online(app: Any, timeout: float) -> WorkersOnline:
    """Ask the workers over the broker who is there; never waits much more than ``timeout``."""
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)
            if "fanout" not in conn.transport.implements.exchange_type:
                return WorkersOnline(False, "not available with this broker")
            replies = app.control.inspect(timeout=timeout, connection=conn).active() or {}
    except Exception as exc:  # kombu's errors vary by transport; the page only reports them
        return WorkersOnline(False, f"broker unreachable: {exc}")
    workers = tuple(
        OnlineWorker(name, tuple(task.get("name", "?") for task in tasks or ()))
        for name, tasks in sorted(replies.items())
    )
    note = "" if workers else f"no worker answered within {timeout:g} s"
    return WorkersOnline(True, note, workers)


def poll_deadline(now: datetime, seconds: float = 120) -> int:
    """How long the page keeps polling for a queued run that has not started (epoch seconds)."""
    return int(now.timestamp() + seconds)
