"""Every dashboard page and partial on the in-memory store (the test double; no mocks)."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from html import unescape as html_unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import pytest
from django.test import Client
from django.urls import resolve, reverse

from persistence import StatePersistence, connect
from tests.corruption import damage_sqlite_pages
from tests.dashboard.conftest import htmx

pytestmark = pytest.mark.django_db


def url(name: str, *args: Any) -> str:
    return reverse(f"persistence:{name}", args=["default", *args])


def seed(store: StatePersistence) -> None:
    store.save_with_metadata({"step": 1, "msg": "hi"}, "run-1", tags=["agent", "vip"])
    store.save_with_metadata({"step": 2, "msg": "hi", "extra": [1]}, "run-1")
    store.save_with_metadata({"step": 3, "msg": "bye", "extra": [1, 2]}, "run-1")
    store.save_with_metadata({"n": 1}, "run-2", tags=["agent"], ttl_seconds=600)
    store.save_with_metadata({"n": 1}, "session-1", tags=["session"])


def corrupt(store: StatePersistence, state_id: str, version: int) -> None:
    versions = store._states[state_id].versions  # type: ignore[attr-defined]
    versions[version] = replace(versions[version], frame=b"garbage")


def snapshot(store: StatePersistence) -> list[Any]:
    return [
        (s.state_id, s.latest_version, s.version_count) for s in store.page_states(limit=1000).items
    ]


# ---------------------------------------------------------------- login and layout


def test_every_page_requires_login(store: StatePersistence) -> None:
    seed(store)
    for path in ("/", url("states"), url("state", "run-1"), url("stats"), url("tags")):
        response = Client().get(path)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_login_page_is_styled_and_logs_in(store: StatePersistence, user: Any) -> None:
    page = Client().get(reverse("login"))
    assert page.status_code == 200
    assert b'class="card login"' in page.content and b"app.css" in page.content
    response = Client().post(reverse("login"), {"username": "ops", "password": "pw-123-secret"})
    assert response.status_code == 302


def test_home_redirects_to_the_default_store(client: Client, store: StatePersistence) -> None:
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == url("states")


def test_layout_has_csrf_header_htmx_and_no_inline_script(
    client: Client, store: StatePersistence
) -> None:
    html = client.get(url("states")).content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    assert "htmx-2.min.js" in html and "statehub/app.js" in html
    assert "<script>" not in html and " onclick=" not in html
    assert reverse("persistence:workers") in html


# ---------------------------------------------------------------- states


def test_an_empty_store_says_it_is_empty(client: Client, store: StatePersistence) -> None:
    response = client.get(url("states"))
    assert response.status_code == 200
    assert b"This store is empty" in response.content


def test_states_lists_rows_with_columns(client: Client, configure: Any, clock: Any) -> None:
    store = configure(clock=clock)
    seed(store)
    clock.advance(30)
    html = client.get(url("states")).content.decode()
    for sid in ("run-1", "run-2", "session-1"):
        assert sid in html
    assert "v3" in html and "vip" in html
    assert "9m 30s" in html  # TTL remaining of run-2, by the store's clock


def test_a_prefix_search_lists_only_the_ids_that_start_with_it(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    html = client.get(url("states"), {"q": "run"}).content.decode()
    assert "run-1" in html and "run-2" in html and "session-1" not in html


@pytest.mark.parametrize(
    ("tags", "match", "expected"),
    [
        (["vip"], "any", {"run-1"}),
        (["agent"], "any", {"run-1", "run-2"}),
        (["vip", "session"], "any", {"run-1", "session-1"}),
        (["agent", "vip"], "all", {"run-1"}),
        (["vip", "session"], "all", set()),
    ],
)
def test_a_tag_filter_lists_states_with_any_or_all_of_the_tags(
    client: Client, store: StatePersistence, tags: list[str], match: str, expected: set[str]
) -> None:
    seed(store)
    response = client.get(url("states"), {"tag": tags, "match": match}, headers=htmx("rows"))
    shown = {s for s in ("run-1", "run-2", "session-1") if f">{s}</a>" in response.content.decode()}
    assert shown == expected


def test_the_states_list_sorts_by_id_both_ways(client: Client, store: StatePersistence) -> None:
    seed(store)
    html = client.get(url("states"), {"order": "-id"}).content.decode()
    assert html.index(">session-1<") < html.index(">run-2<") < html.index(">run-1<")
    html = client.get(url("states"), {"order": "id"}).content.decode()
    assert html.index(">run-1<") < html.index(">run-2<") < html.index(">session-1<")


def test_rows_partial_for_htmx(client: Client, store: StatePersistence) -> None:
    seed(store)
    response = client.get(url("states"), {"q": "run"}, headers=htmx("rows"))
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="rows"') and "<html" not in html
    assert 'id="filters"' not in html
    assert "HX-Request" in response["Vary"]


def test_content_partial_for_htmx_navigation(client: Client, store: StatePersistence) -> None:
    html = client.get(url("states"), headers=htmx("main")).content.decode()
    assert 'id="filters"' in html and "<html" not in html


def test_history_restore_gets_the_full_page(client: Client, store: StatePersistence) -> None:
    headers = {**htmx("main"), "HX-History-Restore-Request": "true"}
    assert b"<html" in client.get(url("states"), headers=headers).content


def test_a_cursor_leads_to_the_next_page_and_the_last_page_has_none(
    client: Client, store: StatePersistence
) -> None:
    store.save_many([{"state_id": f"s{i:03}", "state": {"i": i}} for i in range(60)])
    first = client.get(url("states"), {"order": "id"})
    page = first.context["page"]
    assert len(page.items) == 50 and page.next_cursor
    assert "Next page" in first.content.decode()
    second = client.get(url("states"), {"order": "id", "cursor": page.next_cursor})
    ids = [r.summary.state_id for r in second.context["page"].items]
    assert ids == [f"s{i:03}" for i in range(50, 60)]
    assert second.context["page"].next_cursor is None
    assert "Previous page" not in first.content.decode()
    html = second.content.decode()
    assert "Previous page" in html and "First page" in html
    back = client.get(url("states"), {"order": "id", "before": second.context["page"].prev_cursor})
    ids = [r.summary.state_id for r in back.context["page"].items]
    assert ids == [f"s{i:03}" for i in range(50)]
    assert back.context["page"].prev_cursor is None and back.context["page"].next_cursor
    assert "Previous page" not in back.content.decode()


def test_bad_cursor_is_a_message_not_an_error(client: Client, store: StatePersistence) -> None:
    seed(store)
    response = client.get(url("states"), {"cursor": "not-a-cursor"})
    assert response.status_code == 200
    assert b"Bad filter" in response.content and b"run-1" in response.content


# ---------------------------------------------------------------- state detail


def test_state_page_shows_metadata_tree_and_timeline(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    html = client.get(url("state", "run-1")).content.decode()
    assert "✓ verified" in html
    assert store.list_versions("run-1")[-1].checksum in html
    assert 'class="j-key"' in html and '"<bdi>bye</bdi>"' in html
    assert 'id="timeline"' in html and html.count("data-row") >= 3
    assert url("download", "run-1") in html
    assert "· 3 versions kept" in html and "(just now)" in html
    assert "no actions on this state yet" in html


def test_state_at_an_older_version(client: Client, store: StatePersistence) -> None:
    seed(store)
    html = client.get(url("state", "run-1"), {"v": 1}).content.decode()
    assert "older version" in html and "Roll back to v1" in html


def test_timeline_partial_and_paging(client: Client, configure: Any) -> None:
    store = configure(max_versions=None)
    for i in range(25):
        store.save_with_metadata({"i": i}, "long")
    response = client.get(url("state", "long"), {"page": 2}, headers=htmx("timeline"))
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="timeline"')
    assert "page 2 of 2" in html and ">v5</a>" in html and ">v6</a>" not in html


def test_a_long_timeline_jumps_to_its_newest_and_oldest_page(
    client: Client, configure: Any
) -> None:
    store = configure(max_versions=None)
    for i in range(100):  # 5 pages of 20
        store.save_with_metadata({"i": i}, "long")
    html = client.get(url("state", "long"), {"page": 3}, headers=htmx("timeline")).content.decode()
    assert 'href="?page=1" hx-get="?page=1"' in html and 'hx-push-url="true">⇤ Newest' in html
    assert 'href="?page=5" hx-get="?page=5"' in html and 'hx-push-url="true">Oldest ⇥' in html
    oldest = client.get(url("state", "long"), {"page": 5}, headers=htmx("timeline"))
    assert ">v1</a>" in oldest.content.decode() and "Oldest ⇥" not in oldest.content.decode()


def test_state_ids_with_slashes_and_odd_characters(client: Client, store: StatePersistence) -> None:
    sid = "tenant/a b?c#d"
    store.save_with_metadata({"x": 1}, sid)
    response = client.get(url("state", sid))
    assert response.status_code == 200 and response.context["view"].state_id == sid


DOT_IDS = ["junk/../victim", "report/../../delete/victim", "..", ".", "a/./b", "~..", "x/~~./y"]


STATE_PAGES = [
    "state",
    "download",
    "diff",
    "rollback",
    "delete_state",
    "delete_version",
    "checkpoints",
]


def links(response: Any, *starts: str) -> set[str]:
    """The URLs a page links to (href, hx-get, data-copy-url) that start with one of ``starts``."""
    found = re.findall(r'(?:href|hx-get|data-copy-url)="([^"]+)"', response.content.decode())
    return {html_unescape(u) for u in found if html_unescape(u).startswith(starts)}


def browsed(href: str) -> str:
    """The path a browser requests for a link: dot segments resolved, as htmx and redirects do."""
    return urlsplit(urljoin("http://testserver/s/default/", href)).path


@pytest.mark.parametrize("sid", DOT_IDS)
def test_links_of_an_id_with_dot_segments_stay_on_that_state(
    client: Client, store: StatePersistence, sid: str
) -> None:
    store.save_with_metadata({"me": 1}, sid)
    store.save_with_metadata({"me": 2}, sid)
    store.save_with_metadata({"victim": 1}, "victim")
    store.save_with_metadata({"victim": 2}, "victim")
    listed = links(client.get(url("states")), "/s/default/state/") - {url("state", "victim")}
    (link,) = listed
    page = client.get(browsed(link))
    assert page.status_code == 200 and page.context["view"].state_id == sid
    state_links = links(page, *(url(name, "x")[:-1] for name in STATE_PAGES))
    assert len(state_links) >= len(STATE_PAGES)
    for href in state_links:
        match = resolve(browsed(href))
        assert match.kwargs["state_id"] == sid, href
    # The redirect after a rollback, and the delete itself, reach this state and only it.
    done = client.post(browsed(url("rollback", sid)), {"version": "1", "write_id": "a" * 32})
    assert resolve(browsed(done["Location"])).kwargs["state_id"] == sid
    client.post(browsed(url("delete_state", sid)), {"reason": "test"})
    assert store.load_with_metadata(sid) is None
    assert store.load_with_metadata("victim") is not None


def test_ids_with_tildes_keep_the_urls_they_had(client: Client, store: StatePersistence) -> None:
    for sid in ("~a/b", "a/b", "x/~/y/~~"):
        store.save_with_metadata({"id": sid}, sid)
        assert url("state", sid) == f"/s/default/state/{sid}"
        assert client.get(url("state", sid)).context["view"].state_id == sid


def test_missing_state_is_a_404_page(client: Client, store: StatePersistence) -> None:
    response = client.get(url("state", "nope"))
    assert response.status_code == 404
    assert b"does not exist" in response.content and b"<html" in response.content


def test_missing_version_is_a_404(client: Client, store: StatePersistence) -> None:
    seed(store)
    assert client.get(url("state", "run-1"), {"v": 99}).status_code == 404


def test_expired_state_is_a_404(client: Client, configure: Any, clock: Any) -> None:
    store = configure(clock=clock)
    store.save_with_metadata({"a": 1}, "short", ttl_seconds=60)
    assert client.get(url("state", "short")).status_code == 200
    clock.advance(61)
    assert client.get(url("state", "short")).status_code == 404
    assert b">short<" not in client.get(url("states")).content


def test_corrupt_version_shown_as_corrupt_never_as_data(
    client: Client, store: StatePersistence
) -> None:
    store.save_with_metadata({"secret_marker": 1}, "bad", tags=["t1"])
    corrupt(store, "bad", 1)
    response = client.get(url("state", "bad"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "failed its integrity check" in html and "✗ failed" in html
    assert "secret_marker" not in html
    assert store.list_versions("bad")[0].checksum in html  # raw metadata still shown
    assert client.get(url("download", "bad")).status_code == 409


def test_download_is_a_json_attachment(client: Client, store: StatePersistence) -> None:
    seed(store)
    response = client.get(url("download", "run-1"), {"v": 2})
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="run-1.v2.json"'
    assert response.json() == {"step": 2, "msg": "hi", "extra": [1]}
    assert client.get(url("download", "nope")).status_code == 404


def test_large_state_is_shown_as_capped_text(client: Client, store: StatePersistence) -> None:
    store.save_with_metadata({"rows": ["x" * 100 for _ in range(8000)]}, "big")
    html = client.get(url("state", "big")).content.decode()
    assert 'class="code json-text"' in html and "data-jtree" not in html


def test_content_is_escaped(client: Client, store: StatePersistence) -> None:
    evil = "<script>alert(1)</script>"
    store.save_with_metadata({evil: evil}, f"x{evil}", tags=[evil], metadata={"m": evil})
    for path in (url("states"), url("state", f"x{evil}"), url("tags")):
        html = client.get(path).content.decode()
        assert evil not in html, path
        assert "&lt;script&gt;" in html


# ---------------------------------------------------------------- diff


def test_diff_defaults_to_latest_against_previous(client: Client, store: StatePersistence) -> None:
    seed(store)
    response = client.get(url("diff", "run-1"))
    html = response.content.decode()
    assert response.context["a"] == 2 and response.context["b"] == 3
    assert "$.msg" in html and "$.extra[1]" in html
    assert 'class="sbs mono"' in html


def test_diff_of_chosen_versions_is_cached(client: Client, store: StatePersistence) -> None:
    seed(store)
    first = client.get(url("diff", "run-1"), {"a": 1, "b": 3})
    assert not first.context["diff"].cached
    assert {c.path for c in first.context["diff"].changes} >= {"$.step", "$.extra"}
    second = client.get(url("diff", "run-1"), {"a": 1, "b": 3})
    assert second.context["diff"].cached


def test_diff_of_a_state_with_many_versions_offers_some_of_them(
    client: Client, configure: Any
) -> None:
    store = configure(max_versions=None)
    for n in range(1, 501):
        store.save_with_metadata({"n": n}, "long")
    response = client.get(url("diff", "long"), {"a": 120, "b": 480})
    assert response.status_code == 200
    (old_list,) = re.findall(r'<select id="a".*?</select>', response.content.decode())
    offered = [int(v) for v in re.findall(r'<option value="(\d+)"', old_list)]
    # the newest 150 and oldest 50, newest first, and both chosen versions, in order
    assert offered == [*range(500, 350, -1), 120, *range(50, 0, -1)]
    assert 'value="120" selected' in old_list
    assert old_list.count("<option disabled>") == 2  # one gap on each side of v120
    assert {c.path for c in response.context["diff"].changes} == {"$.n"}


def test_diff_with_a_corrupt_version(client: Client, store: StatePersistence) -> None:
    seed(store)
    corrupt(store, "run-1", 2)
    response = client.get(url("diff", "run-1"), {"a": 1, "b": 2})
    assert response.status_code == 200 and b"a version is corrupt" in response.content


def test_diff_of_unknown_versions_is_404_naming_the_missing_one(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    missing = client.get(url("diff", "run-1"), {"a": 1, "b": 42})
    text = html_unescape(missing.content.decode())
    assert missing.status_code == 404
    assert "has no version 42 (any more): versions 1 to 3 are kept" in text
    assert client.get(url("diff", "nope")).status_code == 404
    not_a_number = client.get(url("diff", "run-1"), {"a": "abc"})  # not the default pair
    assert not_a_number.status_code == 404
    assert "“abc” is not a version number" in html_unescape(not_a_number.content.decode())


def test_diff_of_a_big_state_is_capped(client: Client, store: StatePersistence) -> None:
    base = {f"k{i:05}": "v" * 60 for i in range(12000)}  # ~1 MB as JSON
    store.save_with_metadata(base, "huge")
    store.save_with_metadata(
        {f"k{i:05}": ("w" if i % 5 == 0 else "v") * 60 for i in range(12000)}, "huge"
    )
    response = client.get(url("diff", "huge"))
    result = response.context["diff"]
    assert result.changes_truncated and len(result.changes) == 1000
    assert result.lines.truncated
    assert b"there are more" in response.content
    # the badges say that they count only the changes shown
    assert (
        b'~1000 changed</span>\n    <span class="muted small">in the first 1000 changed paths'
        in (response.content)
    )


# ---------------------------------------------------------------- rollback and deletes


def test_rollback_confirmation_shows_diff_and_changes_nothing(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    response = client.get(url("rollback", "run-1"), {"to": 1})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Roll back to v1" in html and "$.msg" in html and 'name="reason"' in html
    assert len(store.list_versions("run-1")) == 3


def test_rollback_writes_a_new_version(client: Client, store: StatePersistence) -> None:
    seed(store)
    response = client.post(url("rollback", "run-1"), {"version": 1, "reason": "bad deploy"})
    assert response.status_code == 302 and response["Location"] == url("state", "run-1")
    state, meta = store.load_with_metadata("run-1")  # type: ignore[misc]
    assert meta.version == 4 and state == {"step": 1, "msg": "hi"}
    assert meta.metadata["reason"] == "bad deploy" and meta.metadata["by"] == "ops"
    assert meta.metadata["statehub.rollback_of"] == 1
    page = client.get(response["Location"]).content.decode()
    assert "Rolled back to version 1" in page and "rollback of v1" in page
    assert 'by <strong title="from the audit log"><bdi>ops</bdi></strong>' in page
    # its audit row, as an operator reads it: from v1 to the new v4, the write time as a date
    row = re.findall(r"<tr data-row>.*?</tr>", page.split('id="audit-h"', 1)[1], re.S)[0]
    written = meta.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert "1 → 4</td>" in row and f"created at: {written}</td>" in row


def test_a_rollback_claimed_in_metadata_is_not_shown_as_one_by_that_user(
    client: Client, store: StatePersistence
) -> None:
    """Anyone who writes states can put "by" in a version's metadata; the timeline names an
    operator only where the audit log recorded the rollback."""
    seed(store)
    forged = {"by": "ada", "reason": "approved", "statehub.rollback_of": 1}
    store.save_with_metadata({"step": 9}, "run-1", metadata=forged)
    html = client.get(url("state", "run-1")).content.decode()
    assert "“by” <bdi>ada</bdi> in metadata" in html and "“rollback of v<bdi>1</bdi>”" in html
    assert "from the audit log" not in html and 'class="badge">rollback' not in html
    # A real rollback's audit row does not vouch for the same number after a delete.
    assert client.post(url("rollback", "run-2"), {"version": 1}).status_code == 302  # v2
    assert "from the audit log" in client.get(url("state", "run-2")).content.decode()
    store.delete_state("run-2")
    store.save_with_metadata({"n": 1}, "run-2")
    store.save_with_metadata({"n": 2}, "run-2", metadata=forged)  # v2 again
    html = client.get(url("state", "run-2")).content.decode()
    assert "“by” <bdi>ada</bdi> in metadata" in html and "from the audit log" not in html


def test_the_same_rollback_form_sent_twice_writes_once(
    client: Client, store: StatePersistence
) -> None:
    """A stale confirmation page (Back after a rollback) or a resubmission carries the
    form's write_id: the second POST finds the version the first wrote, nothing more."""
    seed(store)
    form = client.get(url("rollback", "run-1"), {"to": 1}).content.decode()
    write_id = re.search(r'name="write_id" value="([0-9a-f]{32})"', form)
    assert write_id is not None
    fields = {"version": 1, "write_id": write_id.group(1), "seen": 3}
    first = client.post(url("rollback", "run-1"), fields, follow=True).content.decode()
    assert "new version 4 written" in first
    store.save_with_metadata({"step": 99}, "run-1")  # the state moves on meanwhile
    again = client.post(url("rollback", "run-1"), fields, follow=True).content.decode()
    assert "already done, as version 4; nothing was written now" in again
    assert [m.version for m in store.list_versions("run-1")] == [1, 2, 3, 4, 5]
    another = client.get(url("rollback", "run-1"), {"to": 1}).content.decode()
    assert write_id.group(1) not in another  # a fresh page is a new rollback
    forged = client.post(url("rollback", "run-1"), {"version": 1, "write_id": "a\x01b"})
    assert forged.status_code == 200 and "Enter a valid value" in forged.content.decode()
    assert len(store.list_versions("run-1")) == 5


def test_a_state_saved_after_the_confirmation_was_shown_is_confirmed_again(
    client: Client, store: StatePersistence
) -> None:
    """The operator reviewed what replacing v3 means; the application saved v4 meanwhile.
    Rolling back now would silently bury v4: say so and show the new diff instead."""
    seed(store)
    form = client.get(url("rollback", "run-1"), {"to": 1}).content.decode()
    assert f'action="{url("rollback", "run-1")}?to=1"' in form  # a login on the way keeps it
    write_id = re.search(r'name="write_id" value="([0-9a-f]{32})"', form)
    seen = re.search(r'name="seen" value="(\d+)"', form)
    assert write_id is not None and seen is not None and seen.group(1) == "3"
    store.save_with_metadata({"step": 4}, "run-1")
    fields = {"version": 1, "write_id": write_id.group(1), "seen": 3, "reason": "bad deploy"}
    again = client.post(url("rollback", "run-1"), fields).content.decode()
    assert "v4 is now its latest version, not v3. Nothing was rolled back" in html_unescape(again)
    assert [m.version for m in store.list_versions("run-1")] == [1, 2, 3, 4]
    assert 'name="seen" value="4"' in again and "bad deploy" in again  # the reason is kept
    assert 'name="warned" value="1"' in again
    done = client.post(url("rollback", "run-1"), {**fields, "seen": 4}, follow=True)
    assert "new version 5 written" in done.content.decode()


def test_a_state_that_keeps_changing_is_rolled_back_after_one_warning(
    client: Client, store: StatePersistence
) -> None:
    """An agent saving every second must not keep the operator confirming for ever."""
    seed(store)
    store.save_with_metadata({"step": 4}, "run-1")
    fields = {"version": 1, "write_id": "b" * 32, "seen": 3, "warned": "1"}
    done = client.post(url("rollback", "run-1"), fields, follow=True)
    assert "new version 5 written" in done.content.decode()


def test_a_target_pruned_by_a_save_after_the_page_was_shown_fails_audited(
    client: Client, configure: Any
) -> None:
    """Not "confirm again" with nothing to confirm: the service refuses the pruned target,
    writes its error row, and the state's page says why."""
    from persistence.models import AuditEntry

    store = configure(max_versions=3)
    seed(store)
    store.save_with_metadata({"step": 4}, "run-1")  # prunes v1
    fields = {"version": 1, "write_id": "c" * 32, "seen": 3}
    response = client.post(url("rollback", "run-1"), fields, follow=True)
    assert response.redirect_chain == [(url("state", "run-1"), 302)]
    assert "Rollback failed:" in response.content.decode()
    rows = AuditEntry.objects.exclude(action="login_success").values_list("action", "outcome")
    assert list(rows) == [("rollback", "error")]


def test_pages_are_not_kept_in_caches(client: Client, store: StatePersistence) -> None:
    """State data is not for shared caches, and Back must not show a cached confirmation."""
    seed(store)
    for name, args, query in [("states", (), {}), ("rollback", ("run-1",), {"to": 1})]:
        response = client.get(url(name, *args), query)
        assert "no-store" in response["Cache-Control"]


def test_no_htmx_debug_helper_replaces_the_page_under_debug(
    client: Client, store: StatePersistence, settings: Any
) -> None:
    """django-htmx's debug script (DEBUG only) swaps any 4xx answer in as the whole page;
    the 404s and 503s the dashboard shows in place need htmx's own handling."""
    settings.DEBUG = True
    html = client.get(url("states")).content.decode()
    assert "htmx-2.min.js" in html and "django-htmx.js" not in html
    assert '"historyCacheSize":0,"refreshOnHistoryMiss":true' in html  # Back asks the server


def test_a_rollback_target_pruned_meanwhile_leads_to_the_state_page(
    client: Client, store: StatePersistence
) -> None:
    """One message and the state's page with what it keeps now, not a second 404 page whose
    only way out is the list of states."""
    seed(store)
    assert store.prune_versions(max_versions=1) == 2  # a worker, after the page was shown
    response = client.post(url("rollback", "run-1"), {"version": 1}, follow=True)
    html = response.content.decode()
    assert response.redirect_chain == [(url("state", "run-1"), 302)]
    assert html.count("Rollback failed:") == 1 and "versions below 3 are no longer kept" in html
    assert "Roll back to v1" not in html  # no button offering the gone version again


def test_rollback_over_htmx_redirects_the_page(client: Client, store: StatePersistence) -> None:
    seed(store)
    response = client.post(url("rollback", "run-1"), {"version": 2}, headers=htmx())
    assert response.status_code == 200 and response["HX-Redirect"] == url("state", "run-1")


def test_rollback_to_a_missing_version_is_404(client: Client, store: StatePersistence) -> None:
    seed(store)
    assert client.get(url("rollback", "run-1"), {"to": 9}).status_code == 404
    assert client.post(url("rollback", "nope"), {"version": 1}).status_code == 404
    unnamed = client.get(url("rollback", "run-1"))
    assert unnamed.status_code == 404 and "Say which version" in unnamed.content.decode()


def test_rollback_to_a_corrupt_version_offers_no_button(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    client.get(url("rollback", "run-1"), {"to": 1})  # its diff is now cached
    corrupt(store, "run-1", 1)
    html = client.get(url("rollback", "run-1"), {"to": 1}).content.decode()
    assert "failed its integrity check, so it cannot be rolled back to" in html
    assert "Roll back to v1</button>" not in html


def test_rolling_back_away_from_a_corrupt_latest_version_is_offered(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    corrupt(store, "run-1", 3)
    html = client.get(url("rollback", "run-1"), {"to": 1}).content.decode()
    assert "a version is corrupt" in html  # the diff cannot be shown
    assert "Roll back to v1</button>" in html and "cannot be rolled back to" not in html
    assert client.post(url("rollback", "run-1"), {"version": 1}).status_code == 302
    assert store.list_versions("run-1")[-1].version == 4


def test_deleting_a_version_is_confirmed_first_and_keeps_the_others(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    confirm = client.get(url("delete_version", "run-1"), {"v": 2})
    assert confirm.status_code == 200 and b"Delete v2" in confirm.content
    assert len(store.list_versions("run-1")) == 3
    response = client.post(url("delete_version", "run-1"), {"version": 2})
    assert response.status_code == 302 and response["Location"] == url("state", "run-1")
    assert [v.version for v in store.list_versions("run-1")] == [1, 3]


def test_a_delete_that_another_page_won_says_so(
    client: Client, store: StatePersistence, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two pages delete the same version: the second learns it was already gone, whether the
    first finished before its listing (404) or between its listing and its delete."""
    seed(store)
    assert client.post(url("delete_version", "run-1"), {"version": 2}).status_code == 302
    late = client.post(url("delete_version", "run-1"), {"version": 2})
    assert late.status_code == 404 and "may have just been deleted" in late.content.decode()

    monkeypatch.setattr(store, "delete_version", lambda state_id, version: False)  # the race
    raced = client.post(url("delete_version", "run-1"), {"version": 3}, follow=True)
    assert "Version 3 was already gone: nothing deleted." in raced.content.decode()


def test_deleting_the_last_version_deletes_the_state(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    confirm = client.get(url("delete_version", "run-2"), {"v": 1})
    assert b"only" in confirm.content
    response = client.post(url("delete_version", "run-2"), {"version": 1})
    assert response["Location"] == url("states")
    assert store.load_with_metadata("run-2") is None


def test_deleting_a_state_is_confirmed_first_and_removes_it(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    assert client.get(url("delete_state", "run-1")).status_code == 200
    assert store.load_with_metadata("run-1") is not None
    response = client.post(url("delete_state", "run-1"), {"reason": "cleanup"})
    assert response.status_code == 302 and response["Location"] == url("states")
    assert store.load_with_metadata("run-1") is None
    assert b"Deleted state" in client.get(url("states")).content


def test_post_without_csrf_is_refused(store: StatePersistence, user: Any) -> None:
    seed(store)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    before = snapshot(store)
    assert strict.post(url("rollback", "run-1"), {"version": 1}).status_code == 403
    assert strict.post(url("delete_version", "run-1"), {"version": 1}).status_code == 403
    assert strict.post(url("delete_state", "run-1")).status_code == 403
    assert snapshot(store) == before


def test_get_never_mutates(client: Client, store: StatePersistence) -> None:
    seed(store)
    cid = store.create_checkpoint("run-1", {"c": 1})
    before = snapshot(store)
    for path, query in [
        (url("states"), {}),
        (url("state", "run-1"), {"v": 1}),
        (url("diff", "run-1"), {"a": 1, "b": 3}),
        (url("rollback", "run-1"), {"to": 1, "version": 1}),
        (url("delete_version", "run-1"), {"v": 1, "version": 1}),
        (url("delete_state", "run-1"), {}),
        (url("download", "run-1"), {}),
        (url("tags"), {}),
        (url("stats"), {}),
        (url("checkpoints", "run-1"), {}),
        (url("checkpoint", cid), {}),
    ]:
        assert client.get(path, query).status_code == 200, path
    assert snapshot(store) == before
    assert len(store.list_checkpoints("run-1")) == 1


def test_other_methods_are_refused(client: Client, store: StatePersistence) -> None:
    seed(store)
    assert client.post(url("state", "run-1")).status_code == 405
    assert client.delete(url("delete_state", "run-1")).status_code == 405


# ---------------------------------------------------------------- tags, checkpoints, stats


def test_tags_page_counts_and_links(client: Client, store: StatePersistence) -> None:
    seed(store)
    response = client.get(url("tags"))
    top = response.context["tags"][0]
    assert (top.label, top.value, top.percent) == ("agent", 2, 100)
    assert f"{url('states')}?tag=vip".encode() in response.content


def test_tags_page_says_when_it_shows_only_the_most_used(
    client: Client, store: StatePersistence, monkeypatch: Any
) -> None:
    from persistence import selectors

    monkeypatch.setattr(selectors, "TAGS_SHOWN", 3)
    for n in range(5):  # tag t0 on 5 states, t1 on 4, ... t4 on 1
        store.save_with_metadata({"n": n}, f"s{n}", tags=[f"t{i}" for i in range(n + 1)])
    html = client.get(url("tags")).content.decode()
    assert "the 3 most used tags" in html and "more tags than the 3 shown" in html
    assert [bar.label for bar in client.get(url("tags")).context["tags"]] == ["t0", "t1", "t2"]
    store.delete_state("s4")
    store.delete_state("s3")  # t3 and t4 gone: all 3 are shown, with no note
    html = client.get(url("tags")).content.decode()
    assert "3 tags in store" in html and "more tags than" not in html


def test_tags_page_empty(client: Client, store: StatePersistence) -> None:
    assert b"No tags yet" in client.get(url("tags")).content


def test_checkpoints_are_listed_and_opened_and_an_unknown_one_is_404(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    cid = store.create_checkpoint("run-1", {"phase": "planning"}, {"label": "before tools"})
    html = client.get(url("checkpoints", "run-1")).content.decode()
    assert cid[:12] in html and "before tools" in html and "planning" in html
    detail = client.get(url("checkpoint", cid)).content.decode()
    assert "planning" in detail and cid in detail
    assert client.get(url("checkpoint", "0" * 32)).status_code == 404
    assert b"no checkpoints" in client.get(url("checkpoints", "run-2")).content


def test_a_big_checkpoint_is_linked_from_the_list_and_shown_as_capped_text(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    big = {f"k{i}": "x" * 100_000 for i in range(8)}  # 781 KiB of JSON
    cid = store.create_checkpoint("run-1", big)
    small = store.create_checkpoint("run-1", {"phase": "planning"})
    listing = client.get(url("checkpoints", "run-1"))
    html = listing.content.decode()
    assert "781.3\xa0KB of JSON: open it" in html and "x" * 1000 not in html
    assert "planning" in html and len(html) < 100_000  # the small one's tree is inline
    detail = client.get(url("checkpoint", cid)).content.decode()
    assert "shown as plain text, cut at 512.0\xa0KB" in detail
    assert "&quot;k0&quot;: &quot;xxx" in detail
    assert len(detail) < 600_000
    assert "data-jtree" in client.get(url("checkpoint", small)).content.decode()


def test_tree_cuts_long_strings_and_shows_hidden_bidi_controls(
    client: Client, store: StatePersistence
) -> None:
    store.save_with_metadata({"שלום": 1, "note": "ok\u202eevil", "log": "y" * 5000}, "bidi")
    html = client.get(url("state", "bidi")).content.decode()
    assert "y" * 2000 + "</bdi>" in html and "y" * 2001 not in html
    assert "… 3,000 more characters" in html
    assert '"<bdi>ok\\u202eevil</bdi>"' in html and "\u202e" not in html
    assert '"<bdi>שלום</bdi>"' in html


def test_bidi_controls_are_shown_as_escapes_in_metadata_and_diffs(
    client: Client, store: StatePersistence
) -> None:
    store.save_with_metadata(
        {"note": "plain"}, "bidi", tags=["t\u202ex"], metadata={"by": "ops\u202eevil"}
    )
    store.save_with_metadata({"note": "ok\u2066x"}, "bidi")
    state = client.get(url("state", "bidi"), {"v": 1}).content.decode()
    diff = client.get(url("diff", "bidi")).content.decode()
    listing = client.get(url("states")).content.decode()
    tags = client.get(url("tags")).content.decode()
    for html in (state, diff):
        assert "\u202e" not in html and "\u2066" not in html
    # Tag chips too; the filter's suggestions keep the tag itself as the value to send.
    assert ">t\\u202ex</a>" in listing and ">t\\u202ex</a>" in tags
    assert "ops\\u202eevil" in state  # the metadata, as JSON
    assert "ok\\u2066x" in diff  # in the changes table and the side-by-side view


def test_the_stats_page_covers_the_whole_small_store_and_operations(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    response = client.get(url("stats"))
    html = response.content.decode()
    assert response.status_code == 200
    assert response.context["sample"].sampled == 3 and response.context["sample"].complete
    assert "all 3 states" in html and "memory_info" in html and ">save<" in html
    assert "hbar-fill" in html


def test_stats_sample_is_bounded(store: StatePersistence) -> None:
    from persistence import selectors

    store.save_many([{"state_id": f"s{i}", "state": {}} for i in range(30)])
    sample = selectors.sample_states(store, limit=10)
    assert sample.sampled == 10 and not sample.complete


def test_stats_on_empty_store(client: Client, store: StatePersistence) -> None:
    assert client.get(url("stats")).status_code == 200


# ---------------------------------------------------------------- stores


def test_store_down_shows_a_banner(client: Client, configure: Any) -> None:
    configure({"down": "redis://127.0.0.1:1/0"})
    for path in (
        reverse("persistence:states", args=["down"]),
        reverse("persistence:state", args=["down", "x"]),
    ):
        response = client.get(path)
        assert response.status_code == 503
        assert b"is unavailable" in response.content and b"<html" in response.content
    partial = client.get(reverse("persistence:states", args=["down"]), headers=htmx())
    assert partial.status_code == 503 and partial["X-Statehub-Message"]


def test_a_store_error_no_view_expects_shows_a_page_saying_so(
    client: Client, configure: Any, tmp_path: Path
) -> None:
    path = tmp_path / "damaged.db"
    seeded = connect(f"sqlite:///{path}")
    seeded.save_many([{"state_id": f"s{i}", "state": {"i": i}} for i in range(300)])
    seeded.close()
    damage_sqlite_pages(path)
    configure({"damaged": f"sqlite:///{path}"})
    response = client.get(reverse("persistence:states", args=["damaged"]))
    assert response.status_code == 500
    html = response.content.decode()
    assert "Store “damaged” failed." in html and "damaged.db is damaged" in html
    assert response["X-Statehub-Message"] == "Store 'damaged' failed"


def test_unknown_store_is_404(client: Client, store: StatePersistence) -> None:
    assert client.get(reverse("persistence:states", args=["nope"])).status_code == 404


def test_store_switcher_with_several_stores(client: Client, configure: Any) -> None:
    configure({"other": "memory://dash-other"})
    html = client.get(url("states")).content.decode()
    assert "store-switch" in html and reverse("persistence:states", args=["other"]) in html


def test_no_switcher_with_one_store(client: Client, store: StatePersistence) -> None:
    assert b"store-switch" not in client.get(url("states")).content


@pytest.mark.parametrize(
    "name", ["state", "download", "diff", "rollback", "delete_version", "delete_state"]
)
@pytest.mark.parametrize("bad_id", ["a\x00b", "a\x7f", "x" * 300])
def test_an_id_no_store_accepts_is_404_on_every_state_page(
    client: Client, store: StatePersistence, name: str, bad_id: str
) -> None:
    seed(store)
    response = client.get(url(name, bad_id))
    assert response.status_code == 404 and "No such state" in response.content.decode()


@pytest.mark.parametrize("v", ["abc", "0", "-1", "1.5", "99999999999999999999"])
def test_a_version_that_cannot_exist_is_404_not_the_latest(
    client: Client, store: StatePersistence, v: str
) -> None:
    seed(store)
    for name in ("state", "download", "delete_version"):
        response = client.get(url(name, "run-1"), {"v": v})
        assert response.status_code == 404, (name, v)
    assert client.get(url("rollback", "run-1"), {"to": v}).status_code == 404
    huge = client.post(url("rollback", "run-1"), {"version": "99999999999999999999"})
    assert huge.status_code == 404
    assert len(store.list_versions("run-1")) == 3  # nothing was written


def test_a_refused_filter_or_cursor_shows_the_first_page_with_a_message(
    client: Client, store: StatePersistence
) -> None:
    seed(store)
    forged = base64.urlsafe_b64encode(orjson.dumps(["zzz", "a"])).decode()
    for query in ({"q": "\x01x"}, {"order": "updated", "cursor": forged}):
        response = client.get(url("states"), query)
        html = response.content.decode()
        assert response.status_code == 200 and "Bad filter" in html, query
        assert "run-1" in html
