"""manage.py purge_expired / prune_versions: the same service, no broker, output for cron."""

from __future__ import annotations

import io
import re
import socket
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from persistence import StatePersistence
from persistence.models import WorkerRun
from tests.conftest import manage
from tests.workers.test_cleanup import seed

pytestmark = pytest.mark.django_db


def run(*args: str, verbosity: int = 1) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=out, verbosity=verbosity)
    return out.getvalue()


def test_purge_command_prints_progress_and_summary(mem: StatePersistence, clock) -> None:
    seed(mem, clock, expired=10, live=2)
    output = run("purge_expired", "--store", "mem", "--limit", "4", verbosity=2)
    assert output.splitlines() == [
        "  mem: batch 1, 4 removed (4 so far)",
        "  mem: batch 2, 4 removed (8 so far)",
        "  mem: batch 3, 2 removed (10 so far)",
        "mem: removed 10 expired states in 4 batches",
    ]
    assert run("purge_expired") == "mem: removed 0 expired states in 1 batch\n"
    assert list(WorkerRun.objects.values_list("trigger", flat=True)) == ["command", "command"]


def test_prune_command_takes_max_versions(mem: StatePersistence) -> None:
    for n in range(6):
        mem.save_with_metadata({"n": n}, "s")
    output = run("prune_versions", "--max-versions", "2")
    assert output == "mem: removed 4 old versions in 2 batches\n"
    assert [m.version for m in mem.list_versions("s")] == [5, 6]


def test_command_reports_busy_without_failing(mem: StatePersistence) -> None:
    WorkerRun.objects.create(store="mem", task="purge_expired", trigger="schedule")
    assert "mem: skipped, busy: run #" in run("purge_expired")


def test_command_refuses_unknown_store_and_bad_limits(mem: StatePersistence) -> None:
    with pytest.raises(CommandError, match="no store named nope"):
        run("purge_expired", "--store", "nope")
    with pytest.raises(CommandError, match="--limit"):
        run("purge_expired", "--limit", "0")
    with pytest.raises(CommandError, match="--max-versions must be at least 1"):
        run("prune_versions", "--max-versions", "0")
    assert not WorkerRun.objects.exists()  # refused before any run was started


def test_rundashboard_refuses_a_busy_port_before_setting_anything_up(
    django_user_model: Any,
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(CommandError, match=re.escape("STATEHUB_ADDR=127.0.0.1:8001 make run")):
            run("rundashboard", f"127.0.0.1:{port}", "--no-demo")
    assert not django_user_model.objects.exists()  # no admin created, no worker started
    with pytest.raises(CommandError, match="not a port"):
        run("rundashboard", "127.0.0.1:http")


def test_rundashboard_refuses_a_weak_admin_password(
    monkeypatch: pytest.MonkeyPatch, django_user_model: Any
) -> None:
    monkeypatch.setenv("STATEHUB_ADMIN_PASSWORD", "x")
    with socket.socket() as probe:  # a port free now (the command stops before serving)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CommandError, match=r"STATEHUB_ADMIN_PASSWORD is refused: .*too short"):
        run("rundashboard", f"127.0.0.1:{port}", "--no-demo", "--no-worker")
    assert not django_user_model.objects.exists()


def test_rundashboard_with_an_admin_already_says_the_admin_variables_went_unused(
    monkeypatch: pytest.MonkeyPatch, django_user_model: Any
) -> None:
    """It printed "Log in as 'nightops' with STATEHUB_ADMIN_PASSWORD" for an account that
    did not exist; an operator who lost the generated password needs the way to reset it."""
    from persistence.management.commands.rundashboard import Command

    django_user_model.objects.create_superuser("ada", password="a-long-pass-931")
    monkeypatch.setenv("STATEHUB_ADMIN_USERNAME", "nightops")
    monkeypatch.setenv("STATEHUB_ADMIN_PASSWORD", "Another-Pass-77")
    command = Command(stdout=io.StringIO())
    login = command._ensure_admin()
    assert "'ada'" in login and "manage.py changepassword ada" in login
    assert "so they were not used" in command.stdout.getvalue()  # type: ignore[attr-defined]
    assert not django_user_model.objects.filter(username="nightops").exists()


def test_command_fails_when_a_run_fails(settings: Any, tmp_path) -> None:
    (tmp_path / "a-file").write_text("")
    settings.STATEHUB_STORES = {"broken": f"sqlite:///{tmp_path}/a-file/x.db"}
    with pytest.raises(CommandError, match="purge_expired failed on broken"):
        run("purge_expired")


@pytest.mark.slow
def test_the_cron_route_works_on_a_data_folder_that_does_not_exist_yet(tmp_path) -> None:
    data = tmp_path / "new" / "data"
    for command in ("migrate", "purge_expired"):
        result = manage(command, STATEHUB_DATA_DIR=str(data))
        assert result.returncode == 0, result.stdout + result.stderr
    assert (data / "dashboard.sqlite3").exists()
