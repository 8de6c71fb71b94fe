"""Fixtures of the dashboard view tests: a fresh named memory store, a logged-in client."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from persistence import StatePersistence, conf


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    # Diffs are cached by the two versions' checksums, which the seeds of several tests share:
    # each test starts without what an earlier one cached.
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def configure(settings: Any) -> Callable[..., StatePersistence]:
    """``configure(**options)`` points STATEHUB_STORES at a new memory store and returns it."""

    def apply(extra: dict[str, Any] | None = None, **options: Any) -> StatePersistence:
        url = f"memory://dash-{uuid.uuid4().hex[:12]}"
        stores: dict[str, Any] = {"default": {"url": url, "options": options}}
        stores.update(extra or {})
        settings.STATEHUB_STORES = stores
        return conf.get_store("default")

    return apply


@pytest.fixture
def store(configure: Callable[..., StatePersistence]) -> StatePersistence:
    return configure()


def with_role(user: Any, role: str) -> Any:
    """Put ``user`` in the role's group (the groups come from a data migration)."""
    from django.contrib.auth.models import Group

    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def user(django_user_model: Any) -> Any:
    """An operator: the dashboard's tests change states."""
    created = django_user_model.objects.create_user(username="ops", password="pw-123-secret")
    return with_role(created, "operator")


@pytest.fixture
def client(user: Any) -> Client:
    c = Client()
    c.force_login(user)
    return c


def htmx(target: str = "main") -> dict[str, str]:
    """Headers of an HTMX request aimed at ``#target``."""
    return {"HX-Request": "true", "HX-Target": target}
