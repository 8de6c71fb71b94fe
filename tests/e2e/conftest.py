"""End-to-end fixtures: a live dashboard on a real store, driven by headless Chromium.

The store is SQLite by default and parametrized over Redis and PostgreSQL, each in its own
namespace / schema that is dropped afterwards. Playwright's sync API runs an event loop in the
test thread, so Django's async-safety check is relaxed for these tests only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from persistence import StatePersistence, conf
from tests.conftest import DURABLE, POSTGRES_DSN, REDIS_URL, drop_store, missing, server_missing

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("STATEHUB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "e2e-pass-4821"


def store_spec(backend: str, where: str, tmp_path: Path) -> Any:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'e2e-states.sqlite3'}"
    if backend == "redis":
        return {"url": REDIS_URL, "options": {"namespace": where}}
    if backend == "postgres":
        return {"url": POSTGRES_DSN, "options": {"schema": where}}
    return f"memory://{where}"


@pytest.fixture(params=DURABLE)
def e2e_store(
    request: pytest.FixtureRequest, settings: Any, tmp_path: Path
) -> Iterator[StatePersistence]:
    backend = str(request.param)
    where = f"e2e_{uuid.uuid4().hex[:12]}" if backend == "postgres" else f"e2e-{uuid.uuid4().hex}"
    settings.STATEHUB_STORES = {"default": store_spec(backend, where, tmp_path)}
    try:
        store = conf.get_store()
    except ConnectionError as exc:
        server_missing(backend, exc)
    yield store
    conf.close_stores()
    drop_store(backend, where)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright import sync_api
    except ImportError as exc:
        missing(f"Playwright is not installed: {exc}")
    if not Path(CHROMIUM).exists():
        missing(f"no Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def admin_user(django_user_model: Any, settings: Any) -> Any:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return django_user_model.objects.create_superuser(username="admin", password=PASSWORD)


@pytest.fixture
def page(browser: Any, live_server: Any, admin_user: Any) -> Iterator[Any]:
    """A logged-in page; ``page.base`` is the live server URL."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    # The Content-Security-Policy must never have to block anything the dashboard itself sends.
    tab.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    tab.goto(f"{live_server.url}/accounts/login/")
    tab.fill("#id_username", "admin")
    tab.fill("#id_password", PASSWORD)
    tab.click("button[type=submit]")
    tab.wait_for_url("**/s/default/")
    tab.base = live_server.url
    yield tab
    context.close()
    assert not errors, f"JavaScript errors or CSP violations: {errors}"


def seed(store: StatePersistence) -> None:
    store.save_with_metadata({"step": 1, "msg": "hello"}, "agent-1", tags=["agent", "vip"])
    store.save_with_metadata({"step": 2, "msg": "hello", "tools": ["search"]}, "agent-1")
    store.save_with_metadata({"step": 3, "msg": "done", "tools": ["search", "code"]}, "agent-1")
    store.save_with_metadata({"step": 1}, "agent-2", tags=["agent"])
    store.save_with_metadata({"cart": [1, 2]}, "session-1", tags=["session"], ttl_seconds=3600)


Seeder = Callable[[StatePersistence], None]
