"""The conformance suite: the definition of behaviour, run unchanged on every backend.

Every test gets a fresh store of the parametrized backend (memory, sqlite, redis, postgres) on
a fake clock (``clock.advance(seconds)`` moves time for TTLs).
"""

from __future__ import annotations

import base64
import gc
import hashlib
import uuid
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from persistence import (
    BackendUnavailableError,
    CompressionType,
    StateIntegrityError,
    StateMetadata,
    StateNotFoundError,
    StatePersistence,
    VersionConflictError,
    VersionPrunedError,
)
from persistence.store import ROLLBACK_KEY
from tests.conftest import (
    DURABLE,
    FakeClock,
    drop_store,
    open_store,
    run_threads,
    server_missing,
)
from tests.corruption import corrupt_version

BIG = {"data": "x" * 10_000}


def versions_of(store: StatePersistence, sid: str) -> list[int]:
    return [m.version for m in store.list_versions(sid)]


# ---------------------------------------------------------------- save and load


def test_save_then_load_round_trips_state_and_metadata(store: StatePersistence) -> None:
    state = {"user_id": "123", "nested": {"list": [1, 2.5, None, True, "é"]}, "n": -(2**63)}
    saved = store.save_with_metadata(
        state, "user_session_123", tags=["user", "session"], metadata={"source": "test"}
    )
    loaded = store.load_with_metadata("user_session_123")
    assert loaded is not None
    got, meta = loaded
    assert got == state
    assert meta == saved
    assert meta.version == 1
    assert meta.tags == ("user", "session")
    assert meta.metadata == {"source": "test"}
    assert isinstance(meta.created_at, datetime) and meta.created_at.tzinfo is not None


def test_versions_count_up_from_one(store: StatePersistence) -> None:
    for expected in (1, 2, 3):
        assert store.save_with_metadata({"n": expected}, "s").version == expected
    assert versions_of(store, "s") == [1, 2, 3]


def test_load_of_missing_state_returns_none(store: StatePersistence) -> None:
    assert store.load_with_metadata("nope") is None
    assert store.load_with_metadata("nope", version=3) is None
    assert store.list_versions("nope") == []
    assert store.exists("nope") is False


def test_load_specific_version(store: StatePersistence) -> None:
    store.save_with_metadata({"v": 1}, "s")
    store.save_with_metadata({"v": 2}, "s")
    loaded = store.load_with_metadata("s", version=1)
    assert loaded is not None and loaded[0] == {"v": 1} and loaded[1].version == 1
    assert store.load_with_metadata("s", version=9) is None


def test_explicit_version_must_exceed_latest_and_conflict_writes_nothing(
    store: StatePersistence,
) -> None:
    store.save_with_metadata({"v": 1}, "s", version=1, tags=["a"])
    store.save_with_metadata({"v": 5}, "s", version=5)
    for stale in (1, 4, 5):
        with pytest.raises(VersionConflictError) as info:
            store.save_with_metadata({"v": "bad"}, "s", version=stale, tags=["b"])
        assert info.value.latest == 5 and info.value.requested == stale
        assert "5" in str(info.value)
    assert versions_of(store, "s") == [1, 5]
    loaded = store.load_with_metadata("s")
    assert loaded is not None and loaded[0] == {"v": 5}
    assert store.search_by_tags(["b"]) == []
    assert store.save_with_metadata({"v": 6}, "s").version == 6


def test_versions_counted_up_past_the_explicit_limit_stay_addressable(
    store: StatePersistence,
) -> None:
    """The largest explicit version is 2**62; the saves after it count on, and every read,
    delete and rollback must still reach what they wrote."""
    top = 2**62
    store.save_with_metadata({"n": 0}, "far", version=top)
    assert [store.save_with_metadata({"n": n}, "far").version for n in (1, 2)] == [
        top + 1,
        top + 2,
    ]
    loaded = store.load_with_metadata("far", version=top + 1)
    assert loaded is not None and loaded[0] == {"n": 1}
    assert store.rollback("far", top + 1).version == top + 3
    assert store.delete_version("far", top + 2)
    assert versions_of(store, "far") == [top, top + 1, top + 3]
    with pytest.raises(ValueError, match="version must be between 1 and 4611686018427387904"):
        store.save_with_metadata({}, "far", version=top + 10)  # explicit writes stop at 2**62
    with pytest.raises(ValueError, match="version"):
        store.load_with_metadata("far", version=2**63)


@pytest.mark.parametrize("power", [16, 17, 18])
def test_versions_keep_their_order_where_they_gain_a_digit(
    make_store, clock: FakeClock, power: int
) -> None:
    """Past 2**53 a float cannot tell 10**n - 1 from 10**n: versions must still sort and
    prune as integers (Redis once ordered them by a float score)."""
    below = 10**power - 1
    store = make_store(clock=clock, max_versions=2)
    store.save_with_metadata({"n": 0}, "s", version=below)
    assert [store.save_with_metadata({"n": n}, "s").version for n in (1, 2)] == [
        below + 1,
        below + 2,
    ]
    assert versions_of(store, "s") == [below + 1, below + 2]
    with pytest.raises(VersionPrunedError):
        store.load_with_metadata("s", version=below)
    one = make_store(clock=clock, max_versions=1)  # the same data, keeping one version
    one.save_with_metadata({"n": 0}, "t", version=below)
    assert one.save_with_metadata({"n": 1}, "t").version == below + 1
    assert versions_of(one, "t") == [below + 1]
    loaded = one.load_with_metadata("t")
    assert loaded is not None and loaded[0] == {"n": 1}


def test_version_numbers_are_not_reused_after_deleting_the_latest(
    store: StatePersistence,
) -> None:
    store.save_with_metadata({"v": 1}, "s")
    store.save_with_metadata({"v": 2}, "s")
    assert store.delete_version("s", 2) is True
    assert store.save_with_metadata({"v": 3}, "s").version == 3
    with pytest.raises(VersionConflictError):
        store.save_with_metadata({"v": 2}, "s", version=2)


def test_checksum_is_sha256_of_the_serialized_json(store: StatePersistence) -> None:
    state = {"b": [1, 2], "a": "text"}
    meta = store.save_with_metadata(state, "s")
    assert meta.checksum == hashlib.sha256(orjson.dumps(state)).hexdigest()
    assert meta.original_size == len(orjson.dumps(state))


@pytest.mark.parametrize(
    ("configured", "big_used"),
    [
        (CompressionType.LZ4, CompressionType.LZ4),
        (CompressionType.ZLIB, CompressionType.ZLIB),
        (CompressionType.NONE, CompressionType.NONE),
    ],
)
def test_compression_applies_only_where_it_pays(
    make_store, clock: FakeClock, configured: CompressionType, big_used: CompressionType
) -> None:
    store = make_store(clock=clock, compression_type=configured)
    small = store.save_with_metadata({"k": "v"}, "small")
    big = store.save_with_metadata(BIG, "big")
    assert small.compression_type is CompressionType.NONE
    assert big.compression_type is big_used
    if big_used is not CompressionType.NONE:
        assert big.size_bytes < big.original_size / 10
    loaded = store.load_with_metadata("big")
    assert loaded is not None and loaded[0] == BIG


def test_tags_none_keeps_previous_tags_and_empty_list_clears_them(
    store: StatePersistence,
) -> None:
    store.save_with_metadata({"v": 1}, "s", tags=["a", "b", "a"])
    assert store.save_with_metadata({"v": 2}, "s").tags == ("a", "b")
    assert [m.state_id for m in store.search_by_tags(["a"])] == ["s"]
    assert store.save_with_metadata({"v": 3}, "s", tags=[]).tags == ()
    assert store.search_by_tags(["a"]) == []


# ---------------------------------------------------------------- TTL


def test_expired_state_is_invisible_to_every_read(store: StatePersistence, clock) -> None:
    store.save_with_metadata({"v": 1}, "temp", tags=["t"], ttl_seconds=300)
    store.save_with_metadata({"v": 1}, "keep", tags=["t"])
    meta = store.load_with_metadata("temp")
    assert meta is not None and meta[1].ttl_seconds == 300
    assert meta[1].expires_at is not None
    assert (meta[1].expires_at - meta[1].created_at).total_seconds() == pytest.approx(300)
    clock.advance(301)
    assert store.load_with_metadata("temp") is None
    assert store.load_with_metadata("temp", version=1) is None
    assert store.list_versions("temp") == []
    assert store.exists("temp") is False
    assert list(store.list_states()) == ["keep"]
    assert [m.state_id for m in store.search_by_tags(["t"])] == ["keep"]
    assert [s.state_id for s in store.page_states().items] == ["keep"]
    assert store.load_many(["temp", "keep"])["temp"] is None
    assert store.count_states() == 1
    assert store.get_stats()["total_states"] == 1
    # Deleting it removes what is left, but reports no state, as every other call does.
    assert store.delete_version("temp", 1) is False
    assert store.delete_state("temp") is False
    assert store.delete_state("keep") is True
    assert store.get_stats()["total_versions"] == 0


def test_each_save_resets_the_ttl(store: StatePersistence, clock: FakeClock) -> None:
    store.save_with_metadata({"v": 1}, "s", ttl_seconds=100)
    clock.advance(90)
    store.save_with_metadata({"v": 2}, "s", ttl_seconds=100)
    clock.advance(90)
    assert store.load_with_metadata("s") is not None
    store.save_with_metadata({"v": 3}, "s")  # no TTL, no default: lives forever
    clock.advance(10_000)
    loaded = store.load_with_metadata("s")
    assert loaded is not None and loaded[1].expires_at is None


def test_default_ttl_applies_when_a_save_names_none(make_store, clock: FakeClock) -> None:
    store = make_store(clock=clock, default_ttl=60)
    assert store.save_with_metadata({"v": 1}, "s").ttl_seconds == 60
    assert store.save_with_metadata({"v": 1}, "t", ttl_seconds=600).ttl_seconds == 600
    clock.advance(61)
    assert store.load_with_metadata("s") is None
    assert store.load_with_metadata("t") is not None


def test_saving_to_an_expired_state_starts_afresh(store: StatePersistence, clock) -> None:
    store.save_with_metadata({"v": 1}, "s", ttl_seconds=10, tags=["old"])
    store.save_with_metadata({"v": 2}, "s", ttl_seconds=10)
    clock.advance(11)
    meta = store.save_with_metadata({"v": "new"}, "s")
    assert meta.version == 1
    assert meta.tags == ()
    assert versions_of(store, "s") == [1]
    assert store.search_by_tags(["old"]) == []


def test_purge_expired_removes_only_expired_states_and_is_idempotent(
    store: StatePersistence, clock: FakeClock
) -> None:
    for i in range(7):
        store.save_with_metadata({"i": i}, f"exp-{i}", ttl_seconds=5, tags=["x"])
    for i in range(3):
        store.save_with_metadata({"i": i}, f"live-{i}", tags=["x"])
    clock.advance(6)
    removed = 0
    while batch := store.purge_expired(limit=3):
        assert batch <= 3
        removed += batch
    assert removed == 7
    assert store.purge_expired() == 0
    assert list(store.list_states()) == ["live-0", "live-1", "live-2"]
    assert store.get_stats()["total_versions"] == 3


# ---------------------------------------------------------------- versions and pruning


def test_pruning_keeps_the_newest_max_versions(make_store, clock: FakeClock) -> None:
    store = make_store(clock=clock, max_versions=3)
    for n in range(1, 8):
        store.save_with_metadata({"n": n}, "s")
    assert versions_of(store, "s") == [5, 6, 7]
    with pytest.raises(VersionPrunedError) as info:
        store.load_with_metadata("s", version=2)
    assert info.value.oldest_kept == 5


def test_versioning_off_keeps_only_the_latest_but_numbers_count_up(
    make_store, clock: FakeClock
) -> None:
    store = make_store(clock=clock, enable_versioning=False)
    for n in range(1, 5):
        assert store.save_with_metadata({"n": n}, "s").version == n
    assert versions_of(store, "s") == [4]


def test_prune_versions_applies_a_new_limit_and_is_idempotent(make_store, clock: FakeClock) -> None:
    store = make_store(clock=clock, max_versions=None)
    for sid in ("a", "b"):
        for n in range(10):
            store.save_with_metadata({"n": n}, sid)
    store.save_with_metadata({"n": 0}, "c")
    assert store.prune_versions(max_versions=3) == 14
    assert store.prune_versions(max_versions=3) == 0
    assert versions_of(store, "a") == [8, 9, 10]
    assert versions_of(store, "c") == [1]


def test_list_versions_is_oldest_first_with_metadata(store: StatePersistence) -> None:
    store.save_with_metadata({"v": 1}, "s", tags=["a"], metadata={"m": 1})
    store.save_with_metadata({"v": 2}, "s", tags=["b"], metadata={"m": 2})
    listed = store.list_versions("s")
    assert [(m.version, m.tags, m.metadata) for m in listed] == [
        (1, ("a",), {"m": 1}),
        (2, ("b",), {"m": 2}),
    ]
    assert all(isinstance(m, StateMetadata) for m in listed)


# ---------------------------------------------------------------- deleting


def test_delete_version_and_state(store: StatePersistence) -> None:
    store.save_with_metadata({"v": 1}, "s", tags=["one"])
    store.save_with_metadata({"v": 2}, "s", tags=["two"])
    assert store.delete_version("s", 2) is True
    assert store.delete_version("s", 2) is False
    loaded = store.load_with_metadata("s")
    assert loaded is not None and loaded[0] == {"v": 1}
    assert [m.state_id for m in store.search_by_tags(["one"])] == ["s"]
    assert store.search_by_tags(["two"]) == []
    assert store.delete_state("s") is True
    assert store.delete_state("s") is False
    assert store.load_with_metadata("s") is None
    assert list(store.list_states()) == []


def test_deleting_the_last_version_deletes_the_state(store: StatePersistence) -> None:
    store.save_with_metadata({"test": "value"}, "health_check", version=1)
    assert store.delete_version("health_check", version=1) is True
    assert store.load_with_metadata("health_check") is None
    assert list(store.list_states()) == []
    # the seed's health check runs again and again with version=1
    assert store.save_with_metadata({"test": "value"}, "health_check", version=1).version == 1


# ---------------------------------------------------------------- listing and search


def test_list_states_is_paged_sorted_and_filtered_by_prefix(store: StatePersistence) -> None:
    ids = [f"user:{i:03d}" for i in range(25)] + ["job:1", "job:2", "user%x", "user_y"]
    store.save_many([{"state_id": sid, "state": {"id": sid}} for sid in ids])
    assert list(store.list_states(page_size=4)) == sorted(ids)
    assert list(store.list_states("user:", page_size=7)) == sorted(ids[:25])
    assert list(store.list_states("user%")) == ["user%x"]
    assert list(store.list_states("user_")) == ["user_y"]
    assert list(store.list_states("zzz")) == []


def test_prefixes_ending_at_the_edges_of_unicode_select_exactly_their_ids(
    store: StatePersistence,
) -> None:
    """A prefix ending in U+10FFFF has no next character to bound its range with, and the
    one after U+D7FF is U+E000: the surrogates between cannot be stored."""
    top, below_surrogates = "\U0010ffff", "\ud7ff"
    ids = ["a" + top, "a" + top + "x", "a" + top * 2, "b", top, top + "z", "a\ud7ffq", "a\ue000"]
    store.save_many([{"state_id": sid, "state": {}} for sid in ids])
    under_a_top = ["a" + top, "a" + top + "x", "a" + top * 2]  # "x" sorts before U+10FFFF
    assert list(store.list_states("a" + top)) == under_a_top
    assert list(store.list_states(top)) == [top, top + "z"]
    assert list(store.list_states("a" + below_surrogates)) == ["a\ud7ffq"]
    page = store.page_states(prefix="a" + top, limit=10)
    assert [s.state_id for s in page.items] == under_a_top


# Whole seconds, and a clock finer than the microsecond cursors carry (as real clocks are): a
# store keeping the finer time would repeat or skip states at page boundaries by update time.
CLOCK_STEPS = [1.0, 0.001234567]


@pytest.mark.parametrize("step", CLOCK_STEPS)
@pytest.mark.parametrize("order", ["id", "-id", "updated", "-updated"])
def test_page_states_visits_every_state_once_in_order(
    store: StatePersistence, clock: FakeClock, order: str, step: float
) -> None:
    ids = [f"s{i:02d}" for i in range(23)]
    for n, sid in enumerate(reversed(ids)):
        clock.advance(step)
        store.save_with_metadata({"n": n}, sid, tags=["even" if n % 2 == 0 else "odd"])
    seen, cursor = [], None
    while True:
        page = store.page_states(order=order, cursor=cursor, limit=5)
        seen.extend(s.state_id for s in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    by_id = sorted(ids)
    expected = {
        "id": by_id,
        "-id": by_id[::-1],
        "updated": ids[::-1],
        "-updated": ids,
    }[order]
    assert seen == expected


@pytest.mark.parametrize("order", ["id", "-id"])
def test_paging_by_id_shows_a_state_saved_between_pages_once(
    store: StatePersistence, clock: FakeClock, order: str
) -> None:
    """GUARANTEES: in id order a state appears at most once, saved between pages or not (in
    time order it moves to its new time, and may appear there again)."""
    ids = [f"s{i:02d}" for i in range(12)]
    for sid in ids:
        store.save_with_metadata({}, sid)
    page = store.page_states(order=order, limit=5)
    seen = [s.state_id for s in page.items]
    clock.advance(1)
    for sid in (seen[0], ids[-1] if order == "id" else ids[0]):  # one shown, one still ahead
        store.save_with_metadata({"again": True}, sid)
    while page.next_cursor is not None:
        page = store.page_states(order=order, limit=5, cursor=page.next_cursor)
        seen.extend(s.state_id for s in page.items)
    assert seen == sorted(ids, reverse=order == "-id")


@pytest.mark.parametrize("step", CLOCK_STEPS)
@pytest.mark.parametrize("order", ["id", "-id", "updated", "-updated"])
@pytest.mark.parametrize("tags", [None, ["odd"]])
def test_page_states_walks_back_with_prev_cursor(
    store: StatePersistence, clock: FakeClock, order: str, tags: list[str] | None, step: float
) -> None:
    for n in range(23):
        clock.advance(step)
        store.save_with_metadata(
            {"n": n}, f"s{(n * 7) % 23:02d}", tags=["odd" if n % 2 else "even"]
        )
    forward, cursor = [], None
    while True:
        page = store.page_states(order=order, tags=tags, cursor=cursor, limit=4)
        assert (page.prev_cursor is None) == (cursor is None)
        forward.append([s.state_id for s in page.items])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(forward) > 2
    backward, before = [], page.prev_cursor
    while before is not None:
        page = store.page_states(order=order, tags=tags, before=before, limit=4)
        backward.append([s.state_id for s in page.items])
        assert page.next_cursor is not None  # there is always the page we came back from
        before = page.prev_cursor
    assert backward == forward[-2::-1]
    # Forward again from a page reached backwards continues where it should.
    again = store.page_states(order=order, tags=tags, cursor=page.next_cursor, limit=4)
    assert [s.state_id for s in again.items] == forward[1]


@pytest.mark.parametrize("order", ["id", "-id", "updated", "-updated"])
@pytest.mark.parametrize("prefix", ["a1", "a"])  # a narrow and a broad prefix
@pytest.mark.parametrize("tags", [None, ["odd"]])
def test_page_states_prefix_in_every_order(
    store: StatePersistence, clock: FakeClock, order: str, prefix: str, tags: list[str] | None
) -> None:
    # Ids saved in a scrambled order, so a narrow prefix's states are neither the newest nor
    # adjacent in time: a store must not assume either.
    ids = [f"{c}{i:02d}" for c in "ab" for i in range(15)]
    saved = [ids[(n * 7) % len(ids)] for n in range(len(ids))]
    for n, sid in enumerate(saved):
        clock.advance(1)
        store.save_with_metadata({"n": n}, sid, tags=["odd" if n % 2 else "even"])
    odd = {sid for n, sid in enumerate(saved) if n % 2}
    wanted = [sid for sid in saved if sid.startswith(prefix) and (tags is None or sid in odd)]
    expected = {
        "id": sorted(wanted),
        "-id": sorted(wanted, reverse=True),
        "updated": wanted,
        "-updated": wanted[::-1],
    }[order]
    seen, cursor = [], None
    while True:
        page = store.page_states(prefix=prefix, tags=tags, order=order, cursor=cursor, limit=3)
        seen.extend(s.state_id for s in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected


def test_an_emptied_page_still_leads_back(store: StatePersistence) -> None:
    # An operator on page 2 whose neighbours are deleted meanwhile is never left on a dead
    # end: Previous gives the first page, and an emptied next page links back.
    for n in range(6):
        store.save_with_metadata({"n": n}, f"s{n}")
    second = store.page_states(cursor=store.page_states(limit=2).next_cursor, limit=2)
    assert [s.state_id for s in second.items] == ["s2", "s3"]
    for sid in ("s0", "s1", "s4", "s5"):
        store.delete_state(sid)
    first = store.page_states(before=second.prev_cursor, limit=2)
    assert [s.state_id for s in first.items] == ["s2", "s3"]  # the first page, filled up
    assert first.prev_cursor is None and first.next_cursor is None
    after = store.page_states(cursor=second.next_cursor, limit=2)
    assert after.items == [] and after.next_cursor is None
    assert after.prev_cursor is not None
    back = store.page_states(before=after.prev_cursor, limit=2)
    assert [s.state_id for s in back.items] == ["s2", "s3"]


def test_page_states_refuses_cursor_and_before_together(store: StatePersistence) -> None:
    for n in range(3):
        store.save_with_metadata({"n": n}, f"s{n}")
    cursor = store.page_states(limit=1).next_cursor
    with pytest.raises(ValueError, match="not both"):
        store.page_states(cursor=cursor, before=cursor, limit=1)
    with pytest.raises(ValueError, match="before is not one this store returned"):
        store.page_states(before="not-a-cursor")


def _forged(key: Any, state_id: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([key, state_id])).decode()


@pytest.mark.parametrize(
    ("order", "cursor"),
    [
        ("updated", "id cursor"),  # a cursor of another order
        ("id", "updated cursor"),
        ("id", _forged("zzz", "a")),  # tampered: an id order's key is its id
        ("id", _forged("a\x00", "a\x00")),  # no state has such an id
        ("-updated", _forged(2**63, "a")),  # no write time is that far off
        ("updated", _forged(True, "a")),
        ("updated", _forged(1e300, "a")),
        ("updated", _forged(3e11, "a")),  # past the year 9999
        ("updated", _forged("1.5", "a")),
        ("id", _forged(["a"], "a")),
    ],
)
def test_a_cursor_that_is_not_this_orders_is_refused_alike_everywhere(
    store: StatePersistence, order: str, cursor: str
) -> None:
    for sid in ("a", "b", "c"):
        store.save_with_metadata({}, sid)
    real = {
        "id cursor": store.page_states(order="id", limit=1).next_cursor,
        "updated cursor": store.page_states(order="updated", limit=1).next_cursor,
    }
    cursor = real.get(cursor, cursor)
    for where in ("cursor", "before"):
        with pytest.raises(ValueError, match=f"{where} is not one this store returned"):
            store.page_states(order=order, **{where: cursor})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cursor must be a str"):
        store.page_states(cursor=123)  # type: ignore[arg-type]
    assert [s.state_id for s in store.page_states(order="id").items] == ["a", "b", "c"]


def test_page_states_summaries_filters_and_bad_cursor(store: StatePersistence) -> None:
    store.save_with_metadata({"n": 1}, "a1", tags=["x", "y"], ttl_seconds=100)
    store.save_with_metadata({"n": 2}, "a1", tags=["x", "y"], ttl_seconds=100)
    store.save_with_metadata({"n": 1}, "a2", tags=["x"])
    store.save_with_metadata({"n": 1}, "b1", tags=["y"])
    page = store.page_states(prefix="a")
    assert [s.state_id for s in page.items] == ["a1", "a2"]
    first = page.items[0]
    assert (first.latest_version, first.version_count, first.tags) == (2, 2, ("x", "y"))
    assert first.expires_at is not None and first.size_bytes > 0
    assert [s.state_id for s in store.page_states(tags=["x", "y"]).items] == ["a1"]
    assert [s.state_id for s in store.page_states(tags=["x", "y"], match="any").items] == [
        "a1",
        "a2",
        "b1",
    ]
    assert [s.state_id for s in store.page_states(prefix="a", tags=["y"]).items] == ["a1"]
    with pytest.raises(ValueError, match="cursor"):
        store.page_states(cursor="not-a-cursor")
    with pytest.raises(ValueError, match="order"):
        store.page_states(order="size")  # type: ignore[arg-type]


def test_search_by_tags_all_and_any_returns_latest_versions(store: StatePersistence) -> None:
    store.save_with_metadata({"v": 1}, "s1", tags=["user", "session"])
    store.save_with_metadata({"v": 2}, "s1", tags=["user", "session", "active"])
    store.save_with_metadata({"v": 1}, "s2", tags=["user"])
    store.save_with_metadata({"v": 1}, "s3", tags=["other"])
    found = store.search_by_tags(["user", "session"])
    assert [(m.state_id, m.version) for m in found] == [("s1", 2)]
    assert [m.state_id for m in store.search_by_tags(["session", "other"], match="any")] == [
        "s1",
        "s3",
    ]
    assert store.search_by_tags(["nobody"]) == []
    assert len(store.search_by_tags(["user"], limit=1)) == 1
    with pytest.raises(ValueError, match="match"):
        store.search_by_tags(["user"], match="some")  # type: ignore[arg-type]


@pytest.mark.parametrize("match", ["all", "any"])
@pytest.mark.parametrize("tags", [["common", "rare"], ["rare", "common"], ["rare", "odd"]])
def test_search_by_tags_limit_gives_the_first_live_matches_by_id(
    store: StatePersistence, clock: FakeClock, match: str, tags: list[str]
) -> None:
    # Tags of very different sizes, with expired states among the first ids: a store that
    # walks one tag's index and stops at the limit must still give exactly the first live
    # matches, whichever tag is named first.
    live: dict[str, set[str]] = {}
    for i in range(40):
        sid, expiring = f"s{i:02d}", i < 12 and i % 3 == 0  # s00, s03, s06, s09
        carried = {"common"} | ({"rare"} if i % 7 == 3 else set()) | ({"odd"} if i % 2 else set())
        store.save_with_metadata(
            {"i": i}, sid, tags=sorted(carried), ttl_seconds=5 if expiring else None
        )
        if not expiring:
            live[sid] = carried
    clock.advance(10)
    want = set(tags)
    matching = sorted(sid for sid, t in live.items() if (want <= t if match == "all" else want & t))
    for limit in (1, 3, 100):
        found = store.search_by_tags(tags, match=match, limit=limit)  # type: ignore[arg-type]
        assert [m.state_id for m in found] == matching[:limit]


def test_list_tags_counts_states_by_latest_tags(store: StatePersistence) -> None:
    store.save_with_metadata({}, "a", tags=["x", "y"])
    store.save_with_metadata({}, "b", tags=["x"])
    store.save_with_metadata({}, "b", tags=["z"])
    assert store.list_tags() == [("x", 1), ("y", 1), ("z", 1)]
    store.save_with_metadata({}, "c", tags=["y"])
    assert store.list_tags()[0] == ("y", 2)


# ---------------------------------------------------------------- rollback


def test_rollback_writes_a_new_version_equal_to_the_old_and_keeps_history(
    store: StatePersistence,
) -> None:
    store.save_with_metadata({"v": 1}, "s", tags=["first"], metadata={"who": "a"})
    store.save_with_metadata({"v": 2}, "s", tags=["second"])
    meta = store.rollback("s", 1, metadata={"reason": "bad deploy"})
    assert meta.version == 3
    assert meta.tags == ("first",)
    assert meta.metadata == {"who": "a", "reason": "bad deploy", ROLLBACK_KEY: 1}
    loaded = store.load_with_metadata("s")
    assert loaded is not None and loaded[0] == {"v": 1}
    assert versions_of(store, "s") == [1, 2, 3]


def test_rollback_keeps_the_states_current_ttl(store: StatePersistence, clock: FakeClock) -> None:
    """A rollback restores content, not an old lifetime: a state made permanent stays so,
    and one given an expiry keeps it (counted again from the rollback, as on any save)."""
    store.save_with_metadata({"draft": 1}, "kept", ttl_seconds=600)
    store.save_with_metadata({"final": 1}, "kept")
    assert store.rollback("kept", 1).ttl_seconds is None
    store.save_with_metadata({"draft": 1}, "expiring")
    store.save_with_metadata({"final": 1}, "expiring", ttl_seconds=600)
    clock.advance(100)
    meta = store.rollback("expiring", 1)
    assert meta.ttl_seconds == 600
    assert meta.expires_at == meta.created_at + timedelta(seconds=600)
    clock.advance(601)
    assert store.exists("kept")
    assert not store.exists("expiring")


def test_rollback_to_a_missing_version_raises_and_writes_nothing(
    store: StatePersistence,
) -> None:
    store.save_with_metadata({"v": 1}, "s")
    with pytest.raises(StateNotFoundError):
        store.rollback("s", 7)
    with pytest.raises(StateNotFoundError):
        store.rollback("missing", 1)
    assert versions_of(store, "s") == [1]


# ---------------------------------------------------------------- checkpoints


def test_checkpoints_round_trip_and_go_with_their_state(store: StatePersistence) -> None:
    cid = store.create_checkpoint(
        state_id="workflow_123",
        checkpoint_data={"step": 5, "data": "checkpoint_data"},
        metadata={"workflow_name": "data_processing"},
    )
    other = store.create_checkpoint("workflow_123", {"step": 6})
    checkpoint = store.restore_checkpoint(cid)
    assert checkpoint is not None
    assert set(checkpoint) == {
        "checkpoint_id",
        "state_id",
        "checkpoint_data",
        "metadata",
        "created_at",
    }
    assert checkpoint["checkpoint_data"] == {"step": 5, "data": "checkpoint_data"}
    assert checkpoint["metadata"] == {"workflow_name": "data_processing"}
    assert checkpoint["state_id"] == "workflow_123"
    listed = store.list_checkpoints("workflow_123")
    assert {c["checkpoint_id"] for c in listed} == {cid, other}
    assert store.restore_checkpoint("0" * 32) is None
    assert store.delete_checkpoint(other) is True
    store.save_with_metadata({"v": 1}, "workflow_123")
    store.delete_state("workflow_123")
    assert store.restore_checkpoint(cid) is None
    assert store.list_checkpoints("workflow_123") == []


# ---------------------------------------------------------------- batches


def test_save_many_and_load_many(store: StatePersistence) -> None:
    states = [
        {"state_id": f"state_{i}", "state": {"data": str(i)}, "version": 1} for i in (1, 2, 3)
    ]
    saved = store.save_many(states)
    assert [(m.state_id, m.version) for m in saved] == [
        ("state_1", 1),
        ("state_2", 1),
        ("state_3", 1),
    ]
    loaded = store.load_many(["state_2", "missing", "state_1"])
    assert list(loaded) == ["state_2", "missing", "state_1"]
    assert loaded["missing"] is None
    assert loaded["state_2"] is not None and loaded["state_2"][0] == {"data": "2"}
    assert store.save_many([]) == []
    assert store.load_many([]) == {}


def test_save_many_is_all_or_nothing(store: StatePersistence) -> None:
    store.save_with_metadata({"v": 1}, "taken", version=3)
    with pytest.raises(VersionConflictError):
        store.save_many(
            [
                {"state_id": "fresh", "state": {"v": 1}},
                {"state_id": "taken", "state": {"v": 2}, "version": 2},
            ]
        )
    assert store.load_with_metadata("fresh") is None
    with pytest.raises(VersionConflictError) as info:  # v4 is this batch's, never written
        store.save_many(
            [{"state_id": "taken", "state": {}}, {"state_id": "taken", "state": {}, "version": 4}]
        )
    assert "counting the batch's earlier writes to it, would be 4" in str(info.value)
    assert store.load_with_metadata("taken")[1].version == 3  # type: ignore[index]
    with pytest.raises(TypeError, match=r"items\[1\]"):
        store.save_many([{"state_id": "fresh", "state": {}}, {"state_id": "x", "stat": {}}])
    assert store.load_with_metadata("fresh") is None


def test_save_many_same_state_twice_takes_consecutive_versions(store: StatePersistence) -> None:
    saved = store.save_many(
        [{"state_id": "s", "state": {"n": 1}}, {"state_id": "s", "state": {"n": 2}}]
    )
    assert [m.version for m in saved] == [1, 2]


# ---------------------------------------------------------------- idempotent writes


def test_a_retry_with_the_same_write_id_returns_the_first_version(
    store: StatePersistence,
) -> None:
    first = store.save_with_metadata({"n": 1}, "s", write_id="req-1")
    again = store.save_with_metadata({"n": 1}, "s", write_id="req-1")
    assert again.version == first.version == 1
    assert again.write_id == "req-1"
    assert store.save_with_metadata({"n": 2}, "s", write_id="req-2").version == 2
    assert (
        store.save_many([{"state_id": "s", "state": {"n": 2}, "write_id": "req-2"}])[0].version == 2
    )
    assert versions_of(store, "s") == [1, 2]


# ---------------------------------------------------------------- integrity


def test_a_corrupt_version_raises_integrity_error_never_data(store: StatePersistence) -> None:
    store.save_with_metadata(BIG, "s")
    store.save_with_metadata({"v": 2}, "s")
    corrupt_version(store, "s", 1)
    with pytest.raises(StateIntegrityError, match="corrupt"):
        store.load_with_metadata("s", version=1)
    with pytest.raises(StateIntegrityError):
        store.rollback("s", 1)
    assert versions_of(store, "s") == [1, 2]  # metadata is still listed for inspection
    loaded = store.load_with_metadata("s")
    assert loaded is not None and loaded[0] == {"v": 2}


# ---------------------------------------------------------------- stats


def test_get_stats_reports_configuration_counts_and_operations(
    make_store, clock: FakeClock
) -> None:
    store = make_store(
        clock=clock, compression_type=CompressionType.ZLIB, max_versions=4, default_ttl=3600
    )
    store.save_with_metadata(BIG, "a")
    store.save_with_metadata(BIG, "a")
    store.load_with_metadata("a")
    stats = store.get_stats()
    assert stats["backend_type"] == store.backend_type
    assert stats["compression_type"] == "zlib"
    assert stats["versioning_enabled"] is True
    assert stats["max_versions"] == 4
    assert stats["default_ttl"] == 3600
    assert (stats["total_states"], stats["total_versions"]) == (1, 2)
    assert stats["original_bytes"] > stats["stored_bytes"] > 0
    assert stats["compression_ratio"] > 10
    ops = stats["operations"]
    assert ops["save"]["calls"] == 2 and ops["load"]["calls"] == 1
    assert ops["save"]["p50_ms"] <= ops["save"]["p99_ms"]


# ---------------------------------------------------------------- bad input


BAD_CALLS = [
    ("state_id", {"state_id": ""}, ValueError),
    ("state_id", {"state_id": "x" * 257}, ValueError),
    ("state_id", {"state_id": "a\x00b"}, ValueError),
    ("state_id", {"state_id": "line\nbreak"}, ValueError),
    ("state_id", {"state_id": 42}, TypeError),
    ("state_id", {"state_id": None}, TypeError),
    ("tags", {"tags": "user"}, TypeError),
    ("tags", {"tags": [""]}, ValueError),
    ("tags", {"tags": ["a\tb"]}, ValueError),
    ("tags", {"tags": ["t" * 129]}, ValueError),
    ("tags", {"tags": [f"t{i}" for i in range(65)]}, ValueError),
    ("tags", {"tags": [1]}, TypeError),
    ("tags", {"tags": {"a": 1}}, TypeError),  # a mapping is not a list of tags
    ("version", {"version": True}, TypeError),
    ("version", {"version": 0}, ValueError),
    ("version", {"version": -1}, ValueError),
    ("version", {"version": "2"}, TypeError),
    ("version", {"version": 2.0}, TypeError),
    ("ttl_seconds", {"ttl_seconds": True}, TypeError),
    ("ttl_seconds", {"ttl_seconds": 0}, ValueError),
    ("ttl_seconds", {"ttl_seconds": -5}, ValueError),
    ("ttl_seconds", {"ttl_seconds": "60"}, TypeError),
    ("ttl_seconds", {"ttl_seconds": 10**12}, ValueError),
    ("metadata", {"metadata": ["not", "a", "dict"]}, TypeError),
    ("metadata", {"metadata": {1: "x"}}, TypeError),
    ("metadata", {"metadata": {"x": float("nan")}}, ValueError),
    ("write_id", {"write_id": ""}, ValueError),
    ("state", {"state": ["not", "a", "dict"]}, TypeError),
    ("state", {"state": {"x": float("nan")}}, ValueError),
    ("state", {"state": {"x": float("inf")}}, ValueError),
    ("state", {"state": {"x": {1, 2}}}, TypeError),
    ("state", {"state": {1: "non-string key"}}, TypeError),
    ("state", {"state": {"x": (1, 2)}}, ValueError),
    ("state", {"state": {"when": datetime(2026, 1, 1)}}, TypeError),
    ("state", {"state": {"x": 2**64}}, TypeError),
    ("state", {"state": {"x": "\ud800"}}, ValueError),
    ("state", {"state": {"x": b"bytes"}}, TypeError),
]


@pytest.mark.parametrize(
    ("field", "override", "error"),
    BAD_CALLS,
    ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(BAD_CALLS)],
)
def test_bad_input_raises_a_clear_error_and_writes_nothing(
    store: StatePersistence, field: str, override: dict, error: type[Exception]
) -> None:
    store.save_with_metadata({"v": "before"}, "victim", tags=["keep"])
    call = {"state": {"v": "after"}, "state_id": "victim", "tags": ["new"]} | override
    with pytest.raises(error) as info:
        store.save_with_metadata(**call)
    assert field in str(info.value)
    loaded = store.load_with_metadata("victim")
    assert loaded is not None and loaded[0] == {"v": "before"} and loaded[1].version == 1
    assert versions_of(store, "victim") == [1]
    assert list(store.list_states()) == ["victim"]
    assert store.search_by_tags(["new"]) == []


def test_bad_arguments_of_other_calls_name_the_argument(
    store: StatePersistence, make_store: Callable[..., StatePersistence]
) -> None:
    with pytest.raises(TypeError, match="version"):
        store.load_with_metadata("s", version=True)
    with pytest.raises(ValueError, match="state_id"):
        store.list_versions("")
    with pytest.raises(TypeError, match="version"):
        store.delete_version("s", "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tags"):
        store.search_by_tags([])
    with pytest.raises(ValueError, match="limit"):
        store.purge_expired(limit=0)
    keeping_all = make_store(max_versions=None)
    with pytest.raises(TypeError, match="limit"):  # even with nothing to prune
        keeping_all.prune_versions(limit="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="checkpoint_data"):
        store.create_checkpoint("s", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="state_ids"):
        store.load_many("abc")
    for items in (None, 5, {"state_id": "s", "state": {}}):
        with pytest.raises(TypeError, match="items must be an iterable of mappings"):
            store.save_many(items)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order must be"):
        store.page_states(order=["id"])  # type: ignore[arg-type]
    big = {"x": "y" * 40_000}
    with pytest.raises(ValueError, match=r"metadata is 80[0-9]+ bytes as JSON, over the limit"):
        store.create_checkpoint("s", {}, metadata={**big, "z": "w" * 40_000})
    store.save_with_metadata({}, "s", metadata=big)
    with pytest.raises(ValueError, match=r"metadata \(version 1's, merged with the given\)"):
        store.rollback("s", 1, metadata={"z": "w" * 30_000})
    assert versions_of(store, "s") == [1] and store.list_checkpoints("s") == []


def test_hostile_but_valid_ids_and_tags_round_trip(store: StatePersistence) -> None:
    ids = ["{}", "*?[]", "%_\\", "a:b:{c}", "e\u0301", "\u00e9", "🚀 launch", "x" * 256]
    for sid in ids:
        store.save_with_metadata({"id": sid}, sid, tags=["{tag}", "*", "é"])
    assert sorted(store.list_states()) == sorted(ids)
    for sid in ids:
        loaded = store.load_with_metadata(sid)
        assert loaded is not None and loaded[0] == {"id": sid}
    assert len(store.search_by_tags(["{tag}", "*"])) == len(ids)
    assert list(store.list_states("*?")) == ["*?[]"]


# ---------------------------------------------------------------- concurrency


def test_threads_saving_one_state_lose_and_duplicate_no_version(make_store) -> None:
    store = make_store(max_versions=None)

    def writer(worker: int) -> None:
        for n in range(25):
            store.save_with_metadata({"worker": worker, "n": n}, "shared")

    assert run_threads(writer, 8) == []
    assert versions_of(store, "shared") == list(range(1, 201))
    states = [store.load_with_metadata("shared", version=v) for v in range(1, 201)]
    assert len({(s[0]["worker"], s[0]["n"]) for s in states if s}) == 200


@pytest.mark.parametrize("backend", DURABLE)
def test_a_reopened_store_sees_what_was_saved(make_store) -> None:
    first = make_store()
    first.save_with_metadata({"v": 1}, "durable", tags=["d"])
    first.close()
    second = make_store()
    loaded = second.load_with_metadata("durable")
    assert loaded is not None and loaded[0] == {"v": 1}
    assert second.save_with_metadata({"v": 2}, "durable").version == 2


def test_list_states_reads_the_store_a_page_at_a_time(make_store) -> None:
    """Never one huge reply: each round trip of the listing asks the backend for one page
    and gets at most that many ids."""
    store = make_store()
    store.save_many([{"state_id": f"p{i:02d}", "state": {"i": i}} for i in range(30)])
    pages: list[int] = []
    backend_page = store._list_ids

    def recorded(prefix: Any, after: Any, limit: int, now: float) -> list[str]:
        ids = backend_page(prefix, after, limit, now)
        assert len(ids) <= limit
        pages.append(len(ids))
        return ids

    store._list_ids = recorded  # type: ignore[method-assign]
    assert list(store.list_states(page_size=7)) == [f"p{i:02d}" for i in range(30)]
    assert pages[:5] == [7, 7, 7, 7, 2]


def test_a_store_dropped_without_close_is_freed_at_once(backend: str, tmp_path: Path) -> None:
    """No reference cycle holds a store: its file or pool goes with its last reference, not
    when the cycle collector next runs."""
    where = str(tmp_path / "dropped.db") if backend == "sqlite" else f"t{uuid.uuid4().hex[:12]}"
    try:
        store = open_store(backend, where)
    except ConnectionError as exc:
        server_missing(backend, exc)
    connections = getattr(store, "_conns", None)  # to close a pool's threads afterwards
    gone = weakref.ref(store)
    gc.disable()
    try:
        del store
        assert gone() is None
    finally:
        gc.enable()
        if connections is not None:
            connections.close()
        drop_store(backend, where)


@pytest.mark.parametrize("backend", DURABLE)
def test_a_closed_store_refuses_every_call_and_says_so(make_store) -> None:
    """Using a store after close() is a mistake to report at once, alike on every backend
    with connections (redis-py would otherwise quietly reconnect); the data is untouched."""
    store = make_store()
    store.save_with_metadata({"v": 1}, "kept", tags=["t"])
    with store:  # the context manager closes it too
        pass
    store.close()  # closing again is harmless
    calls = {
        "save": lambda: store.save_with_metadata({"v": 2}, "kept"),
        "save_many": lambda: store.save_many([{"state_id": "other", "state": {}}]),
        "load": lambda: store.load_with_metadata("kept"),
        "load_many": lambda: store.load_many(["kept"]),
        "list_versions": lambda: store.list_versions("kept"),
        "page_states": lambda: store.page_states(),
        "search_by_tags": lambda: store.search_by_tags(["t"]),
        "count_states": lambda: store.count_states(),
        "delete_state": lambda: store.delete_state("kept"),
        "get_stats": lambda: store.get_stats(),
    }
    for name, call in calls.items():
        with pytest.raises(BackendUnavailableError, match="was closed") as raised:
            call()
        assert "open another with connect()" in str(raised.value), name
    loaded = make_store().load_with_metadata("kept")
    assert loaded is not None and loaded[0] == {"v": 1}
