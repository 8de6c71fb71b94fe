"""The Celery app: configured from Django settings under the CELERY_ namespace.

The broker comes from ``CELERY_BROKER_URL`` (Redis in production). The embedded default,
``filesystem://``, needs no server: producer and worker exchange message files in folders under
the data directory, which are created here as soon as the app reads its configuration, so the
first worker, beat or "Run now" never fails on a missing folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "statehub.settings")

app = Celery("statehub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_FOLDER_OPTIONS = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")


@app.on_after_configure.connect  # type: ignore[untyped-decorator]  # celery is untyped
def _create_broker_folders(sender: Celery, source: Any, **_: Any) -> None:
    if not str(source.broker_url or "").startswith("filesystem"):
        return
    options = source.broker_transport_options or {}
    for key in _FOLDER_OPTIONS:
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
