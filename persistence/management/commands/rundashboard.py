"""Set up and run the dashboard with its workers: migrate, first admin, demo data, serve."""

from __future__ import annotations

import atexit
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from persistence import conf, demo


class Command(BaseCommand):
    help = "Migrate, create the first admin, seed demo data, start a worker with beat, serve."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "addrport", nargs="?", default=os.environ.get("STATEHUB_ADDR", "127.0.0.1:8000")
        )
        parser.add_argument("--no-worker", action="store_true", help="do not start Celery")
        parser.add_argument("--no-demo", action="store_true", help="do not seed demo data")

    def handle(self, *args: Any, **options: Any) -> None:
        # Before anything is set up or printed, so that a busy port does not start a worker
        # or print a URL leading to someone else's server (checked again before the worker
        # starts; a port taken after that makes runserver fail, and the worker stops with us).
        _check_free(options["addrport"])
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        login = self._ensure_admin()
        if not options["no_demo"]:
            store = conf.get_store()
            if next(iter(store.list_states(page_size=1)), None) is None:
                count = demo.seed(store)
                self.stdout.write(
                    f"Seeded {count} demo states into store '{conf.default_store_name()}'."
                )
        _check_free(options["addrport"])  # migrating and seeding take a while
        worker = None if options["no_worker"] else self._start_worker()
        self.stdout.write(
            self.style.SUCCESS(f"\nstatehub dashboard: http://{options['addrport']}/")
        )
        self.stdout.write(f"Log in as {login}\n")
        try:
            call_command("runserver", options["addrport"], use_reloader=False)
        finally:
            if worker is not None:
                _stop_worker(worker)

    def _ensure_admin(self) -> str:
        User = get_user_model()
        username = os.environ.get("STATEHUB_ADMIN_USERNAME", "admin")
        password = os.environ.get("STATEHUB_ADMIN_PASSWORD")
        admins = list(User.objects.filter(is_superuser=True).values_list("username", flat=True))
        if admins:
            names = ", ".join(map(repr, admins[:3]))
            if password or "STATEHUB_ADMIN_USERNAME" in os.environ:
                self.stdout.write(
                    f"An admin account exists ({names}): STATEHUB_ADMIN_USERNAME and "
                    "STATEHUB_ADMIN_PASSWORD only create the first one, so they were not used."
                )
            return (
                f"your existing admin account ({names}); a forgotten password is reset with "
                f"`uv run python manage.py changepassword {admins[0]}`"
            )
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        candidate = User(username=username)
        try:  # the rules every other password of the dashboard must meet
            password_validation.validate_password(password, candidate)
        except ValidationError as exc:
            raise CommandError(
                "STATEHUB_ADMIN_PASSWORD is refused: " + " ".join(exc.messages)
            ) from exc
        User.objects.create_superuser(username=username, email="", password=password)
        shown = f"password {password}" + (" (generated; shown only this once)" if generated else "")
        return f"{username!r}, {shown}"

    def _start_worker(self) -> subprocess.Popen[bytes]:
        """A Celery worker with embedded beat on CELERY_BROKER_URL (the filesystem default
        needs no server), its beat schedule file in the data folder.

        The worker never outlives this command: it is stopped at exit (SIGTERM becomes a
        normal exit so that happens on ``kill`` too) and, on Linux, the kernel sends it SIGTERM
        if this process dies without cleaning up.
        """
        from statehub.celery import app

        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "statehub",
            "worker",
            "--beat",
            f"--loglevel={settings.LOG_LEVEL}",
            "--concurrency=1",
            f"--schedule={settings.DATA_DIR / 'celerybeat-schedule'}",
        ]
        # Reading the config also creates the filesystem broker's folders (statehub.celery).
        broker = app.conf.broker_url.split("://", 1)[0]
        self.stdout.write(
            f"Starting a Celery worker with beat on the {broker} broker: " + " ".join(command[2:])
        )
        worker = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        atexit.register(_stop_worker, worker)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return worker


def _check_free(addrport: str) -> None:
    """CommandError unless ``addrport`` (``port``, ``host:port`` or ``[v6]:port``, as runserver
    takes it) can be listened on now."""
    host, _, port = addrport.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"{addrport!r} is not a port or host:port (e.g. 127.0.0.1:8001)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as runserver binds
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {host}:{port} ({exc.strerror}); another server may hold it. "
                f"Pick another address: STATEHUB_ADDR=127.0.0.1:8001 make run"
            ) from exc


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if threading.current_thread() is threading.main_thread():
        # The first Ctrl-C reaches us twice at once (`uv run` forwards its own copy): that
        # copy must not cut the wait short with a traceback. A Ctrl-C pressed later means
        # "now": the worker is killed instead of waited for.
        stopping = time.monotonic()

        def hurry(signum: int, frame: Any) -> None:
            if time.monotonic() - stopping > 2 and worker.poll() is None:
                print("Killing the worker now.")
                worker.kill()

        signal.signal(signal.SIGINT, hurry)
    if worker.poll() is None:
        # Warm shutdown: a run in progress stops itself once its time budget is spent, so
        # wait that long (and a batch more) before killing it mid-batch.
        grace = conf.cleanup_settings().time_limit + 15
        print(f"Stopping the worker (up to {grace:g} s while a cleanup run finishes)...")
        worker.terminate()
        try:
            worker.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(128 + signum)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)
