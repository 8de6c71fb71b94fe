"""Writes the dashboard makes to a store: rollback and deletes.

Every function takes the store, the acting user, its arguments and the operator's reason, so
role checks and the audit log can be added here once for every caller (views, commands, tasks).
"""

from __future__ import annotations

from typing import Any

from persistence.store import StatePersistence
from persistence.types import StateMetadata


def _actor(user: Any) -> str:
    return str(getattr(user, "get_username", lambda: "")() or "anonymous")


def rollback_state(
    store: StatePersistence, user: Any, state_id: str, version: int, reason: str = ""
) -> StateMetadata:
    """Write a new version equal to ``version``, recording who did it and why.

    Raises StateNotFoundError / VersionPrunedError when the target is gone.
    """
    metadata: dict[str, Any] = {"by": _actor(user)}
    if reason:
        metadata["reason"] = reason
    return store.rollback(state_id, version, metadata=metadata)


def delete_version(
    store: StatePersistence, user: Any, state_id: str, version: int, reason: str = ""
) -> bool:
    """Delete one version (the state too if it was the last one); True if it existed."""
    return store.delete_version(state_id, version)


def delete_state(store: StatePersistence, user: Any, state_id: str, reason: str = "") -> bool:
    """Delete a state with all its versions and checkpoints; True if it existed."""
    return store.delete_state(state_id)
