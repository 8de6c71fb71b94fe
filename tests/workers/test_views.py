"""The Workers page: runs, live polling only while something runs, Run now as a CSRF POST."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from persistence import cleanup
from persistence.models import WorkerRun

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def client(mem: Any) -> Client:
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user("operator")
    user.groups.add(Group.objects.get(name="operator"))
    c = Client(enforce_csrf_checks=True, HTTP_HOST="localhost")
    c.force_login(user)
    return c


def test_page_lists_stores_schedule_and_runs(client: Client) -> None:
    cleanup.run_cleanup("mem", "purge_expired", trigger="schedule")
    html = client.get("/workers/").content.decode()
    assert "<h1>Workers</h1>" in html
    assert html.count('name="store" value="mem"') == 2  # Run now for each task
    assert "60 s" in html and "3600 s" in html
    assert 'hx-trigger="every 2s"' not in html  # nothing running: no polling


def test_runs_partial_polls_while_a_run_is_going_and_stops_after(client: Client) -> None:
    running = WorkerRun.objects.create(store="mem", task="purge_expired", trigger="schedule")
    polled = client.get("/workers/runs/", **HX).content.decode()
    assert polled.lstrip().startswith('<section id="runs"')
    assert 'hx-trigger="every 2s"' in polled and 'hx-push-url="false"' in polled

    WorkerRun.objects.filter(pk=running.pk).update(outcome="ok", removed=12)
    done = client.get("/workers/runs/", **HX).content.decode()
    assert 'hx-trigger="every 2s"' not in done and ">12<" in done


def test_a_dead_workers_running_row_stops_the_polling_and_is_pruned(client: Client) -> None:
    """A row left `running` by a worker that died polls nobody: not even when no run of its
    store and task comes to mark it lost (a store taken out of STATEHUB_STORES)."""
    long_ago = timezone.now() - timedelta(days=40)
    WorkerRun.objects.create(
        store="gone",
        task="prune_versions",
        trigger="schedule",
        started_at=long_ago,
        heartbeat_at=long_ago,
    )
    assert 'hx-trigger="every 2s"' not in client.get("/workers/runs/", **HX).content.decode()
    assert cleanup.prune_run_records() == 1
    assert not WorkerRun.objects.exists()


def test_a_run_without_progress_past_the_lock_timeout_is_shown_stalled_not_running(
    client: Client,
) -> None:
    stale = timezone.now() - timedelta(seconds=61)
    WorkerRun.objects.create(
        store="mem", task="purge_expired", trigger="schedule", started_at=stale, heartbeat_at=stale
    )
    WorkerRun.objects.create(store="mem", task="prune_versions", trigger="schedule")  # alive
    html = client.get("/workers/").content.decode()
    schedule = html[html.index('<section id="schedule"') : html.index('<section id="runs"')]
    purge_row = schedule[schedule.index("purge_expired") :].split("</tr>", 1)[0]
    prune_row = schedule[schedule.index("prune_versions") :].split("</tr>", 1)[0]
    assert ">stalled<" in purge_row and ">running<" not in purge_row
    assert ">running<" in prune_row
    runs = html[html.index('<section id="runs"') :]
    assert runs.count(">stalled<") == 1 and runs.count(">running<") == 1


def test_a_busy_run_does_not_hide_the_last_run_that_worked(client: Client) -> None:
    cleanup.run_cleanup("mem", "purge_expired", trigger="schedule")
    WorkerRun.objects.create(store="mem", task="purge_expired", trigger="manual", outcome="busy")
    html = client.get("/workers/").content.decode()
    schedule = html[html.index('<section id="schedule"') :]
    purge_row = schedule[schedule.index("purge_expired") :].split("</tr>", 1)[0]
    assert "badge-ok" in purge_row and "busy" not in purge_row


def test_the_schedule_follows_the_runs_without_a_reload(client: Client) -> None:
    """Each runs fragment carries the schedule table out of band, so its "Last run" column
    changes with the runs table instead of saying "never" until the page is reloaded."""
    assert "never" in client.get("/workers/").content.decode()
    WorkerRun.objects.create(store="mem", task="prune_versions", trigger="manual", outcome="ok")
    fragment = client.get("/workers/runs/", **HX).content.decode()
    schedule = fragment[fragment.index('<section id="schedule"') :]
    assert schedule.startswith('<section id="schedule" class="card table-card"')
    assert 'hx-swap-oob="true"' in schedule.split(">", 1)[0]
    prune_row = schedule[schedule.index("prune_versions") :].split("</tr>", 1)[0]
    assert "badge-ok" in prune_row and "never" not in prune_row
    assert "hx-swap-oob" not in client.get("/workers/").content.decode()  # not on the page


def test_get_never_runs_anything(client: Client) -> None:
    assert client.get("/workers/run/").status_code == 405


def test_run_now_needs_csrf(client: Client) -> None:
    response = client.post("/workers/run/", {"store": "mem", "task": "purge_expired"})
    assert response.status_code == 403


def test_run_now_with_broker_down_shows_an_error(client: Client, dead_broker: Any) -> None:
    client.get("/workers/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/workers/run/",
        {"store": "mem", "task": "purge_expired"},
        HTTP_X_CSRFTOKEN=token,
        **HX,
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Could not queue the run, the broker is unreachable" in html
    assert not WorkerRun.objects.exists()


def test_run_now_refuses_an_unknown_store(client: Client) -> None:
    client.get("/workers/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/workers/run/", {"store": "nope", "task": "purge_expired"}, HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 302
    assert "no store named" in client.get("/workers/").content.decode()


def test_workers_online_says_when_the_broker_is_unreachable(client: Client, dead_broker) -> None:
    html = client.get("/workers/online/", **HX).content.decode()
    assert "broker unreachable" in html
