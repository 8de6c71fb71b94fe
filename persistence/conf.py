"""The one module that reads statehub's Django settings: which stores exist and how to open them.

``STATEHUB_STORES`` maps a name to a URL, or to ``{"url": ..., "options": {...}}`` where options
are the store options of ``persistence.connect`` (max_versions, default_ttl, redis_options, ...).
Stores are opened once per process and shared by every request and task in it.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

from persistence import StatePersistence, connect

_lock = threading.Lock()
_open: dict[str, StatePersistence] = {}


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it


os.register_at_fork(after_in_child=_after_fork)


@dataclass(frozen=True)
class StoreConfig:
    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)


def store_configs() -> dict[str, StoreConfig]:
    raw = getattr(settings, "STATEHUB_STORES", None) or {}
    if not isinstance(raw, dict) or not raw:
        raise ValueError("STATEHUB_STORES must be a non-empty mapping of name -> URL")
    configs = {}
    for name, spec in raw.items():
        if isinstance(spec, str):
            configs[name] = StoreConfig(name, spec)
        elif isinstance(spec, dict) and isinstance(spec.get("url"), str):
            configs[name] = StoreConfig(name, spec["url"], dict(spec.get("options") or {}))
        else:
            raise ValueError(
                f"STATEHUB_STORES[{name!r}] must be a URL or a dict with 'url' and 'options'"
            )
    return configs


def store_names() -> list[str]:
    return list(store_configs())


def default_store_name() -> str:
    return next(iter(store_configs()))


def get_store(name: str | None = None) -> StatePersistence:
    """The open store called ``name`` (the first configured by default).

    Raises KeyError for an unknown name and BackendUnavailableError when its server is down;
    a failed open is not cached, so the next call tries again.
    """
    configs = store_configs()
    name = name or next(iter(configs))
    if name not in configs:
        raise KeyError(f"no store named {name!r}; configured: {', '.join(configs)}")
    with _lock:
        store = _open.get(name)
        if store is None:
            config = configs[name]
            store = connect(config.url, **config.options)
            _open[name] = store
        return store


def close_stores() -> None:
    with _lock:
        for store in _open.values():
            store.close()
        _open.clear()


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting == "STATEHUB_STORES":
        close_stores()


def connect_signals() -> None:
    setting_changed.connect(_on_setting_changed, dispatch_uid="statehub-stores")


# The Content-Security-Policy of every dashboard response unless STATEHUB_CSP (a mapping of
# directive -> sources) replaces it: no inline scripts or styles anywhere.
DEFAULT_CSP: dict[str, list[str]] = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'none'"],
}


def csp_policy() -> dict[str, list[str]]:
    return getattr(settings, "STATEHUB_CSP", None) or DEFAULT_CSP


def trusted_proxies() -> int:
    """How many reverse proxies in front of the dashboard append to X-Forwarded-For."""
    value = getattr(settings, "STATEHUB_TRUSTED_PROXIES", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"STATEHUB_TRUSTED_PROXIES must be an int >= 0 (got {value!r})")
    return value


@dataclass(frozen=True)
class CleanupSettings:
    """How the cleanup workers run: the STATEHUB_* settings of docs/workers.md."""

    purge_interval: float  # seconds between scheduled purges
    prune_interval: float  # seconds between scheduled prunes
    batch_size: int  # states per purge_expired / prune_versions call
    time_limit: float  # seconds one run may spend before it stops between batches
    lock_timeout: float  # seconds without progress after which a run's lock is abandoned
    run_retention_days: int  # how long run records are kept


def cleanup_settings() -> CleanupSettings:
    def number(name: str, default: float, minimum: float, maximum: float = math.inf) -> float:
        value = getattr(settings, name, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not minimum <= value <= maximum
        ):
            bounds = f">= {minimum}" if maximum == math.inf else f"from {minimum} to {maximum}"
            raise ValueError(f"{name} must be a number {bounds} (got {value!r})")
        return value

    return CleanupSettings(
        purge_interval=number("STATEHUB_PURGE_INTERVAL", 60, 1),
        prune_interval=number("STATEHUB_PRUNE_INTERVAL", 3600, 1),
        # The stores' purge_expired / prune_versions take at most 100,000 per call.
        batch_size=int(number("STATEHUB_CLEANUP_BATCH_SIZE", 1000, 1, 100_000)),
        time_limit=number("STATEHUB_CLEANUP_TIME_LIMIT", 30, 0),
        lock_timeout=number("STATEHUB_CLEANUP_LOCK_TIMEOUT", 60, 1),
        run_retention_days=int(number("STATEHUB_RUN_RETENTION_DAYS", 30, 1)),
    )
