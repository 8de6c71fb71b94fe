"""Sizes written as text, read as Redis reads them in its configuration."""

from __future__ import annotations

import pytest

from persistence.sizes import ByteCount, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("100MB", 100 * 1024**2),
        ("100mb", 100 * 1024**2),
        ("1.5 GiB", 1.5 * 1024**3),
        ("2g", 2 * 1000**3),
        ("64k", 64_000),
        ("64kb", 64 * 1024),
    ],
)
def test_sizes_follow_redis_units(text: str, size: float) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "10 XB", "-1MB", "1e3", "\uff11\uff10MB"])
def test_anything_else_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_a_byte_count_is_an_int_that_also_compares_with_sizes() -> None:
    used = ByteCount(150 * 1024**2)
    assert used > "100MB" and used >= "150mb" and used < "1gb" and not used <= "100MB"
    assert used > 100 and used == 150 * 1024**2
    assert type(used + 1) is int and f"{used}" == str(150 * 1024**2)


def test_a_byte_count_equals_the_size_it_is() -> None:
    """== agrees with <= and >= (and never raises: a text that is no size is not equal)."""
    used = ByteCount(150 * 1024**2)
    assert used == "150MB" and (used != "150MB") is False and used != "151MB"
    assert used != "lots" and used == "150mb"
    assert {used: "x"}[150 * 1024**2] == "x"  # hashed as the int it equals
