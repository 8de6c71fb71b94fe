"""Set up and run the dashboard with its workers: migrate, first admin, demo data, serve."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from persistence import conf, demo


class Command(BaseCommand):
    help = "Migrate, create the first admin, seed demo data, start a worker with beat, serve."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default=os.environ.get(
            "STATEHUB_ADDR", "127.0.0.1:8000"))
        parser.add_argument("--no-worker", action="store_true", help="do not start Celery")
        parser.add_argument("--no-demo", action="store_true", help="do not seed demo data")

    def handle(self, *args: Any, **options: Any) -> None:
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        login = self._ensure_admin()
        if not options["no_demo"]:
            store = conf.get_store()
            if next(iter(store.list_states(page_size=1)), None) is None:
                count = demo.seed(store)
                self.stdout.write(f"Seeded {count} demo states into store '{conf.default_store_name()}'.")
        worker = None if options["no_worker"] else self._start_worker()
        self.stdout.write(self.style.SUCCESS(f"\nstatehub dashboard: http://{options['addrport']}/"))
        self.stdout.write(f"Log in as {login}\n")
        try:
            call_command("runserver", options["addrport"], use_reloader=False)
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=10)

    def _ensure_admin(self) -> str:
        User = get_user_model()
        username = os.environ.get("STATEHUB_ADMIN_USERNAME", "admin")
        password = os.environ.get("STATEHUB_ADMIN_PASSWORD")
        if User.objects.filter(is_superuser=True).exists():
            if password:
                return f"{username!r} with STATEHUB_ADMIN_PASSWORD"
            return "your existing admin account"
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        shown = f"password {password}" + (" (generated; shown only this once)" if generated else "")
        return f"{username!r}, {shown}"

    def _start_worker(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "celery", "-A", "statehub", "worker", "--beat",
                   "--loglevel=INFO", "--concurrency=1",
                   f"--schedule={settings.DATA_DIR / 'celerybeat-schedule'}"]
        self.stdout.write("Starting a Celery worker with beat: " + " ".join(command[2:]))
        return subprocess.Popen(command)
