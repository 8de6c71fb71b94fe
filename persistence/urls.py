"""Dashboard URLs: every store page lives under /s/<store>/; a state id is the path's tail."""

import re

from django.urls import path, register_converter

from persistence import views, views_audit, views_users, worker_views

_DOTS = re.compile(r"~*\.{1,2}")  # a dot segment, escaped any number of times
_ESCAPED_DOTS = re.compile(r"~+\.{1,2}")


class StateIdConverter:
    """A state id as the path's tail, slashes and all, with its dot segments escaped.

    Browsers (and htmx, and a redirect's Location) resolve `.` and `..` segments before a
    request is sent, so the link of a state named `junk/../victim` would open, roll back or
    delete `victim`. Such a segment is written with a `~` in front, as is one that already
    looks escaped (`~..`), so that every id has one URL and back; the view's argument drops
    the `~` again. Other segments, `~name` included, are written as they are. (`%2F` cannot
    keep a slash out of the path instead: `reverse()` would quote the `%`.)
    """

    regex = ".+"

    def to_python(self, value: str) -> str:
        return "/".join(s[1:] if _ESCAPED_DOTS.fullmatch(s) else s for s in value.split("/"))

    def to_url(self, value: str) -> str:
        return "/".join(f"~{s}" if _DOTS.fullmatch(s) else s for s in value.split("/"))


register_converter(StateIdConverter, "state_id")

app_name = "persistence"

urlpatterns = [
    path("", views.home, name="states"),
    path("s/<str:store>/", views.states, name="states"),
    path("s/<str:store>/tags/", views.tags, name="tags"),
    path("s/<str:store>/stats/", views.stats, name="stats"),
    path("s/<str:store>/state/<state_id:state_id>", views.state, name="state"),
    path("s/<str:store>/json/<state_id:state_id>", views.state_download, name="download"),
    path("s/<str:store>/diff/<state_id:state_id>", views.diff, name="diff"),
    path("s/<str:store>/rollback/<state_id:state_id>", views.rollback, name="rollback"),
    path(
        "s/<str:store>/delete-version/<state_id:state_id>",
        views.delete_version,
        name="delete_version",
    ),
    path("s/<str:store>/delete/<state_id:state_id>", views.delete_state, name="delete_state"),
    path("s/<str:store>/checkpoints/<state_id:state_id>", views.checkpoints, name="checkpoints"),
    path("s/<str:store>/checkpoint/<str:checkpoint_id>/", views.checkpoint, name="checkpoint"),
    path("workers/", worker_views.workers, name="workers"),
    path("workers/runs/", worker_views.worker_runs, name="worker_runs"),
    path("workers/online/", worker_views.workers_online, name="workers_online"),
    path("workers/run/", worker_views.run_now, name="worker_run_now"),
    path("audit/", views_audit.audit_log, name="audit"),
    path("audit/export.csv", views_audit.audit_export, name="audit_export"),
    path("users/", views_users.users, name="users"),
    path("users/new/", views_users.user_create, name="user_create"),
    path("users/<int:pk>/role/", views_users.user_role, name="user_role"),
    path("users/<int:pk>/deactivate/", views_users.user_deactivate, name="user_deactivate"),
    path("users/<int:pk>/reactivate/", views_users.user_reactivate, name="user_reactivate"),
    path("users/<int:pk>/password/", views_users.user_password, name="user_password"),
]
