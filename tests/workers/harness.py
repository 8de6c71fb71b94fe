"""Real Celery workers in subprocesses for the integration tests.

Each ``Cluster`` has its own Django database (a SQLite file the test reads with sqlite3), its
own queue and Redis key prefix on the broker database, so parallel test runs never take each
other's tasks, and it deletes only its own keys afterwards.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from celery import Celery

ROOT = Path(__file__).resolve().parents[2]
BROKER_URL = os.environ.get("STATEHUB_TEST_BROKER_URL", "redis://127.0.0.1:6379/11")


class Cluster:
    def __init__(
        self,
        workdir: Path,
        stores: dict[str, Any],
        *,
        visibility_timeout: int = 120,
        **settings: Any,
    ) -> None:
        """``visibility_timeout``: seconds after which Redis hands an unacknowledged task to
        another worker; the crash test makes it short, the others keep it above any run."""
        tag = uuid.uuid4().hex[:10]
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.db_path = workdir / "django.sqlite3"
        self.queue = f"statehub-test-{tag}"
        self.prefix = f"statehub-test-{tag}:"
        transport = {
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
            "global_keyprefix": self.prefix,
        }
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "statehub.settings",
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "STATEHUB_DATA_DIR": str(workdir / "data"),
            "STATEHUB_STORES": json.dumps(stores),
            "CELERY_BROKER_URL": BROKER_URL,
            "CELERY_BROKER_TRANSPORT_OPTIONS": json.dumps(transport),
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "STATEHUB_CLEANUP_LOCK_TIMEOUT": "2",
            **{k: str(v) for k, v in settings.items()},
        }
        self.producer = Celery("statehub-test-producer", set_as_current=False)
        self.producer.conf.update(
            broker_url=BROKER_URL,
            broker_transport_options=transport,
            task_default_queue=self.queue,
            broker_connection_retry_on_startup=True,
        )
        self.workers: list[subprocess.Popen[bytes]] = []
        shutil.copyfile(_migrated_database(), self.db_path)

    # -------------------------------------------------------------- workers

    def start_workers(self, count: int = 1) -> list[subprocess.Popen[bytes]]:
        """Start ``count`` workers (solo pool: a SIGKILL kills the task too) and wait until
        all of them consume the queue."""
        started = []
        for _ in range(count):
            log = self.workdir / f"worker-{len(self.workers)}.log"
            command = [
                *("-m", "celery", "-A", "statehub", "worker", "--pool=solo", "--loglevel=INFO"),
                *("-Q", self.queue, "-n", f"{self.queue}-{len(self.workers)}@%h"),
                *("--without-mingle", "--without-gossip", "--without-heartbeat"),
            ]
            with log.open("wb") as out:
                worker = subprocess.Popen(
                    [sys.executable, *command],
                    cwd=ROOT,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            self.workers.append(worker)
            started.append((worker, log))
        deadline = time.monotonic() + 60
        for worker, log in started:
            while b" ready." not in log.read_bytes():
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start:\n{log.read_text()}")
                time.sleep(0.1)
        return [worker for worker, _ in started]

    def kill(self, worker: subprocess.Popen[bytes]) -> None:
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    def close(self) -> None:
        alive = [worker for worker in self.workers if worker.poll() is None]
        for worker in alive:
            worker.send_signal(signal.SIGQUIT)  # cold shutdown: the tests' runs are over
        for worker in alive:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        client = redis.Redis.from_url(BROKER_URL)
        for key in client.scan_iter(match=f"{self.prefix}*", count=1000):
            client.delete(key)
        client.close()
        self.producer.close()

    # -------------------------------------------------------------- tasks and records

    def send(self, name: str, /, **kwargs: Any) -> str:
        result = self.producer.send_task(f"persistence.{name}", kwargs=kwargs, queue=self.queue)
        return str(result.id)

    def runs(self, **where: Any) -> list[dict[str, Any]]:
        clause = " AND ".join(f"{k} = ?" for k in where) or "1"
        with sqlite3.connect(self.db_path, timeout=10) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                f"SELECT * FROM persistence_workerrun WHERE {clause} ORDER BY id",
                tuple(where.values()),
            ).fetchall()
        return [dict(row) for row in rows]

    def wait_for(self, timeout: float = 60, **where: Any) -> list[dict[str, Any]]:
        """The finished runs matching ``where``, once there is one and none is running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.runs(**where)
            if rows and all(row["outcome"] != "running" for row in rows):
                return rows
            time.sleep(0.1)
        raise TimeoutError(f"no finished run for {where}: {self.runs(**where)}")


@functools.cache
def _migrated_database() -> Path:
    """A migrated Django database, made once per test process and copied for each cluster."""
    path = Path(tempfile.mkdtemp(prefix="statehub-workers-")) / "django.sqlite3"
    atexit.register(shutil.rmtree, path.parent, ignore_errors=True)  # /tmp stays as it was
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "statehub.settings",
        "DATABASE_URL": f"sqlite:///{path}",
        "STATEHUB_DATA_DIR": str(path.parent / "data"),
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    return path
