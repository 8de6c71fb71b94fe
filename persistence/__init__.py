"""statehub's persistence library: durable, versioned, checksummed state on four backends.

    from persistence import connect
    store = connect("sqlite:///state.db")
    store.save_with_metadata({"step": 1}, "run-42", tags=["agent"])

This package imports no Django and no database driver; backends import theirs when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from persistence.errors import (
    BackendUnavailableError,
    OutcomeUnknownError,
    PersistenceError,
    StateIntegrityError,
    StateNotFoundError,
    StateSerializationError,
    VersionConflictError,
    VersionPrunedError,
)
from persistence.registry import connect
from persistence.store import StatePersistence
from persistence.types import CompressionType, Page, StateMetadata, StateSummary

if TYPE_CHECKING:
    from persistence.backends.memory import InMemoryStatePersistence
    from persistence.backends.postgres import PostgresStatePersistence
    from persistence.backends.redis import RedisStatePersistence
    from persistence.backends.sqlite import SQLiteStatePersistence

_BACKENDS = {
    "InMemoryStatePersistence": "persistence.backends.memory",
    "SQLiteStatePersistence": "persistence.backends.sqlite",
    "RedisStatePersistence": "persistence.backends.redis",
    "PostgresStatePersistence": "persistence.backends.postgres",
}


def __getattr__(name: str) -> Any:
    # Backend classes load on first use, so `import persistence` never imports a driver.
    if name in _BACKENDS:
        import importlib

        return getattr(importlib.import_module(_BACKENDS[name]), name)
    raise AttributeError(f"module 'persistence' has no attribute {name!r}")


__all__ = [
    "BackendUnavailableError",
    "CompressionType",
    "InMemoryStatePersistence",
    "OutcomeUnknownError",
    "Page",
    "PersistenceError",
    "PostgresStatePersistence",
    "RedisStatePersistence",
    "SQLiteStatePersistence",
    "StateIntegrityError",
    "StateMetadata",
    "StateNotFoundError",
    "StatePersistence",
    "StateSerializationError",
    "StateSummary",
    "VersionConflictError",
    "VersionPrunedError",
    "connect",
]
