"""The settings' environment readers: a mistake names the variable, as settings load."""

from __future__ import annotations

import pytest

from statehub.env import env_bool, env_int, env_json


def test_each_reader_names_the_variable_it_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATEHUB_STORES", '{"default": "redis://:s3cret@cache/0",}')
    with pytest.raises(ValueError, match="environment variable STATEHUB_STORES must be JSON") as e:
        env_json("STATEHUB_STORES", {})
    assert "s3cret" not in str(e.value)  # the text may hold a password: only where it broke
    monkeypatch.setenv("STATEHUB_X", "maybe")
    with pytest.raises(ValueError, match="STATEHUB_X must be true or false"):
        env_bool("STATEHUB_X", False)
    with pytest.raises(ValueError, match="STATEHUB_X must be an integer"):
        env_int("STATEHUB_X", 1)
    monkeypatch.setenv("STATEHUB_X", "-1")
    with pytest.raises(ValueError, match="STATEHUB_X must be 0 or more"):
        env_int("STATEHUB_X", 0, minimum=0)


def test_an_unset_variable_gives_the_default_and_a_set_one_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STATEHUB_Y", raising=False)
    assert env_json("STATEHUB_Y", {"a": 1}) == {"a": 1}
    monkeypatch.setenv("STATEHUB_Y", '{"b": [2]}')
    assert env_json("STATEHUB_Y", {}) == {"b": [2]}
