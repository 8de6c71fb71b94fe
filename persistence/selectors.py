"""Reads for the dashboard: each takes an open store and returns plain records for a template.

Nothing here writes. Everything that could touch a whole store (charts, counts) is bounded:
listing goes through ``page_states`` by cursor, and the stats charts sample a fixed number of
states and say so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from django.core.cache import cache

from persistence import diff
from persistence.errors import StateIntegrityError
from persistence.store import StatePersistence
from persistence.types import Page, StateMetadata, StateOrder, StateSummary, TagMatch

PAGE_SIZE = 50
TIMELINE_PAGE = 20
SAMPLE_LIMIT = 5000
DIFF_CACHE_SECONDS = 24 * 3600
TREE_MAX_BYTES = 512 * 1024  # above this the JSON tree is replaced by capped plain text


def store_now(store: StatePersistence) -> datetime:
    """The store's idea of now (tests run stores on a fake clock)."""
    return datetime.fromtimestamp(store.clock(), tz=UTC)


# ------------------------------------------------------------------ states listing


@dataclass(frozen=True)
class StateRow:
    summary: StateSummary
    ttl_remaining: float | None


@dataclass(frozen=True)
class StateQuery:
    """What the states page lists: the filters and the page of them (a cursor or the one
    before a cursor)."""

    prefix: str | None = None
    tags: tuple[str, ...] = ()
    match: TagMatch = "any"
    order: StateOrder = "-updated"
    cursor: str | None = None
    before: str | None = None


def state_page(store: StatePersistence, query: StateQuery) -> Page[StateRow]:
    """One page of the states listing; raises ValueError for a cursor the store did not
    issue, or a filter it refuses."""
    page = store.page_states(
        prefix=query.prefix,
        tags=list(query.tags) or None,
        match=query.match,
        order=query.order,
        cursor=query.cursor,
        before=query.before,
        limit=PAGE_SIZE,
    )
    now = store_now(store)
    rows = [StateRow(s, s.ttl_remaining(now)) for s in page.items]
    return Page(items=rows, next_cursor=page.next_cursor, prev_cursor=page.prev_cursor)


def listable_page(
    store: StatePersistence, query: StateQuery
) -> tuple[Page[StateRow], StateQuery, str]:
    """The page ``query`` asks for, or the nearest one the store accepts: the first page of
    the same filters when the cursor is refused (stale, or from another order), and the
    first page unfiltered when a filter is. Returns the page, the query it answers and why
    it is not the one asked for ("" when it is)."""
    try:
        return state_page(store, query), query, ""
    except ValueError as exc:
        problem = str(exc)
    first = replace(query, cursor=None, before=None)
    try:
        return state_page(store, first), first, problem
    except ValueError:
        unfiltered = replace(first, prefix=None, tags=())
        return state_page(store, unfiltered), unfiltered, problem


TAGS_SHOWN = 1000  # the Tags page lists the most used; a page of more is no use to read


def most_used_tags(store: StatePersistence) -> tuple[list[Bar], bool]:
    """The tags page: the TAGS_SHOWN most used tags as bars of their state counts, and
    whether the store has more."""
    counts = store.list_tags(limit=TAGS_SHOWN + 1)
    return _bars(counts[:TAGS_SHOWN]), len(counts) > TAGS_SHOWN


TAG_CHOICES_SECONDS = 60


def tag_choices(
    store_name: str, store: StatePersistence, limit: int = 200
) -> list[tuple[str, int]]:
    """The most used tags for the filter's suggestions, cached for a minute: counting tags is
    an aggregate over the whole store on some backends (PostgreSQL), too dear for every
    keystroke of a search."""
    key = f"statehub:tag-choices:{store_name}:{limit}"
    found = cache.get(key)
    if found is None:
        found = store.list_tags(limit=limit)
        cache.set(key, found, TAG_CHOICES_SECONDS)
    return list(found)


# ------------------------------------------------------------------ one state


@dataclass
class StateView:
    """A state at one version, or why it cannot be shown (``corrupt``)."""

    state_id: str
    meta: StateMetadata
    versions: list[StateMetadata]  # oldest first, metadata only
    data: dict[str, Any] | None = None
    corrupt: str | None = None
    size_json: int = 0

    @property
    def latest(self) -> StateMetadata:
        return self.versions[-1]

    @property
    def is_latest(self) -> bool:
        return self.meta.version == self.latest.version

    @property
    def previous(self) -> StateMetadata | None:
        older = [v for v in self.versions if v.version < self.meta.version]
        return older[-1] if older else None

    @property
    def tree_too_large(self) -> bool:
        return too_large_for_tree(self.size_json)


def state_view(
    store: StatePersistence, state_id: str, version: int | None = None
) -> StateView | None:
    """The state at ``version`` (latest by default); None when it or the version is missing.

    A version that fails its checksum comes back with ``corrupt`` set and its metadata from
    ``list_versions``: its bytes are never shown as data.
    """
    versions = store.list_versions(state_id)
    if not versions:
        return None
    number = versions[-1].version if version is None else version
    meta = next((v for v in versions if v.version == number), None)
    if meta is None:
        return None
    view = StateView(state_id, meta, versions)
    try:
        loaded = store.load_with_metadata(state_id, number)
    except StateIntegrityError as exc:
        view.corrupt = str(exc)
        return view
    if loaded is None:  # expired or deleted between the two reads
        return None
    view.data, view.meta = loaded
    view.size_json = loaded[1].original_size
    return view


@dataclass(frozen=True)
class TimelineItem:
    meta: StateMetadata
    previous: int | None  # the kept version before this one, for "diff with previous"


@dataclass(frozen=True)
class Timeline:
    items: list[TimelineItem]  # newest first
    page: int
    pages: int


def timeline(
    versions: list[StateMetadata], page: int = 1, per_page: int = TIMELINE_PAGE
) -> Timeline:
    """One page of a state's versions, newest first (list_versions is already bounded by
    max_versions; paging keeps a long history readable)."""
    pages = max(1, math.ceil(len(versions) / per_page))
    page = min(max(1, page), pages)
    newest_first = [
        TimelineItem(meta, versions[i - 1].version if i > 0 else None)
        for i, meta in reversed(list(enumerate(versions)))
    ]
    start = (page - 1) * per_page
    return Timeline(newest_first[start : start + per_page], page, pages)


def state_json(
    store: StatePersistence, state_id: str, version: int | None = None
) -> tuple[bytes, StateMetadata] | None:
    """The state as indented JSON bytes (for download); raises StateIntegrityError."""
    loaded = store.load_with_metadata(state_id, version)
    if loaded is None:
        return None
    data, meta = loaded
    return orjson.dumps(data, option=orjson.OPT_INDENT_2), meta


def json_size(data: Any) -> int:
    """Bytes of ``data`` as compact JSON: what decides between the tree and capped text."""
    return len(orjson.dumps(data))


def too_large_for_tree(size_json: int) -> bool:
    """Whether data of ``size_json`` bytes is shown as capped text instead of the JSON tree
    (a state, a checkpoint): past it, rendering the tree costs seconds in the browser."""
    return size_json > TREE_MAX_BYTES


def pretty_text(data: Any, limit: int = TREE_MAX_BYTES) -> tuple[str, bool]:
    """Indented JSON capped at ``limit`` characters, and whether it was cut."""
    text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    return (text, False) if len(text) <= limit else (text[:limit], True)


# ------------------------------------------------------------------ diff


@dataclass
class VersionDiff:
    old: StateMetadata
    new: StateMetadata
    changes: list[diff.Change] = field(default_factory=list)
    changes_truncated: bool = False
    lines: diff.LineDiff | None = None
    cached: bool = False

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(c.kind for c in self.changes))


def _diff_key(old: StateMetadata, new: StateMetadata) -> str:
    return f"statehub:diff:v1:{old.checksum}:{new.checksum}"


def version_diff(
    store: StatePersistence, versions: list[StateMetadata], old: int, new: int
) -> VersionDiff | None:
    """The diff of two kept versions, cached by their checksums (versions never change).

    None when either version is not kept; StateIntegrityError when either is corrupt.
    """
    by_number = {v.version: v for v in versions}
    if old not in by_number or new not in by_number:
        return None
    old_meta, new_meta = by_number[old], by_number[new]
    key = _diff_key(old_meta, new_meta)
    hit = cache.get(key)
    if hit is not None:
        changes, truncated, lines = hit
        return VersionDiff(old_meta, new_meta, changes, truncated, lines, cached=True)
    sid = old_meta.state_id
    left = store.load_with_metadata(sid, old)
    right = store.load_with_metadata(sid, new)
    if left is None or right is None:
        return None
    changes, truncated = diff.changes(left[0], right[0])
    lines = diff.line_diff(diff.pretty(left[0]), diff.pretty(right[0]))
    cache.set(key, (changes, truncated, lines), DIFF_CACHE_SECONDS)
    return VersionDiff(old_meta, new_meta, changes, truncated, lines)


def default_pair(versions: list[StateMetadata]) -> tuple[int, int]:
    """Latest against the one before it (or itself when there is only one)."""
    latest = versions[-1].version
    previous = versions[-2].version if len(versions) > 1 else latest
    return previous, latest


VERSION_CHOICES = 200  # options in each of the diff page's version lists


def version_choices(
    versions: list[StateMetadata], chosen: Iterable[int], limit: int = VERSION_CHOICES
) -> list[StateMetadata | None]:
    """The versions a diff page offers to pick, newest first: all of them, or for a state with
    more than ``limit``, the newest three quarters of ``limit``, the oldest quarter and the
    ``chosen`` ones, with None where versions are left out. (Ten thousand options in each of
    two lists made a page of a megabyte that took seconds to render.)"""
    if len(versions) <= limit:
        return list(reversed(versions))
    newest = len(versions) - (limit - limit // 4)
    wanted = set(chosen)
    keep = set(range(newest, len(versions))) | set(range(limit // 4))
    keep |= {i for i, v in enumerate(versions) if v.version in wanted}
    out: list[StateMetadata | None] = []
    above = len(versions)  # the index of the last version added
    for i in sorted(keep, reverse=True):
        if i + 1 < above:
            out.append(None)
        out.append(versions[i])
        above = i
    return out


# ------------------------------------------------------------------ checkpoints


def checkpoints(store: StatePersistence, state_id: str) -> list[dict[str, Any]]:
    """The state's checkpoints with their data; raises StateIntegrityError if one is corrupt."""
    return store.list_checkpoints(state_id)


def checkpoint(store: StatePersistence, checkpoint_id: str) -> dict[str, Any] | None:
    return store.restore_checkpoint(checkpoint_id)


# ------------------------------------------------------------------ stats


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    percent: float  # of the largest bar, for the width
    note: str = ""


def _bars(items: Sequence[tuple[str, float]], note: str = "") -> list[Bar]:
    top = max((v for _, v in items), default=0) or 1
    return [Bar(label, value, round(100 * value / top, 1), note) for label, value in items]


@dataclass
class StoreSample:
    """Charts computed from the first ``limit`` states of the store (by id)."""

    sampled: int
    limit: int
    complete: bool  # the sample is the whole store
    size_buckets: list[Bar]
    version_buckets: list[Bar]
    expiring: list[Bar]
    largest: list[StateSummary]


_SIZE_EDGES = [
    (1024, "< 1 KB"),
    (10 * 1024, "1-10 KB"),
    (100 * 1024, "10-100 KB"),
    (1024 * 1024, "100 KB-1 MB"),
    (math.inf, "≥ 1 MB"),
]
_EXPIRY_EDGES = [
    (3600, "within 1 h"),
    (86400, "within 24 h"),
    (7 * 86400, "within 7 days"),
    (math.inf, "later"),
]


def sample_states(store: StatePersistence, limit: int = SAMPLE_LIMIT) -> StoreSample:
    """Size, version and expiry distributions over at most ``limit`` states (cursor pages)."""
    summaries: list[StateSummary] = []
    cursor: str | None = None
    while len(summaries) < limit:
        page = store.page_states(order="id", cursor=cursor, limit=min(1000, limit - len(summaries)))
        summaries.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    now = store_now(store)
    sizes: Counter[str] = Counter()
    versions: Counter[int] = Counter()
    expiring: Counter[str] = Counter()
    for s in summaries:
        sizes[next(label for edge, label in _SIZE_EDGES if s.original_size < edge)] += 1
        versions[s.version_count] += 1
        remaining = s.ttl_remaining(now)
        if remaining is not None:
            expiring[next(label for edge, label in _EXPIRY_EDGES if remaining < edge)] += 1
    largest = sorted(summaries, key=lambda s: s.original_size, reverse=True)[:10]
    return StoreSample(
        sampled=len(summaries),
        limit=limit,
        complete=cursor is None,
        size_buckets=_bars([(label, sizes[label]) for _, label in _SIZE_EDGES]),
        version_buckets=_bars([(str(n), versions[n]) for n in sorted(versions)]),
        expiring=_bars([(label, expiring[label]) for _, label in _EXPIRY_EDGES]),
        largest=largest,
    )


def tag_bars(store: StatePersistence, limit: int = 12) -> list[Bar]:
    return _bars([(tag, n) for tag, n in store.list_tags(limit=limit)])


def server_info(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The backend's own figures: every ``*_info`` dict get_stats returned."""
    return {k: v for k, v in stats.items() if k.endswith("_info") and isinstance(v, dict)}


# ------------------------------------------------------------------ audit log

AUDIT_PAGE = 50
AUDIT_TRAIL = 10


@dataclass(frozen=True)
class AuditFilter:
    """The audit page's query; empty fields do not filter."""

    user: str = ""
    action: str = ""
    outcome: str = ""
    store: str = ""
    state_id: str = ""
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AuditPage:
    entries: list[Any]
    next_cursor: int | None  # the id to continue below; keyset paging, newest first


def _audit_rows(query: AuditFilter) -> Any:
    from persistence.models import AuditEntry

    rows = AuditEntry.objects.all()
    if query.user:
        rows = rows.filter(username=query.user)
    if query.action:
        rows = rows.filter(action=query.action)
    if query.outcome:
        rows = rows.filter(outcome=query.outcome)
    if query.store:
        rows = rows.filter(store=query.store)
    if query.state_id:
        rows = rows.filter(state_id=query.state_id)
    if query.since:
        rows = rows.filter(at__gte=query.since)
    if query.until:
        rows = rows.filter(at__lt=query.until)
    return rows.order_by("-id")


def audit_page(query: AuditFilter, cursor: int | None = None, size: int = AUDIT_PAGE) -> AuditPage:
    """One page of the log, newest first, continuing below the id ``cursor``.

    Keyset paging on the primary key (ids grow with time): every page costs the same, however
    deep, and rows written meanwhile never shift a page."""
    rows = _audit_rows(query)
    if cursor:
        rows = rows.filter(id__lt=cursor)
    entries = list(rows.select_related(None)[: size + 1])
    more = len(entries) > size
    entries = entries[:size]
    return AuditPage(entries, entries[-1].pk if more and entries else None)


def rollback_actors(store: str, state_id: str, versions: Iterable[StateMetadata]) -> dict[int, str]:
    """Who wrote each of ``versions`` by a dashboard rollback, from the audit log, matched by
    number and write time. A version's own ``by`` metadata is whatever its writer put there;
    only this is known to be true."""
    from persistence.models import AuditEntry

    written = {meta.version: meta.created_at.timestamp() for meta in versions}
    rows = AuditEntry.objects.filter(
        store=store,
        state_id=state_id,
        action=AuditEntry.Action.ROLLBACK,
        outcome=AuditEntry.Outcome.OK,
        details__new_version__in=list(written),
    ).values_list("details", "username")
    return {
        details["new_version"]: username
        for details, username in rows
        if details.get("created_at") == written[details["new_version"]]
    }


def audit_trail(store: str, state_id: str, limit: int = AUDIT_TRAIL) -> list[Any]:
    """The last ``limit`` audit rows about one state, newest first."""
    return list(_audit_rows(AuditFilter(store=store, state_id=state_id))[:limit])


AUDIT_CSV_COLUMNS = (
    "id",
    "at",
    "username",
    "address",
    "action",
    "outcome",
    "store",
    "state_id",
    "version",
    "reason",
    "details",
)


def audit_csv_rows(query: AuditFilter) -> Any:
    """The filtered log as CSV rows (lists of text), header first, read in chunks."""
    yield list(AUDIT_CSV_COLUMNS)
    for entry in _audit_rows(query).iterator(chunk_size=2000):
        yield [
            _csv_cell(value)
            for value in (
                entry.pk,
                entry.at.isoformat(),
                entry.username,
                entry.address,
                entry.action,
                entry.outcome,
                entry.store,
                entry.state_id,
                "" if entry.version is None else entry.version,
                entry.reason,
                orjson.dumps(entry.details).decode() if entry.details else "",
            )
        ]


def _csv_cell(value: Any) -> str:
    """Text that a spreadsheet will not run as a formula (CSV injection)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# ------------------------------------------------------------------ users


@dataclass(frozen=True)
class UserRow:
    user: Any
    role: str | None
    manageable: bool  # whether the viewer may change this account (roles.can_manage)


def user_rows(viewer: Any) -> list[UserRow]:
    """Every account with its role, by username (two queries, whatever the count)."""
    from django.contrib.auth import get_user_model

    from persistence.roles import can_manage, highest

    rows = []
    for user in get_user_model().objects.order_by("username").prefetch_related("groups"):
        # The role assigned, shown for inactive accounts too (roles.role_of gives them none).
        role = "admin" if user.is_superuser else highest(g.name for g in user.groups.all())
        rows.append(UserRow(user, role, can_manage(viewer, user)))
    return rows
