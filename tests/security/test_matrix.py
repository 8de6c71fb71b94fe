"""Authorization matrix: every URL of the project x every role x GET and POST.

The URLs are walked from the resolver, so a new URL without a row in TABLE fails
``test_every_url_is_classified`` until someone decides who may use it. Mutating routes must
also write exactly one audit row per POST that reaches the view (denied or not), and no GET
may change the store or write an audit row.

The Django admin (namespace ``admin``) is left out of the matrix: it has its own staff check,
dozens of generated URLs per model, and is covered by ``test_admin_site_is_staff_only``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from persistence.models import AuditEntry
from tests.security.conftest import ROLES, STATE_ID, client_for, make_user

pytestmark = pytest.mark.django_db

EXCLUDED_NAMESPACES = {"admin": "Django admin: own staff-only check, see test_admin_site"}

A, N, V, OP, AD = ROLES  # anonymous, norole, viewer, operator, admin


def by_role(anonymous: int, norole: int, viewer: int, operator: int, admin: int) -> dict:
    return {A: anonymous, N: norole, V: viewer, OP: operator, AD: admin}


READ = by_role(302, 403, 200, 200, 200)  # anonymous: redirected to the login page
NO_POST = by_role(302, 405, 405, 405, 405)  # GET-only pages
NO_GET = by_role(302, 405, 405, 405, 405)  # POST-only endpoints
OPERATOR_PAGE = by_role(302, 403, 403, 200, 200)
OPERATOR_POST = by_role(302, 403, 403, 302, 302)
ADMIN_PAGE = by_role(302, 403, 403, 403, 200)
PUBLIC = by_role(200, 200, 200, 200, 200)

# route -> (GET statuses, POST statuses, POST data, audited: a POST writes one audit row)
TABLE: dict[str, tuple[dict, dict, dict, bool]] = {
    "": (by_role(302, 403, 302, 302, 302), NO_POST, {}, False),
    "s/<str:store>/": (READ, NO_POST, {}, False),
    "s/<str:store>/tags/": (READ, NO_POST, {}, False),
    "s/<str:store>/stats/": (READ, NO_POST, {}, False),
    "s/<str:store>/state/<state_id:state_id>": (READ, NO_POST, {}, False),
    "s/<str:store>/json/<state_id:state_id>": (READ, NO_POST, {}, False),
    "s/<str:store>/diff/<state_id:state_id>": (READ, NO_POST, {}, False),
    "s/<str:store>/checkpoints/<state_id:state_id>": (READ, NO_POST, {}, False),
    "s/<str:store>/checkpoint/<str:checkpoint_id>/": (READ, NO_POST, {}, False),
    "s/<str:store>/rollback/<state_id:state_id>": (
        OPERATOR_PAGE,
        OPERATOR_POST,
        {"version": "1", "reason": "matrix"},
        True,
    ),
    "s/<str:store>/delete-version/<state_id:state_id>": (
        OPERATOR_PAGE,
        OPERATOR_POST,
        {"version": "1"},
        True,
    ),
    "s/<str:store>/delete/<state_id:state_id>": (OPERATOR_PAGE, OPERATOR_POST, {}, True),
    "workers/": (READ, NO_POST, {}, False),
    "workers/runs/": (READ, NO_POST, {}, False),
    "workers/online/": (READ, NO_POST, {}, False),
    # With the broker down Run now answers with a redirect and an error message (outcome error).
    "workers/run/": (NO_GET, OPERATOR_POST, {"store": "default", "task": "purge_expired"}, True),
    "audit/": (READ, NO_POST, {}, False),
    "audit/export.csv": (READ, NO_POST, {}, False),
    "users/": (ADMIN_PAGE, NO_POST, {}, False),
    "users/new/": (
        NO_GET,
        by_role(302, 403, 403, 403, 200),
        {"username": "newbie", "role": "viewer"},
        True,
    ),
    "users/<int:pk>/role/": (
        NO_GET,
        by_role(302, 403, 403, 403, 302),
        {"role": "operator"},
        True,
    ),
    "users/<int:pk>/deactivate/": (NO_GET, by_role(302, 403, 403, 403, 302), {}, True),
    "users/<int:pk>/reactivate/": (NO_GET, by_role(302, 403, 403, 403, 302), {}, True),
    "users/<int:pk>/password/": (NO_GET, by_role(302, 403, 403, 403, 200), {}, True),
    # Auth views: the login page is public; an empty POST is a form error (no attempt).
    "accounts/login/": (PUBLIC, PUBLIC, {}, False),
    "accounts/logout/": (
        by_role(302, 405, 405, 405, 405),
        by_role(302, 302, 302, 302, 302),
        {},
        False,
    ),
    "accounts/password_change/": (
        by_role(302, 200, 200, 200, 200),
        by_role(302, 200, 200, 200, 200),
        {},
        False,
    ),
    "accounts/password_change/done/": (
        by_role(302, 200, 200, 200, 200),
        by_role(302, 405, 405, 405, 405),
        {},
        False,
    ),
    # A bad token shows "this link no longer works" to anyone (test_users covers good ones).
    "accounts/reset/<uidb64>/<token>/": (PUBLIC, PUBLIC, {}, False),
    "accounts/reset/done/": (PUBLIC, by_role(405, 405, 405, 405, 405), {}, False),
}


# Confirmation pages need the version they are about.
GET_QUERY = {
    "s/<str:store>/rollback/<state_id:state_id>": "?to=1",
    "s/<str:store>/delete-version/<state_id:state_id>": "?v=1",
}


def walk(
    patterns: list[Any], prefix: str = "", namespace: str = ""
) -> Iterator[tuple[str, str, str]]:
    """(route, namespace, name) of every URL pattern, nested includes flattened."""
    for item in patterns:
        if isinstance(item, URLResolver):
            inner = item.namespace or namespace
            yield from walk(item.url_patterns, prefix + str(item.pattern), inner)
        elif isinstance(item, URLPattern):
            yield prefix + str(item.pattern), namespace, item.name or ""


def project_routes() -> dict[str, tuple[str, str]]:
    return {
        route: (namespace, name)
        for route, namespace, name in walk(get_resolver().url_patterns)
        if namespace not in EXCLUDED_NAMESPACES
    }


def test_every_url_is_classified() -> None:
    routes = project_routes()
    assert set(routes) - set(TABLE) == set(), "classify these URLs in TABLE"
    assert set(TABLE) - set(routes) == set(), "TABLE names URLs that no longer exist"


def fill(route: str, checkpoint_id: str, target_pk: int) -> str:
    values = {
        "<str:store>": "default",
        "<state_id:state_id>": STATE_ID.replace(" ", "%20"),
        "<str:checkpoint_id>": checkpoint_id,
        "<int:pk>": str(target_pk),
        "<uidb64>": "MQ",
        "<token>": "bad-token",
    }
    path = "/" + route
    for placeholder, value in values.items():
        path = path.replace(placeholder, value)
    return path


@pytest.mark.parametrize("role", ROLES)
def test_matrix(role: str, accounts: dict[str, Any], fresh_store: Any, dead_broker: Any) -> None:
    client = client_for(accounts[role])
    failures = []
    serial = 0
    for route, (gets, posts, data, audited) in TABLE.items():
        for method, expected in (("GET", gets), ("POST", posts)):
            store, checkpoint_id = fresh_store()
            before = [m.version for m in store.list_versions(STATE_ID)]
            serial += 1
            target = make_user(f"target-{serial}", "viewer")
            rows = AuditEntry.objects.count()
            path = fill(route, checkpoint_id, target.pk)
            if method == "GET":
                response = client.get(path + GET_QUERY.get(route, ""))
            else:
                body = dict(data)
                if "username" in body:
                    body["username"] = f"{body['username']}{serial}"
                response = client.post(path, body)
            wanted = expected[role]
            if response.status_code != wanted:
                failures.append(f"{method} {path} as {role}: {response.status_code} != {wanted}")
            if role == A and wanted == 302:
                assert response["Location"].startswith(reverse("login")), path
            written = AuditEntry.objects.count() - rows
            reached = method == "POST" and role != A and expected[role] != 405
            should = 1 if audited and reached else 0
            if route == "accounts/logout/" or (route == "accounts/login/"):
                should = 0
            if written != should:
                failures.append(f"{method} {path} as {role}: {written} audit rows, wanted {should}")
            if method == "GET" or not audited or role in (A, N, V):
                after = [m.version for m in store.list_versions(STATE_ID)]
                if after != before:
                    failures.append(f"{method} {path} as {role} changed the store")
            if route == "accounts/logout/" and method == "POST" and role != A:
                client = client_for(accounts[role])  # logged out: log back in
    assert not failures, "\n".join(failures)


def test_admin_site_is_staff_only(accounts: dict[str, Any], django_user_model: Any) -> None:
    """Dashboard roles give no access to the Django admin; a superuser gets it."""
    urls = ["/admin/", "/admin/auth/user/", "/admin/persistence/auditentry/"]
    for role in ROLES:
        client = client_for(accounts[role])
        for url in urls:
            response = client.get(url)
            assert response.status_code == 302, (role, url)
            # Anonymous requests may meet LoginRequiredMiddleware first; both are login pages.
            assert response["Location"].startswith(("/admin/login/", "/accounts/login/")), url
    boss = client_for(django_user_model.objects.create_superuser("root", password="x"))
    for url in urls:
        assert boss.get(url).status_code == 200, url
    assert boss.get("/admin/persistence/auditentry/add/").status_code == 403  # read-only
