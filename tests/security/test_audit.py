"""The audit log: logins and lockouts (django-axes, 429), exact row counts, the audit page with
filters and keyset paging, the streaming CSV export, the state page's trail, client addresses."""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

import pytest
from django.test import Client

from persistence import audit
from persistence.models import AuditEntry
from tests.security.conftest import PASSWORD, STATE_ID, client_for

pytestmark = pytest.mark.django_db


def actions() -> Counter[str]:
    return Counter(AuditEntry.objects.values_list("action", flat=True))


def login(client: Client, username: str, password: str) -> int:
    return client.post("/accounts/login/", {"username": username, "password": password}).status_code


def test_fifth_bad_login_is_429_and_every_attempt_is_audited_once(accounts: dict[str, Any]) -> None:
    client = Client()
    assert [login(client, "vera", "wrong") for _ in range(4)] == [200, 200, 200, 200]
    assert login(client, "vera", "wrong") == 429
    response = client.post("/accounts/login/", {"username": "vera", "password": PASSWORD})
    assert response.status_code == 429  # still locked: even the right password is refused
    assert b"Too many failed sign-ins" in response.content
    assert "_auth_user_id" not in client.session
    assert actions() == Counter({"login_failure": 4, "login_locked": 2})
    locked = AuditEntry.objects.filter(action="login_locked")
    assert {(e.username, e.outcome, e.address) for e in locked} == {("vera", "denied", "127.0.0.1")}
    # Another account from the same address is not locked (lockout is per user and address).
    assert login(client, "otto", PASSWORD) == 302
    assert actions()["login_success"] == 1


def test_success_resets_the_failure_count(accounts: dict[str, Any]) -> None:
    client = Client()
    for _ in range(3):
        assert login(client, "otto", "wrong") == 200
    assert login(client, "otto", PASSWORD) == 302
    client.post("/accounts/logout/")
    assert [login(client, "otto", "wrong") for _ in range(4)] == [200] * 4
    assert actions() == Counter({"login_failure": 7, "login_success": 1})


def test_failed_login_of_an_unknown_user_is_audited_with_the_name_tried(db: Any) -> None:
    assert login(Client(), "<script>x</script>", "nope") == 200
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.username, entry.user) == (
        "login_failure",
        "<script>x</script>",
        None,
    )


def test_audit_rows_equal_the_actions_performed(
    accounts: dict[str, Any], store: Any, dead_broker: Any
) -> None:
    """A scripted session: every action and its outcome, counted exactly."""
    start = actions()
    operator, viewer = client_for(accounts["operator"]), client_for(accounts["viewer"])
    base = "/s/default"
    operator.post(f"{base}/rollback/agent/one%20x", {"version": "1"})  # ok
    operator.post(f"{base}/rollback/agent/one%20x", {"version": "2"})  # ok
    viewer.post(f"{base}/rollback/agent/one%20x", {"version": "1"})  # denied
    operator.post(f"{base}/delete-version/agent/one%20x", {"version": "1"})  # ok
    viewer.post(f"{base}/delete/agent/one%20x", {})  # denied
    operator.post("/workers/run/", {"store": "default", "task": "purge_expired"})  # error
    operator.post(f"{base}/delete/agent/one%20x", {})  # ok
    operator.get(f"{base}/rollback/agent/one%20x?to=1")  # a GET: nothing
    got = actions() - start
    assert got == Counter(
        # force_login above is a login too: one login_success per client
        {"login_success": 2, "rollback": 3, "delete_version": 1, "delete_state": 2, "run_worker": 1}
    )
    outcomes = Counter(
        AuditEntry.objects.exclude(action="login_success").values_list("action", "outcome")
    )
    assert outcomes == Counter(
        {
            ("rollback", "ok"): 2,
            ("rollback", "denied"): 1,
            ("delete_version", "ok"): 1,
            ("delete_state", "denied"): 1,
            ("delete_state", "ok"): 1,
            ("run_worker", "error"): 1,
        }
    )
    run = AuditEntry.objects.get(action="run_worker")
    assert run.details["task"] == "purge_expired" and "BrokerUnavailable" in run.details["error"]


def test_audit_page_filters_and_keyset_paging(accounts: dict[str, Any]) -> None:
    for i in range(120):
        audit.record("rollback", username=f"u{i % 3}", store="default", state_id=f"s{i}", version=1)
    viewer = client_for(accounts["viewer"])
    first = viewer.get("/audit/?action=rollback")
    assert first.status_code == 200
    page1 = first.context["page"]
    assert len(page1.entries) == 50 and page1.next_cursor == page1.entries[-1].pk
    page2 = viewer.get(f"/audit/?action=rollback&cursor={page1.next_cursor}").context["page"]
    page3 = viewer.get(f"/audit/?action=rollback&cursor={page2.next_cursor}").context["page"]
    ids = [e.pk for p in (page1, page2, page3) for e in p.entries]
    assert len(ids) == 120 == len(set(ids)) and ids == sorted(ids, reverse=True)
    assert page3.next_cursor is None
    only_u1 = viewer.get("/audit/?user=u1&action=rollback").context["page"].entries
    assert {e.username for e in only_u1} == {"u1"}
    one = viewer.get("/audit/?store=default&state=s7").context["page"].entries
    assert [e.state_id for e in one] == ["s7"]
    assert viewer.get("/audit/?since=2999-01-01T00:00").context["page"].entries == []
    rows = viewer.get("/audit/?cursor=1", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="rows")
    assert b'id="rows"' in rows.content and b"<html" not in rows.content
    assert viewer.post("/audit/").status_code == 405  # read-only


def test_csv_export_streams_filtered_rows_safely(accounts: dict[str, Any]) -> None:
    audit.record("rollback", username="eve", reason='=HYPERLINK("http://x")', state_id="a")
    audit.record("delete_state", username="bob", state_id="b")
    response = client_for(accounts["viewer"]).get("/audit/export.csv?user=eve")
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["id", "at", "username"]
    assert [r[2] for r in rows[1:]] == ["eve"]
    assert rows[1][9] == '\'=HYPERLINK("http://x")'  # never a live formula


def test_state_page_shows_its_audit_trail(accounts: dict[str, Any], store: Any) -> None:
    operator = client_for(accounts["operator"])
    operator.post("/s/default/rollback/agent/one%20x", {"version": "1", "reason": "why-marker"})
    audit.record("rollback", username="x", store="default", state_id="another")
    html = operator.get("/s/default/state/agent/one%20x").content.decode()
    trail = html.split('id="audit-h"', 1)[1]
    assert "why-marker" in trail and "another" not in trail


def test_forwarded_for_is_trusted_only_when_configured(rf: Any, settings: Any) -> None:
    request = rf.get("/", REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR="6.6.6.6, 1.2.3.4")
    settings.STATEHUB_TRUSTED_PROXIES = 0
    assert audit.client_address(request) == "10.0.0.9"
    settings.STATEHUB_TRUSTED_PROXIES = 1
    assert audit.client_address(request) == "1.2.3.4"  # the spoofable left entry is ignored
    settings.STATEHUB_TRUSTED_PROXIES = 2
    assert audit.client_address(request) == "6.6.6.6"
    settings.STATEHUB_TRUSTED_PROXIES = 3
    assert audit.client_address(request) == "10.0.0.9"  # fewer hops than proxies: not trusted
    settings.STATEHUB_TRUSTED_PROXIES = "1"
    with pytest.raises(ValueError, match="STATEHUB_TRUSTED_PROXIES must be an int"):
        audit.client_address(request)


def test_a_refused_post_with_an_impossible_version_is_still_audited(
    accounts: dict[str, Any], store: Any
) -> None:
    """A crafted version number must not stop the denied row being written (a 403, not a 500);
    the row keeps the version only when it can be one."""
    viewer = client_for(accounts["viewer"])
    for version in ("99999999999999999999", str(2**40)):
        response = viewer.post(
            f"/s/default/rollback/{STATE_ID.replace(' ', '%20')}", {"version": version}
        )
        assert response.status_code == 403
    rows = AuditEntry.objects.filter(action="rollback", outcome="denied").order_by("id")
    assert list(rows.values_list("version", flat=True)) == [None, 2**40]


def test_an_allowed_post_whose_target_is_gone_writes_one_error_row(
    accounts: dict[str, Any], store: Any, settings: Any
) -> None:
    """A POST that reaches its view is audited even when the view answers 404 or 503 before
    its service runs: the state, version, user or store it names is gone or down."""
    operator, admin = client_for(accounts["operator"]), client_for(accounts["admin"])
    state = STATE_ID.replace(" ", "%20")
    posts = [
        (operator, "/s/default/rollback/nope", {"version": "1"}, "rollback", 404),
        (operator, "/s/default/delete/nope", {}, "delete_state", 404),
        (operator, "/s/default/delete-version/nope", {"version": "1"}, "delete_version", 404),
        (operator, f"/s/default/delete-version/{state}", {"version": "77"}, "delete_version", 404),
        (operator, "/s/other/delete/x", {}, "delete_state", 404),
        (admin, "/users/999999/role/", {"role": "viewer"}, "user_role", 404),
        (admin, "/users/999999/deactivate/", {}, "user_deactivate", 404),
    ]
    for client, path, data, action, status in posts:
        before = AuditEntry.objects.count()
        assert client.post(path, data).status_code == status, path
        (row,) = AuditEntry.objects.order_by("-id")[: AuditEntry.objects.count() - before]
        assert (row.action, row.outcome, row.details["status"]) == (action, "error", status)
        assert row.details["error"], path
    versioned = AuditEntry.objects.get(action="delete_version", version=77)
    assert versioned.state_id == STATE_ID and "no version 77" in versioned.details["error"]
    assert AuditEntry.objects.get(action="delete_state", store="other").state_id == "x"
    assert AuditEntry.objects.filter(action="user_role").get().details["target_id"] == 999999

    settings.STATEHUB_STORES = {"default": "redis://127.0.0.1:1/0"}  # nothing listens there
    assert operator.post("/s/default/delete/x", {}).status_code == 503
    down = AuditEntry.objects.order_by("-id").first()
    assert (down.action, down.outcome, down.details["status"]) == ("delete_state", "error", 503)
    assert "unavailable" in down.details["error"]


def test_a_post_of_input_that_names_nothing_writes_no_row(
    accounts: dict[str, Any], store: Any
) -> None:
    """Malformed input is refused before anything is attempted, like an invalid form."""
    operator = client_for(accounts["operator"])
    state = STATE_ID.replace(" ", "%20")
    before = AuditEntry.objects.count()
    for path, data in [
        (f"/s/default/rollback/{state}", {"version": "abc"}),
        (f"/s/default/rollback/{state}", {"version": "0"}),
        (f"/s/default/rollback/{state}", {}),
        (f"/s/default/delete-version/{state}", {"version": "abc"}),
        (f"/s/default/delete-version/{state}", {}),
        ("/s/default/delete/a%00b", {}),  # an id no state can have
    ]:
        assert operator.post(path, data).status_code == 404, (path, data)
    assert AuditEntry.objects.count() == before


def test_a_nul_in_audited_text_is_written_as_an_escape(accounts: dict[str, Any]) -> None:
    """PostgreSQL refuses NUL in text and jsonb: the row must still be written."""
    row = audit.record(
        "delete_state",
        user=accounts["operator"],
        state_id="a\x00b",
        reason="why\x00",
        details={"error": "x\x00", "k\x00": ["\x00"]},
    )
    row.refresh_from_db()
    assert (row.state_id, row.reason) == ("a\\0b", "why\\0")
    assert row.details == {"error": "x\\0", "k\\0": ["\\0"]}
