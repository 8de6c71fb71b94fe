"""Django admin: worker runs and the audit log, read-only (written by the app alone)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from persistence.models import AuditEntry, WorkerRun


@admin.register(WorkerRun)
class WorkerRunAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "started_at",
        "store",
        "task",
        "trigger",
        "outcome",
        "removed",
        "batches",
        "finished_at",
    )
    list_filter = ("outcome", "task", "trigger", "store")
    search_fields = ("store", "task_id", "error", "requested_by")
    date_hierarchy = "started_at"
    ordering = ("-started_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("at", "username", "address", "action", "outcome", "store", "state_id")
    list_filter = ("action", "outcome", "store")
    search_fields = ("username", "state_id", "reason", "address")
    date_hierarchy = "at"
    ordering = ("-id",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
