"""Two admins removing each other at the same moment, on a PostgreSQL Django database.

The last-admin rule reads the other admins and then writes; under PostgreSQL's READ COMMITTED
two such transactions each saw the other admin still there, and both went through, leaving no
admin. The race needs a real server and real threads: a child process migrates a Django
database into a schema of its own and runs the two calls behind a barrier, round after round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import POSTGRES_DSN, server_missing

RACE = """
import json, threading
import django
django.setup()
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connections
from persistence import services

call_command("migrate", verbosity=0)
User = get_user_model()
admin = Group.objects.get(name="admin")
unexpected = []


def demote(user, target, reason):
    services.set_role(user, target, "viewer", reason)


def promote(user, target, reason):
    services.set_role(user, target, "admin", reason)


def race(*calls):
    # Each (actor, target, change) in a thread of its own, released together.
    barrier = threading.Barrier(len(calls))

    def act(actor_pk, target_pk, change):
        actor, target = User.objects.get(pk=actor_pk), User.objects.get(pk=target_pk)
        barrier.wait()
        try:
            change(actor, target, "race")
        except services.LastAdminError:
            pass
        except Exception as exc:
            unexpected.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=act, args=call) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


left = []
for n in range(ROUNDS):
    User.objects.all().delete()
    a, b = (User.objects.create_user(f"{who}{n}") for who in "ab")
    a.groups.add(admin)
    b.groups.add(admin)
    race((a.pk, b.pk, demote), (b.pk, a.pk, services.deactivate_user))
    left.append(services.active_admins().count())
    # Both admins again; one promotes a viewer while the other deactivates it: no deadlock.
    User.objects.filter(pk__in=[a.pk, b.pk]).update(is_active=True)
    a.groups.add(admin)
    b.groups.add(admin)
    viewer = User.objects.create_user(f"v{n}")
    race((a.pk, viewer.pk, promote), (b.pk, viewer.pk, services.deactivate_user))
print(json.dumps({"left": left, "unexpected": unexpected}))
"""


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"tadm{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
    except psycopg.OperationalError as exc:
        server_missing("postgres", exc)
    yield name
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_two_admins_removing_each_other_at_once_leave_one(schema: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "statehub.settings",
        "DATABASE_URL": f"{POSTGRES_DSN}?options=-c%20search_path%3D{schema}",
        "STATEHUB_DATA_DIR": str(tmp_path),
    }
    script = RACE.replace("ROUNDS", "12")
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    # Each round one of the two calls goes through and the other is refused as the last admin.
    assert result == {"left": [1] * 12, "unexpected": []}
