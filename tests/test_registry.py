"""connect(url): the scheme table, named memory stores, and URLs shown without passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from persistence import connect
from persistence.registry import redact_url
from tests.conftest import REDIS_URL


def test_connect_rejects_unknown_schemes_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"memory://.*sqlite://.*redis://.*postgresql://"):
        connect("mysql://root:secret@db/x")
    with pytest.raises(ValueError) as info:
        connect("mongodb://user:hunter2@host/db")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError, match="sqlite"):
        connect("sqlite://")


def test_named_memory_stores_are_shared_in_process() -> None:
    a = connect("memory://shared-test")
    a.save_with_metadata({"v": 1}, "x")
    assert connect("memory://shared-test") is a
    assert connect("memory://") is not connect("memory://")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@h/0", "redis://user@h/0"),
        (
            "rediss://:pw@host:6380/1?password=pw&ssl_cert_reqs=none",
            "rediss://host:6380/1?ssl_cert_reqs=none",
        ),
        ("mongodb://u@h/db?PASSWORD=hunter2&x=1", "mongodb://u@h/db?x=1"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("redis://[::1/0?password=pw", "redis://…"),
    ],
)
def test_redact_url_drops_every_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_unknown_scheme_is_refused_without_its_password() -> None:
    with pytest.raises(ValueError) as info:
        connect("mongodb://user@host/db?password=hunter2")
    assert "hunter2" not in str(info.value) and "mongodb://user@host/db" in str(info.value)


def test_schemes_are_case_insensitive_on_every_backend(tmp_path: Path) -> None:
    assert connect("MEMORY://").backend_type == "memory"
    assert connect(f"SQLite:///{tmp_path}/x.db").backend_type == "sqlite"
    shouting = "REDIS" + REDIS_URL[len("redis") :]
    with connect(shouting, namespace="t-case") as store:  # nothing written: no keys to remove
        assert store.backend_type == "redis" and store.describe() == REDIS_URL


def test_a_hash_in_a_sqlite_url_is_refused_not_cut_off(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="%23"):
        connect(f"sqlite:///{tmp_path}/a#b.db")
    assert list(tmp_path.iterdir()) == []
    with connect(f"sqlite:///{tmp_path}/a%23b.db") as store:
        store.save_with_metadata({"v": 1}, "s")
    assert (tmp_path / "a#b.db").exists()
