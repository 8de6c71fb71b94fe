"""The settings' environment readers: a mistake names the variable, as settings load."""

from __future__ import annotations

import pytest

from statehub.env import env_bool, env_int, env_json


def test_each_reader_names_the_variable_it_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATEHUB_STORES", '{"default": sqlite:///x.db}')
    with pytest.raises(ValueError, match="environment variable STATEHUB_STORES must be JSON"):
        env_json("STATEHUB_STORES", {})
    monkeypatch.setenv("STATEHUB_X", "maybe")
    with pytest.raises(ValueError, match="STATEHUB_X must be true or false"):
        env_bool("STATEHUB_X", False)
    with pytest.raises(ValueError, match="STATEHUB_X must be an integer"):
        env_int("STATEHUB_X", 1)


def test_an_unset_variable_gives_the_default_and_a_set_one_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STATEHUB_Y", raising=False)
    assert env_json("STATEHUB_Y", {"a": 1}) == {"a": 1}
    monkeypatch.setenv("STATEHUB_Y", '{"b": [2]}')
    assert env_json("STATEHUB_Y", {}) == {"b": [2]}
