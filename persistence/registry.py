"""connect(url): one scheme table picks the backend; drivers are imported only when used."""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from persistence.store import StatePersistence

# scheme -> (module, class, how the URL becomes constructor arguments)
_SCHEMES: dict[str, tuple[str, str, str]] = {
    "memory": ("persistence.backends.memory", "InMemoryStatePersistence", "memory"),
    "sqlite": ("persistence.backends.sqlite", "SQLiteStatePersistence", "path"),
    "redis": ("persistence.backends.redis", "RedisStatePersistence", "redis_url"),
    "rediss": ("persistence.backends.redis", "RedisStatePersistence", "redis_url"),
    "unix": ("persistence.backends.redis", "RedisStatePersistence", "redis_url"),
    "postgresql": ("persistence.backends.postgres", "PostgresStatePersistence", "dsn"),
    "postgres": ("persistence.backends.postgres", "PostgresStatePersistence", "dsn"),
}

# memory://NAME gives the same store to every caller in this process (a dashboard and its
# in-process workers, or a test and the views it drives); plain memory:// is always new.
_named_memory: dict[str, StatePersistence] = {}
_named_lock = threading.Lock()


def _after_fork() -> None:
    global _named_lock
    _named_lock = threading.Lock()  # another thread of the parent may have held it


os.register_at_fork(after_in_child=_after_fork)


def connect(url: str, **options: Any) -> StatePersistence:
    """A store for ``url``: ``memory://[name]``, ``sqlite:///relative.db``,
    ``sqlite:////absolute.db``, ``redis://…``, ``rediss://…``, ``postgresql://…``.

    ``options`` are the common store options (compression_type, max_versions, ...) plus the
    backend's own (``redis_options``, pool sizes, ...).
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        valid = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ValueError(f"unknown store URL scheme in {redact_url(url)!r}; use one of: {valid}")
    url = scheme + url[len(scheme) :]  # REDIS:// too: the drivers take lowercase schemes only
    module_name, class_name, style = _SCHEMES[scheme]
    cls = getattr(importlib.import_module(module_name), class_name)
    if style == "memory":
        name = url.split("://", 1)[1].strip("/")
        if not name:
            return cls(**options)  # type: ignore[no-any-return]
        with _named_lock:
            # Later calls share the store as first opened, their options aside: a process
            # re-reading changed settings (as the worker tests do) keeps the data it had.
            if name not in _named_memory:
                _named_memory[name] = cls(**options)
            return _named_memory[name]
    if style == "path":
        in_url = _sqlite_options(url)
        twice = sorted(set(in_url) & set(options))
        if twice:
            raise ValueError(f"{', '.join(twice)} given both in the sqlite URL and as an option")
        return cls(path=sqlite_path(url), **in_url, **options)  # type: ignore[no-any-return]
    return cls(**{style: url}, **options)  # type: ignore[no-any-return]


def sqlite_path(url: str) -> str:
    """``sqlite:///rel/x.db`` -> ``rel/x.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``."""
    if "#" in url:  # a URL fragment, which would quietly cut the file name short
        raise ValueError(f"sqlite URL {url!r} has a '#'; write it as %23 in a file name")
    path = unquote(urlsplit(url).path)
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise ValueError(f"sqlite URL {url!r} names no file; use sqlite:///path/to/state.db")
    return path


def _sqlite_options(url: str) -> dict[str, Any]:
    """``?synchronous=FULL&busy_timeout=10`` -> constructor options; anything else is refused
    rather than dropped (a durability setting that quietly did nothing)."""
    options: dict[str, Any] = {}
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if key in options:
            raise ValueError(f"{key} is given twice in the sqlite URL")
        if key == "synchronous":
            options[key] = value
        elif key == "busy_timeout":
            try:
                options[key] = float(value)
            except ValueError:
                raise ValueError(
                    f"busy_timeout in the sqlite URL is not a number: {value!r}"
                ) from None
        else:
            raise ValueError(
                f"unknown option {key!r} in the sqlite URL; it takes synchronous and busy_timeout"
            )
    return options


def redact_url(url: str) -> str:
    """``url`` without its password, in the userinfo or a ``password`` option, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:  # a bracketed host left open, say: show no part of it
        return url.split("://", 1)[0] + "://…"
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
