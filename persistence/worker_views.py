"""The Workers page: workers online, the schedule, the last runs (live while one runs), Run now.

One template, ``persistence/workers.html``, with partials: ``content`` (HTMX navigation into
``#main``), ``runs`` (polled every 2 s while a run is going, and the answer to Run now) and
``online`` (loaded after the page, since asking the workers takes up to a second).
"""

from __future__ import annotations

import time
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from persistence import cleanup, conf, worker_status
from persistence.roles import require_role

INSPECT_TIMEOUT = 1.0  # seconds the page waits for workers to answer


class RunNowForm(forms.Form):
    store = forms.CharField(max_length=200)
    task = forms.ChoiceField(choices=[(task, task) for task in cleanup.TASKS])

    def clean_store(self) -> str:
        store: str = self.cleaned_data["store"]
        if store not in conf.store_names():
            raise forms.ValidationError(f"no store named {store!r}")
        return store


@require_GET
@require_role("viewer")
def workers(request: HttpRequest) -> HttpResponse:
    from statehub.celery import app

    context = {
        **_runs_context(request.GET),
        **_schedule_context(),
        "broker": str(app.conf.broker_url).split("://", 1)[0],
    }
    if request.GET.get("online"):  # without JavaScript: ask the workers while rendering
        context["online"] = worker_status.workers_online(app, INSPECT_TIMEOUT)
    return _render(request, "content", context)


@require_GET
@require_role("viewer")
def worker_runs(request: HttpRequest) -> HttpResponse:
    """The runs table; it carries the polling trigger only while there is something to wait for.
    The schedule's "Last run" column comes along (swapped out of band) to stay in step."""
    return _render(request, "runs", {**_runs_context(request.GET), **_schedule_context(oob=True)})


@require_GET
@require_role("viewer")
def workers_online(request: HttpRequest) -> HttpResponse:
    from statehub.celery import app

    online = worker_status.workers_online(app, INSPECT_TIMEOUT)
    return _render(request, "online", {"online": online})


@require_POST
@require_role("operator", action="run_worker")
def run_now(request: HttpRequest) -> HttpResponse:
    form = RunNowForm(request.POST)
    wait = ""
    if not form.is_valid():
        problems = (
            f"{field}: {' '.join(map(str, errors))}" for field, errors in form.errors.items()
        )
        messages.error(request, "Run now: " + "; ".join(problems))
    else:
        store, task = form.cleaned_data["store"], form.cleaned_data["task"]
        try:
            wait = cleanup.request_run(request.user, store, task)
        except cleanup.BrokerUnavailable as exc:
            messages.error(request, f"Could not queue the run, the broker is unreachable: {exc}")
        else:
            messages.success(request, f"Queued {task} for store “{store}”.")
    if not getattr(request, "htmx", False):
        return redirect("persistence:workers")
    until = worker_status.poll_deadline(timezone.now())
    context = _runs_context({"wait": wait, "until": str(until)})
    return _render(request, "runs", {**context, **_schedule_context(oob=True)})


def _schedule_context(*, oob: bool = False) -> dict[str, Any]:
    from statehub.celery import app

    return {
        "schedule": worker_status.schedule(app.conf.beat_schedule or {}),
        "store_tasks": worker_status.store_tasks(),
        "oob_schedule": oob,
    }


def _runs_context(params: Any) -> dict[str, Any]:
    wait = str(params.get("wait", ""))[:64]
    try:
        until = int(params.get("until", 0))
    except ValueError:
        until = 0
    waiting = bool(wait) and time.time() < until and worker_status.waiting_for(wait)
    return {
        "runs": worker_status.recent_runs(),
        "polling": waiting or worker_status.any_running(),
        "wait": wait if waiting else "",
        "until": until,
    }


def _render(request: HttpRequest, partial: str, context: dict[str, Any]) -> HttpResponse:
    """The whole page, or for an HTMX request the named partial of it."""
    htmx = getattr(request, "htmx", None)
    full = partial == "content" and not (htmx and not htmx.history_restore_request)
    name = "persistence/workers.html" + ("" if full else f"#{partial}")
    response = render(request, name, context)
    patch_vary_headers(response, ["HX-Request"])
    return response
