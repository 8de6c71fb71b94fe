"""Fixtures of the worker tests: a memory store configured as a dashboard store, on a fake clock."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from persistence import StatePersistence, conf
from tests.conftest import FakeClock


@pytest.fixture
def configure(settings: Any, clock: FakeClock) -> Any:
    """``configure(**options)`` -> the memory store "mem" with those store options.

    Calling it again changes the options in settings but keeps the same data, like an operator
    editing STATEHUB_STORES and restarting the workers."""
    url = f"memory://workers-{uuid.uuid4().hex}"
    settings.STATEHUB_CLEANUP_BATCH_SIZE = 7
    settings.STATEHUB_CLEANUP_TIME_LIMIT = 30
    settings.STATEHUB_CLEANUP_LOCK_TIMEOUT = 60

    def apply(**options: Any) -> StatePersistence:
        settings.STATEHUB_STORES = {"mem": {"url": url, "options": {"clock": clock, **options}}}
        return conf.get_store("mem")

    return apply


@pytest.fixture
def mem(configure: Any) -> StatePersistence:
    """The store "mem", keeping every version (so pruning has work)."""
    return configure(max_versions=None)
