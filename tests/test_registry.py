"""connect(url): the scheme table, named memory stores, and URLs shown without passwords."""

from __future__ import annotations

import pytest

from persistence import connect
from persistence.registry import redact_url


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
