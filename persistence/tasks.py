"""Celery tasks: thin callers of persistence.cleanup, one run per configured store.

Beat schedules :func:`cleanup_all_stores`, which queues one ``purge_expired`` or
``prune_versions`` task per store named in STATEHUB_STORES, so stores are cleaned in parallel
when there are workers for it and a slow store never delays the others.

The per-store tasks are ``acks_late`` with ``reject_on_worker_lost``: a worker that dies
mid-run leaves its message to be delivered again, and the store operations are idempotent, so
the second delivery finishes the job (it takes over the lock its own message's first run
held). The lock in cleanup keeps different runs of the same (store, task) from overlapping.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from persistence import cleanup, conf

_LIMITS = conf.cleanup_settings()
# Runs stop themselves between batches when the budget is spent; the Celery limits only catch
# a single batch that hangs (prefork pool only: solo and threads pools cannot enforce them).
_RUN_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "soft_time_limit": _LIMITS.time_limit + _LIMITS.lock_timeout if _LIMITS.time_limit else None,
    "time_limit": _LIMITS.time_limit + 2 * _LIMITS.lock_timeout if _LIMITS.time_limit else None,
}


@shared_task(name="persistence.purge_expired", **_RUN_OPTIONS)  # type: ignore[untyped-decorator]
def purge_expired(
    self: Task, store: str, trigger: cleanup.Trigger = "schedule", requested_by: str = ""
) -> dict[str, Any]:
    return _run(self, store, "purge_expired", trigger, requested_by)


@shared_task(name="persistence.prune_versions", **_RUN_OPTIONS)  # type: ignore[untyped-decorator]
def prune_versions(
    self: Task, store: str, trigger: cleanup.Trigger = "schedule", requested_by: str = ""
) -> dict[str, Any]:
    return _run(self, store, "prune_versions", trigger, requested_by)


def _run(
    task: Task, store: str, name: cleanup.TaskName, trigger: cleanup.Trigger, requested_by: str
) -> dict[str, Any]:
    return cleanup.run_cleanup(
        store, name, trigger=trigger, task_id=task.request.id or "", requested_by=requested_by
    ).as_dict()


_PER_STORE = {"purge_expired": purge_expired, "prune_versions": prune_versions}


@shared_task(name="persistence.cleanup_all_stores", acks_late=True)  # type: ignore[untyped-decorator]
def cleanup_all_stores(task: cleanup.TaskName, trigger: cleanup.Trigger = "schedule") -> list[str]:
    """Queue ``task`` once for every configured store; returns the queued task ids."""
    cleanup.check_task(task)
    limits = conf.cleanup_settings()
    interval = limits.purge_interval if task == "purge_expired" else limits.prune_interval
    return [
        _PER_STORE[task]
        .apply_async(kwargs={"store": name, "trigger": trigger}, expires=interval)
        .id
        for name in conf.store_names()
    ]
