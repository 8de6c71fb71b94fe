"""Fixtures of the security tests: one account per role, a seeded memory store, a dead broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from persistence import StatePersistence, conf

ROLES = ("anonymous", "norole", "viewer", "operator", "admin")
PASSWORD = "sec-pass-8271"
STATE_ID = "agent/one x"  # a slash and a space: path converters must carry both


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    # Argon2 is the configured default (test_settings proves it); MD5 keeps these tests fast.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed(store: StatePersistence) -> str:
    """Three versions of STATE_ID and a checkpoint; returns the checkpoint id."""
    store.save_with_metadata({"step": 1}, STATE_ID, tags=["agent"])
    store.save_with_metadata({"step": 2}, STATE_ID)
    store.save_with_metadata({"step": 3}, STATE_ID)
    return str(store.create_checkpoint(STATE_ID, {"cp": 1}))


@pytest.fixture
def fresh_store(settings: Any) -> Callable[[], tuple[StatePersistence, str]]:
    """``fresh_store()`` -> a new seeded memory store named "default", and its checkpoint id."""

    def make() -> tuple[StatePersistence, str]:
        settings.STATEHUB_STORES = {"default": f"memory://sec-{uuid.uuid4().hex[:12]}"}
        store = conf.get_store("default")
        return store, seed(store)

    return make


@pytest.fixture
def store(fresh_store: Callable[[], tuple[StatePersistence, str]]) -> StatePersistence:
    return fresh_store()[0]


def make_user(name: str, role: str | None, *, superuser: bool = False) -> Any:
    from django.contrib.auth import get_user_model

    model = get_user_model()
    if superuser:
        return model.objects.create_superuser(name, password=PASSWORD)
    user = model.objects.create_user(name, password=PASSWORD)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def accounts(db: Any) -> dict[str, Any]:
    """One account per role (``norole``: active, in no group); anonymous is None."""
    return {
        "anonymous": None,
        "norole": make_user("nobody", None),
        "viewer": make_user("vera", "viewer"),
        "operator": make_user("otto", "operator"),
        "admin": make_user("ada", "admin"),
    }


def client_for(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client
