"""Django-side records of the app: one row per cleanup worker run.

A ``running`` row is also the lock of its (store, task): a partial unique constraint lets only
one such row exist, in any process, on SQLite and PostgreSQL alike (see persistence.cleanup).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class WorkerRun(models.Model):
    class Task(models.TextChoices):
        PURGE_EXPIRED = "purge_expired", "purge expired states"
        PRUNE_VERSIONS = "prune_versions", "prune old versions"

    class Outcome(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        BUSY = "busy"  # another run of the same task held the store; this one did nothing
        ERROR = "error"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual"  # "Run now" on the dashboard
        COMMAND = "command"  # a management command (cron)

    store = models.CharField(max_length=200)
    task = models.CharField(max_length=32, choices=Task.choices)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Moved forward after every batch: a running row whose heartbeat is older than
    # STATEHUB_CLEANUP_LOCK_TIMEOUT belongs to a dead worker and may be taken over.
    heartbeat_at = models.DateTimeField(default=timezone.now)
    removed = models.BigIntegerField(default=0)  # expired states, or pruned versions
    batches = models.PositiveIntegerField(default=0)
    more_left = models.BooleanField(default=False)  # stopped by the time budget, not by 0
    max_versions = models.PositiveIntegerField(null=True, blank=True)  # what a prune kept
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)  # Celery's id; empty for commands
    requested_by = models.CharField(max_length=150, blank=True)
    host = models.CharField(max_length=255, blank=True)  # hostname:pid of the process

    class Meta:
        ordering = ("-started_at", "-id")
        indexes = (
            models.Index(fields=("-started_at",), name="workerrun_started"),
            models.Index(fields=("store", "task", "-started_at"), name="workerrun_store_task"),
            models.Index(fields=("task_id",), name="workerrun_task_id"),
        )
        constraints = (
            models.UniqueConstraint(
                fields=("store", "task"),
                condition=Q(outcome="running"),
                name="workerrun_one_running_per_store_task",
            ),
        )

    def __str__(self) -> str:
        return f"{self.task} on {self.store} at {self.started_at:%Y-%m-%d %H:%M:%S}: {self.outcome}"

    @property
    def duration_seconds(self) -> float | None:
        end = self.finished_at or (self.heartbeat_at if self.outcome == "running" else None)
        return None if end is None else (end - self.started_at).total_seconds()
