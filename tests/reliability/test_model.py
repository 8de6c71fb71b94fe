"""Stateful model check: random sequences of save, load, list, delete_version, delete_state,
rollback, tag search, clock advances (FakeClock), prune and purge, run against a real backend
and against InMemoryStatePersistence (the semantics reference) side by side: 0 divergences.

Both stores share one FakeClock, so TTL visibility is decided by the store clock on both
(the Redis scripts receive ``now``). Every outcome is compared: return values field by field,
or the exception type. Sized by STATEHUB_HYPOTHESIS_EXAMPLES (examples // 20 sequences of up
to 25 steps: 100 sequences under CI, 10 locally).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from persistence import InMemoryStatePersistence, StateMetadata, StatePersistence
from tests.conftest import FakeClock, drop_store, open_store
from tests.reliability._support import fresh_where, hypothesis_examples, opened

pytestmark = pytest.mark.slow

START = 1_800_000_000.0
KEEP = 3
IDS = st.sampled_from(["a", "b", "c{x}", "d*"])
TAGS = st.sampled_from(["red", "green", "blue"])
VERSIONS = st.integers(min_value=1, max_value=10)
SEQUENCES = max(5, hypothesis_examples() // 20)


def _norm(value: Any) -> Any:
    """A comparable form of whatever a store call returned."""
    if isinstance(value, StateMetadata):
        return (
            value.state_id, value.version, value.created_at, value.size_bytes,
            value.original_size, value.compression_type, value.checksum, value.tags,
            value.ttl_seconds, value.expires_at, value.metadata, value.write_id,
        )  # fmt: skip
    if isinstance(value, tuple | list):
        return [_norm(v) for v in value]
    return value


class _Stores:
    """Hands each hypothesis example a fresh, empty real store on the shared clock."""

    def __init__(self, backend: str, tmp_path: Path, clock: FakeClock) -> None:
        self.backend, self.tmp_path, self.clock = backend, tmp_path, clock
        self.places: list[str] = []
        self.base = f"m{uuid.uuid4().hex[:10]}"
        self.shared: StatePersistence | None = None

    def fresh(self) -> StatePersistence:
        self.clock.now = START
        if self.backend == "postgres":  # one schema, emptied: creating one per example is slow
            if self.shared is None:
                self.places.append(f"m{uuid.uuid4().hex[:12]}")
                self.shared = open_store("postgres", self.places[-1], max_versions=KEEP,
                                         clock=self.clock)  # fmt: skip
            self._truncate(self.places[-1])
            return self.shared
        where = (
            str(self.tmp_path / f"m{len(self.places)}.db")
            if self.backend == "sqlite"
            else f"{self.base}-{len(self.places)}"
        )
        self.places.append(where)
        return open_store(self.backend, where, max_versions=KEEP, clock=self.clock)

    @staticmethod
    def _truncate(schema: str) -> None:
        import psycopg

        from tests.conftest import POSTGRES_DSN

        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f'TRUNCATE "{schema}".states, "{schema}".versions, "{schema}".checkpoints')

    def cleanup(self) -> None:
        if self.shared is not None:
            self.shared.close()
        if self.backend == "redis":  # one SCAN for every namespace of the test
            import redis

            from tests.conftest import REDIS_URL

            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(match=f"{self.base}-*", count=5000):
                client.delete(key)
            client.close()
            return
        for where in self.places:
            drop_store(self.backend, where)


@pytest.fixture
def stores(backend: str, tmp_path: Path) -> Iterator[_Stores]:
    with opened(backend, fresh_where(backend, tmp_path)):
        pass  # skips (locally) or fails (CI) when the server is down
    holder = _Stores(backend, tmp_path, FakeClock(START))
    try:
        yield holder
    finally:
        holder.cleanup()


def _machine(stores: _Stores) -> type[RuleBasedStateMachine]:
    class ModelComparison(RuleBasedStateMachine):
        @initialize()
        def open(self) -> None:
            self.clock = stores.clock
            self.real = stores.fresh()
            self.model = InMemoryStatePersistence(max_versions=KEEP, clock=self.clock)
            self.steps: list[str] = []

        def teardown(self) -> None:
            if getattr(self, "real", None) is not None and self.real is not stores.shared:
                self.real.close()

        def both(self, what: str, call: Callable[[StatePersistence], Any]) -> Any:
            self.steps.append(what)
            outcomes = []
            for store in (self.model, self.real):
                try:
                    outcomes.append(("returned", _norm(call(store))))
                except Exception as exc:
                    outcomes.append(("raised", type(exc).__name__))
            assert outcomes[1] == outcomes[0], (
                f"{stores.backend} diverged from the model at {what}\n"
                f"  model: {outcomes[0]}\n  {stores.backend}: {outcomes[1]}\n"
                f"  steps: {self.steps}"
            )
            return outcomes[0]

        @rule(
            sid=IDS,
            n=st.integers(0, 3),
            tags=st.one_of(st.none(), st.lists(TAGS, max_size=2)),
            ttl=st.sampled_from([None, None, 5, 30]),
            version=st.one_of(st.none(), VERSIONS),
            write_id=st.sampled_from([None, None, "w1", "w2"]),
            big=st.booleans(),
        )
        def save(self, sid: str, n: int, tags: list[str] | None, ttl: int | None,
                 version: int | None, write_id: str | None, big: bool) -> None:  # fmt: skip
            state = {"n": n, "pad": "abc" * 100 if big else ""}
            self.both(
                f"save({sid!r}, {state['n']}, tags={tags}, ttl={ttl}, version={version}, "
                f"write_id={write_id})",
                lambda s: s.save_with_metadata(state, sid, version=version, tags=tags,
                                               ttl_seconds=ttl, metadata={"n": n},
                                               write_id=write_id),
            )  # fmt: skip

        @rule(sid=IDS, version=st.one_of(st.none(), VERSIONS))
        def load(self, sid: str, version: int | None) -> None:
            self.both(f"load({sid!r}, {version})", lambda s: s.load_with_metadata(sid, version))

        @rule(sid=IDS)
        def list_versions(self, sid: str) -> None:
            self.both(f"list_versions({sid!r})", lambda s: s.list_versions(sid))

        @rule(sid=IDS, version=VERSIONS)
        def delete_version(self, sid: str, version: int) -> None:
            self.both(f"delete_version({sid!r}, {version})",
                      lambda s: s.delete_version(sid, version))  # fmt: skip

        @rule(sid=IDS)
        def delete_state(self, sid: str) -> None:
            self.both(f"delete_state({sid!r})", lambda s: s.delete_state(sid))

        @rule(sid=IDS, version=VERSIONS)
        def rollback(self, sid: str, version: int) -> None:
            self.both(f"rollback({sid!r}, {version})", lambda s: s.rollback(sid, version))

        @rule(tags=st.lists(TAGS, min_size=1, max_size=2), match=st.sampled_from(["all", "any"]))
        def search(self, tags: list[str], match: str) -> None:
            self.both(f"search({tags}, {match})", lambda s: s.search_by_tags(tags, match))

        @rule(seconds=st.sampled_from([1, 4, 5, 6, 29, 31, 100]))
        def advance(self, seconds: int) -> None:
            self.steps.append(f"advance({seconds})")
            self.clock.advance(seconds)

        @rule(keep=st.one_of(st.none(), st.integers(1, KEEP)))
        def prune(self, keep: int | None) -> None:
            self.both(f"prune_versions({keep})", lambda s: s.prune_versions(keep))

        @rule()
        def purge(self) -> None:
            self.both("purge_expired()", lambda s: s.purge_expired())

        @rule()
        def listing(self) -> None:
            self.both("list_states()", lambda s: list(s.list_states()))
            self.both("count_states()", lambda s: s.count_states())

    return ModelComparison


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgres"])
def test_random_operation_sequences_match_the_in_memory_model_with_0_divergences(
    stores: _Stores,
) -> None:
    run_state_machine_as_test(
        _machine(stores),
        settings=settings(
            max_examples=SEQUENCES,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
