"""Django-side records of the app: one row per cleanup worker run, one per audited action.

A ``running`` WorkerRun row is also the lock of its (store, task): a partial unique constraint
lets only one such row exist, in any process, on SQLite and PostgreSQL alike (see
persistence.cleanup). AuditEntry rows are written by persistence.audit only, never changed.
"""

from __future__ import annotations

from django.conf import settings
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


class AuditEntry(models.Model):
    """One action on the dashboard (or a login): who, when, from where, what, and how it ended.

    ``username`` keeps the name as it was (and the name tried by a failed login), so a row
    outlives its user; ``user`` is set when the actor is a known account.
    """

    class Action(models.TextChoices):
        ROLLBACK = "rollback"
        DELETE_VERSION = "delete_version"
        DELETE_STATE = "delete_state"
        RUN_WORKER = "run_worker"
        USER_CREATE = "user_create"
        USER_ROLE = "user_role"
        USER_DEACTIVATE = "user_deactivate"
        USER_REACTIVATE = "user_reactivate"
        PASSWORD_RESET = "password_reset"
        LOGIN_SUCCESS = "login_success"
        LOGIN_FAILURE = "login_failure"
        LOGIN_LOCKED = "login_locked"

    class Outcome(models.TextChoices):
        OK = "ok"
        DENIED = "denied"  # the actor's role does not allow it; nothing was changed
        ERROR = "error"  # allowed, but it failed (state gone, broker down, last admin, ...)

    at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True)
    address = models.CharField(max_length=64, blank=True)  # client IP (see audit.client_address)
    action = models.CharField(max_length=32, choices=Action.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.OK)
    store = models.CharField(max_length=200, blank=True)
    state_id = models.CharField(max_length=512, blank=True)
    version = models.PositiveBigIntegerField(null=True, blank=True)  # any a store can hold
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("-id",)
        verbose_name_plural = "audit entries"
        indexes = (
            models.Index(fields=("-at",), name="audit_at"),
            models.Index(fields=("action", "-id"), name="audit_action"),
            models.Index(fields=("username", "-id"), name="audit_username"),
            models.Index(fields=("store", "state_id", "-id"), name="audit_state"),
        )

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.action}: {self.outcome}"
