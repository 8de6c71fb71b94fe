"""Roles: what each may do, through the UI (buttons hidden) and by crafted POSTs (403, nothing
written but the denied audit row); user management and the last-admin rule."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from persistence import roles, services
from persistence.models import AuditEntry
from tests.security.conftest import STATE_ID, client_for, make_user

pytestmark = pytest.mark.django_db
STATE_URL = "/s/default/state/agent/one%20x"
FULLWIDTH_ROOT = "\uff32\uff2f\uff2f\uff34"  # a look-alike of "ROOT"


def test_role_of(accounts: dict[str, Any], django_user_model: Any) -> None:
    assert [roles.role_of(accounts[r]) for r in ("norole", "viewer", "operator", "admin")] == [
        None,
        "viewer",
        "operator",
        "admin",
    ]
    assert roles.role_of(django_user_model.objects.create_superuser("su", password="x")) == "admin"
    accounts["admin"].is_active = False
    assert roles.role_of(accounts["admin"]) is None


def test_viewer_sees_no_buttons_and_cannot_change_anything(
    accounts: dict[str, Any], store: Any
) -> None:
    viewer = client_for(accounts["viewer"])
    html = viewer.get(f"{STATE_URL}?v=1").content.decode()
    assert "✓ verified" in html
    for hidden in ("/rollback/", "/delete-version/", "/delete/", "Users</a>"):
        assert hidden not in html, hidden
    assert "Run now</button>" not in viewer.get("/workers/").content.decode()
    assert "Roll back to" not in viewer.get("/s/default/diff/agent/one%20x").content.decode()
    before = [m.version for m in store.list_versions(STATE_ID)]
    posts = {
        "/s/default/rollback/agent/one%20x": ("rollback", {"version": "1"}),
        "/s/default/delete-version/agent/one%20x": ("delete_version", {"version": "1"}),
        "/s/default/delete/agent/one%20x": ("delete_state", {}),
        "/workers/run/": ("run_worker", {"store": "default", "task": "purge_expired"}),
        "/users/new/": ("user_create", {"username": "x", "role": "admin"}),
        f"/users/{accounts['viewer'].pk}/role/": ("user_role", {"role": "admin"}),
    }
    for url, (action, data) in posts.items():
        assert viewer.post(url, data).status_code == 403, url
        entry = AuditEntry.objects.latest("id")
        assert (entry.action, entry.outcome, entry.username) == (action, "denied", "vera")
    assert [m.version for m in store.list_versions(STATE_ID)] == before
    assert AuditEntry.objects.filter(outcome="ok").exclude(action="login_success").count() == 0
    assert roles.role_of(get_user_model().objects.get(username="vera")) == "viewer"


def test_operator_rolls_back_but_cannot_manage_users(accounts: dict[str, Any], store: Any) -> None:
    operator = client_for(accounts["operator"])
    html = operator.get(f"{STATE_URL}?v=1").content.decode()
    assert "Roll back to v1" in html and "Delete state" in html and "Users</a>" not in html
    response = operator.post(
        "/s/default/rollback/agent/one%20x", {"version": "1", "reason": "bad deploy"}
    )
    assert response.status_code == 302
    state, meta = store.load_with_metadata(STATE_ID)
    assert state == {"step": 1}
    entry = AuditEntry.objects.latest("id")
    assert (entry.action, entry.outcome, entry.store, entry.state_id, entry.version) == (
        "rollback",
        "ok",
        "default",
        STATE_ID,
        1,
    )
    assert entry.reason == "bad deploy"
    assert entry.details == {"new_version": 4, "created_at": meta.created_at.timestamp()}
    assert entry.address == "127.0.0.1"
    assert operator.get("/users/").status_code == 403
    assert operator.post("/users/new/", {"username": "x", "role": "viewer"}).status_code == 403
    assert not get_user_model().objects.filter(username="x").exists()


def test_services_check_roles_too(accounts: dict[str, Any], store: Any) -> None:
    with pytest.raises(PermissionDenied):
        services.delete_state(store, accounts["viewer"], STATE_ID, store_name="default")
    assert store.list_versions(STATE_ID)
    assert AuditEntry.objects.filter(action="delete_state", outcome="denied").count() == 1


def test_admin_manages_users(accounts: dict[str, Any]) -> None:
    admin = client_for(accounts["admin"])
    html = admin.get("/users/").content.decode()
    assert "Users</a>" in html and "otto" in html
    response = admin.post("/users/new/", {"username": "newbie", "email": "", "role": "operator"})
    html = response.content.decode()
    assert response.status_code == 200 and "One-time set-password link" in html
    newbie = get_user_model().objects.get(username="newbie")
    assert roles.role_of(newbie) == "operator" and not newbie.has_usable_password()
    link = html.split('readonly value="', 1)[1].split('"', 1)[0].replace("http://testserver", "")
    assert "One-time" not in admin.get("/users/").content.decode()  # shown once

    # The link sets the password once.
    anonymous = client_for(None)
    form_url = anonymous.get(link)["Location"]
    assert '<strong class="mono">newbie</strong>' in anonymous.get(form_url).content.decode()
    new_password = "a-Long-new-pass-913"
    done = anonymous.post(form_url, {"new_password1": new_password, "new_password2": new_password})
    assert done.status_code == 302
    newbie.refresh_from_db()
    assert newbie.check_password(new_password)
    assert b"no longer works" in client_for(None).get(link, follow=True).content

    otto = accounts["operator"]
    assert admin.post(f"/users/{otto.pk}/role/", {"role": "viewer"}).status_code == 302
    assert roles.role_of(get_user_model().objects.get(pk=otto.pk)) == "viewer"
    assert admin.post(f"/users/{otto.pk}/deactivate/").status_code == 302
    otto.refresh_from_db()
    assert not otto.is_active
    assert client_for(otto).get("/s/default/").status_code == 302  # its session is over
    assert admin.post(f"/users/{otto.pk}/reactivate/").status_code == 302
    reset = admin.post(f"/users/{otto.pk}/password/")
    assert b"One-time set-password link for otto" in reset.content
    otto.refresh_from_db()
    assert not otto.has_usable_password()
    actions = list(
        AuditEntry.objects.exclude(action="login_success")
        .order_by("id")
        .values_list("action", "outcome")
    )
    assert actions == [
        ("user_create", "ok"),
        ("user_role", "ok"),
        ("user_deactivate", "ok"),
        ("user_reactivate", "ok"),
        ("password_reset", "ok"),
    ]


@pytest.mark.parametrize("action", ["role", "deactivate", "reactivate", "password"])
def test_a_reason_too_long_refuses_the_account_change_naming_it(
    accounts: dict[str, Any], action: str
) -> None:
    """Not done with the reason dropped: the audit row would say nothing of why."""
    otto = accounts["operator"]
    before = (otto.is_active, otto.password, roles.role_of(otto))
    admin = client_for(accounts["admin"])
    data = {"role": "viewer", "reason": "x" * 501}
    page = admin.post(f"/users/{otto.pk}/{action}/", data, follow=True).content.decode()
    assert "reason: Ensure this value has at most 500 characters" in page
    otto = get_user_model().objects.get(pk=otto.pk)
    assert (otto.is_active, otto.password, roles.role_of(otto)) == before
    assert not AuditEntry.objects.exclude(action="login_success").exists()


def test_last_admin_cannot_be_demoted_or_deactivated(accounts: dict[str, Any]) -> None:
    ada = accounts["admin"]
    admin = client_for(ada)
    assert admin.post(f"/users/{ada.pk}/role/", {"role": "operator"}).status_code == 302
    assert admin.post(f"/users/{ada.pk}/deactivate/").status_code == 302
    ada.refresh_from_db()
    assert ada.is_active and roles.role_of(ada) == "admin"
    assert "last active admin" in admin.get("/users/").content.decode()
    with pytest.raises(services.LastAdminError):
        services.deactivate_user(ada, ada)
    rows = list(
        AuditEntry.objects.filter(outcome="error").order_by("id").values_list("action", flat=True)
    )
    assert rows == ["user_role", "user_deactivate", "user_deactivate"]

    # With a second admin, the first may step down.
    second = make_user("bea", "admin")
    services.set_role(ada, ada, "operator")
    assert roles.role_of(get_user_model().objects.get(pk=ada.pk)) == "operator"
    with pytest.raises(services.LastAdminError):
        services.set_role(second, second, "viewer")


def test_an_admin_cannot_take_over_an_account_of_the_django_admin(
    accounts: dict[str, Any], django_user_model: Any
) -> None:
    """A dashboard admin who is not a superuser must not reach the Django admin by resetting
    a superuser's or a staff account's password (and so using its one-time link), nor lock
    such an account out or change its role: those accounts are left to superusers."""
    ada = accounts["admin"]
    root = django_user_model.objects.create_superuser("root", password="root-pass-1")
    sam = make_user("sam", "operator")
    sam.is_staff = True
    sam.save()
    admin = client_for(ada)

    page = admin.get("/users/").content.decode()
    for target in (root, sam):
        for action in ("password", "deactivate", "role"):
            assert f"/users/{target.pk}/{action}/" not in page
    assert f"/users/{accounts['operator'].pk}/password/" in page  # others keep their buttons
    assert f"/users/{ada.pk}/password/" not in page and "/password_change/" in page  # own row

    for target in (root, sam):
        reset = admin.post(f"/users/{target.pk}/password/", follow=True).content.decode()
        assert "only a superuser can change it" in reset
        assert "One-time set-password link" not in reset
        admin.post(f"/users/{target.pk}/deactivate/")
        admin.post(f"/users/{target.pk}/role/", {"role": "viewer"})
        target.refresh_from_db()
        assert target.is_active and target.has_usable_password()
    assert root.check_password("root-pass-1")
    assert roles.role_of(get_user_model().objects.get(pk=sam.pk)) == "operator"
    sam.is_active = False
    sam.save()
    admin.post(f"/users/{sam.pk}/reactivate/")
    sam.refresh_from_db()
    assert not sam.is_active
    sam.is_active = True
    sam.save()

    denied = list(
        AuditEntry.objects.filter(outcome="denied").values_list("action", "details__target")
    )
    assert sorted(denied) == sorted(
        [
            (action, name)
            for name in ("root", "sam")
            for action in ("password_reset", "user_deactivate", "user_role")
        ]
        + [("user_reactivate", "sam")]
    )
    assert not AuditEntry.objects.exclude(outcome="denied").exclude(action="login_success")

    # The service refuses too, whoever calls it; a superuser may change those accounts.
    with pytest.raises(services.ProtectedAccountError):
        services.reset_password(ada, root)
    assert services.reset_password(root, sam).startswith("/accounts/reset/")
    services.deactivate_user(root, sam)
    sam.refresh_from_db()
    assert not sam.is_active and not sam.has_usable_password()


@pytest.mark.parametrize("promotion", ["is_staff", "is_superuser"])
def test_a_set_password_link_dies_when_its_account_is_promoted(
    accounts: dict[str, Any], promotion: str
) -> None:
    """An admin may hand out links only for plain accounts; a link issued before the account
    became staff or superuser must not take it over afterwards."""
    html = (
        client_for(accounts["admin"])
        .post("/users/new/", {"username": "bob", "email": "", "role": "viewer"})
        .content.decode()
    )
    link = html.split('readonly value="', 1)[1].split('"', 1)[0].replace("http://testserver", "")
    bob = get_user_model().objects.get(username="bob")
    setattr(bob, promotion, True)  # what a superuser might do in the Django admin
    bob.save()
    anonymous = client_for(None)
    page = anonymous.get(link, follow=True).content.decode()
    assert "This link no longer works" in page
    bob.refresh_from_db()
    assert not bob.has_usable_password()


@pytest.mark.parametrize("flip", ["is_active", "is_staff", "is_superuser"])
def test_a_voided_set_password_link_stays_void_when_the_account_is_set_back(
    accounts: dict[str, Any], flip: str
) -> None:
    """An admin deactivates an account whose link leaked (or a superuser promotes it for a
    while): setting the flag back must not revive the link."""
    admin = client_for(accounts["admin"])
    html = admin.post("/users/new/", {"username": "bob", "email": "", "role": "viewer"})
    link = html.content.decode().split('readonly value="', 1)[1].split('"', 1)[0]
    link = link.replace("http://testserver", "")
    bob = get_user_model().objects.get(username="bob")
    if flip == "is_active":  # through the dashboard, as an admin would
        assert admin.post(f"/users/{bob.pk}/deactivate/", {}).status_code == 302
        assert admin.post(f"/users/{bob.pk}/reactivate/", {}).status_code == 302
    else:  # a superuser in the Django admin, and back
        for value in (True, False):
            setattr(bob, flip, value)
            bob.save()
    bob.refresh_from_db()
    assert bob.is_active and not bob.is_staff and not bob.is_superuser
    page = client_for(None).get(link, follow=True).content.decode()
    assert "This link no longer works" in page
    fresh = admin.post(f"/users/{bob.pk}/password/", {}).content.decode()
    assert "One-time set-password link for bob" in fresh  # a new link can be issued


def test_reactivating_an_active_account_keeps_its_link(accounts: dict[str, Any]) -> None:
    admin = client_for(accounts["admin"])
    html = admin.post("/users/new/", {"username": "bob", "email": "", "role": "viewer"})
    link = html.content.decode().split('readonly value="', 1)[1].split('"', 1)[0]
    bob = get_user_model().objects.get(username="bob")
    assert admin.post(f"/users/{bob.pk}/reactivate/", {}).status_code == 302  # a no-op
    page = client_for(None).get(link.replace("http://testserver", ""), follow=True)
    assert "Set your password" in page.content.decode()


def test_deactivating_a_stale_copy_keeps_a_password_set_meanwhile(
    accounts: dict[str, Any],
) -> None:
    stale = get_user_model().objects.get(pk=accounts["viewer"].pk)
    fresh = get_user_model().objects.get(pk=accounts["viewer"].pk)
    fresh.set_password("a-new-pass-9134")
    fresh.save()
    services.deactivate_user(accounts["admin"], stale)
    services.reactivate_user(accounts["admin"], stale)
    stored = get_user_model().objects.get(pk=accounts["viewer"].pk)
    assert stored.is_active and stored.check_password("a-new-pass-9134")


def test_a_look_alike_of_a_taken_username_is_refused(
    accounts: dict[str, Any], django_user_model: Any
) -> None:
    """Names are compared as they are stored (NFKC): fullwidth "ROOT" would be saved as "ROOT"."""
    django_user_model.objects.create_superuser("root", password="root-pass-1")
    admin = client_for(accounts["admin"])
    for name in (FULLWIDTH_ROOT, FULLWIDTH_ROOT.lower()):
        response = admin.post("/users/new/", {"username": name, "email": "", "role": "viewer"})
        assert response.status_code == 200 and "already exists" in response.content.decode()
    assert django_user_model.objects.filter(username__iexact="root").count() == 1
    with pytest.raises(ValueError, match="'ROOT' already exists"):
        services.create_user(accounts["admin"], username=FULLWIDTH_ROOT, email="", role="viewer")
    assert AuditEntry.objects.get(action="user_create").details["target"] == "ROOT"


def test_a_taken_username_is_invalid_input_with_no_audit_row(accounts: dict[str, Any]) -> None:
    admin = client_for(accounts["admin"])
    response = admin.post("/users/new/", {"username": "VERA", "email": "", "role": "viewer"})
    assert response.status_code == 200
    assert "a user named &#x27;VERA&#x27; already exists" in response.content.decode()
    assert get_user_model().objects.filter(username__iexact="vera").count() == 1
    assert not AuditEntry.objects.exclude(action="login_success").exists()
    with pytest.raises(ValueError, match="already exists"):  # the service's own check
        services.create_user(accounts["admin"], username="Vera", email="", role="viewer")
    rows = AuditEntry.objects.exclude(action="login_success").values_list("action", "outcome")
    assert list(rows) == [("user_create", "error")]


def test_no_role_gets_a_clear_403_page(accounts: dict[str, Any], store: Any) -> None:
    response = client_for(accounts["norole"]).get("/s/default/")
    assert response.status_code == 403
    assert b"has no role yet" in response.content


def test_inactive_superuser_is_not_an_admin(django_user_model: Any) -> None:
    su = django_user_model.objects.create_superuser("root", password="x")
    su.is_active = False
    assert not roles.has_role(su, "viewer")
