"""The exceptions statehub raises, all under one base.

    PersistenceError
     ├── VersionConflictError      an explicit version is not above the state's latest
     ├── StateNotFoundError        rollback's target state or version does not exist (LookupError)
     ├── VersionPrunedError        a version existed but was pruned past max_versions (LookupError)
     ├── StateIntegrityError       stored bytes fail their checksum or cannot be decoded (also a
     │                             damaged SQLite file)
     ├── StateSerializationError   a state or metadata is not exactly representable as JSON
     │                             (also TypeError and ValueError)
     └── BackendUnavailableError   the server cannot be reached (also the builtin ConnectionError)
          └── OutcomeUnknownError  the call was sent but its effect is unknown: retry with the
                                   same write_id

Bad arguments (a malformed state id, a negative TTL, ...) raise plain ``ValueError`` or
``TypeError`` with a message that names the argument; nothing is written when they do.
Driver exceptions (redis-py, psycopg, sqlite3) are translated at each backend's boundary and
chained with ``raise ... from exc``, so callers never need to import a driver to catch them.
"""

from __future__ import annotations


class PersistenceError(Exception):
    """Base of every error statehub raises on purpose."""


class VersionConflictError(PersistenceError):
    """An explicit version was not greater than the state's latest; nothing was written."""

    def __init__(
        self, state_id: str, requested: int, latest: int, *, in_batch: bool = False
    ) -> None:
        latest_is = (
            f"the latest version, counting the batch's earlier writes to it, would be {latest}"
            if in_batch
            else f"the latest version is {latest}"
        )
        super().__init__(
            f"version conflict on state {state_id!r}: requested version {requested}, "
            f"but {latest_is} (a new version must be greater)"
        )
        self.state_id = state_id
        self.requested = requested
        self.latest = latest


class VersionPrunedError(PersistenceError, LookupError):
    """The version asked for was pruned: it is below ``oldest_kept``, the lowest number the
    state still keeps (a version above it may be missing too, if it was deleted)."""

    def __init__(self, state_id: str, version: int, oldest_kept: int) -> None:
        super().__init__(
            f"version {version} of state {state_id!r} was pruned; "
            f"versions below {oldest_kept} are no longer kept"
        )
        self.state_id = state_id
        self.version = version
        self.oldest_kept = oldest_kept


class StateIntegrityError(PersistenceError):
    """Stored bytes failed their checksum or could not be decoded; no data is returned."""


class StateSerializationError(PersistenceError, TypeError, ValueError):
    """A value cannot round-trip exactly through JSON (NaN, a set, a non-string key, ...)."""


class BackendUnavailableError(PersistenceError, ConnectionError):
    """The backend server could not be reached or refused the connection."""


class OutcomeUnknownError(BackendUnavailableError):
    """The request may or may not have been applied; retry with the same write_id to be sure."""


class StateNotFoundError(PersistenceError, LookupError):
    """An operation needs a state, version or checkpoint that does not exist (or has expired)."""
