"""CSRF on every POST endpoint, security headers, Argon2, idle sessions, production settings."""

from __future__ import annotations

import importlib
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import get_hasher, make_password
from django.test import Client

from persistence.models import AuditEntry
from tests.conftest import manage
from tests.security.conftest import STATE_ID, client_for
from tests.security.test_matrix import TABLE, fill

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("token", [None, "x" * 64], ids=["missing", "wrong"])
def test_every_post_endpoint_refuses_a_missing_or_wrong_token(
    token: str | None, accounts: dict[str, Any], fresh_store: Any, django_user_model: Any
) -> None:
    admin = client_for(accounts["admin"], enforce_csrf_checks=True)
    admin.get("/s/default/")  # a real csrftoken cookie: only the submitted token is wrong
    target = accounts["viewer"]
    posting = [route for route, (_, posts, _, audited) in TABLE.items() if audited]
    posting += ["accounts/login/", "accounts/logout/", "accounts/password_change/"]
    for route in posting:
        store, checkpoint_id = fresh_store()
        before = [m.version for m in store.list_versions(STATE_ID)]
        rows, users = AuditEntry.objects.count(), django_user_model.objects.count()
        data = dict(TABLE[route][2])
        if token:
            data["csrfmiddlewaretoken"] = token
        response = admin.post(fill(route, checkpoint_id, target.pk), data)
        assert response.status_code == 403, route
        assert b"CSRF" in response.content, route
        assert [m.version for m in store.list_versions(STATE_ID)] == before, route
        assert AuditEntry.objects.count() == rows and django_user_model.objects.count() == users
    target.refresh_from_db()
    assert target.is_active and target.has_usable_password()


def test_security_headers(accounts: dict[str, Any], store: Any) -> None:
    response = client_for(accounts["viewer"]).get("/s/default/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
    for directive in (
        "default-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
    ):
        assert directive in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    login = Client().get("/accounts/login/")
    assert "Content-Security-Policy" in login and login["X-Frame-Options"] == "DENY"


def test_static_files_are_served_without_debug_and_without_a_login(settings: Any) -> None:
    """Production runs with DEBUG off, where runserver serves no static files: the login page
    and the dashboard would have no styles and no htmx."""
    assert settings.DEBUG is False
    anonymous = Client()
    for path in ("/static/statehub/app.css", "/static/django_htmx/htmx-2.min.js"):
        response = anonymous.get(path)
        assert response.status_code == 200, path
        assert b"".join(response.streaming_content)  # type: ignore[attr-defined]


def test_an_htmx_request_after_the_session_ended_leads_the_whole_page_to_the_login(
    store: Any,
) -> None:
    """Not the login page swapped into the part of the page htmx was updating; and back to
    the page the user was on (a rollback confirmation keeps its ?to=) once logged in."""
    anonymous = Client()
    page = "http://testserver/s/default/rollback/agent/one?to=1"
    headers = {"HX-Request": "true", "HX-Current-URL": page}
    response = anonymous.get("/s/default/state/agent/one", headers=headers)
    assert response.status_code == 200 and response.content == b""
    assert (
        response["HX-Redirect"]
        == "/accounts/login/?next=%2Fs%2Fdefault%2Frollback%2Fagent%2Fone%3Fto%3D1"
    )
    elsewhere = {"HX-Request": "true", "HX-Current-URL": "https://evil.example/x"}
    response = anonymous.get("/s/default/?q=a", headers=elsewhere)
    assert response["HX-Redirect"] == "/accounts/login/?next=%2Fs%2Fdefault%2F%3Fq%3Da"
    plain = anonymous.get("/s/default/")  # without htmx: the usual redirect
    assert plain.status_code == 302 and plain["Location"].startswith("/accounts/login/")


def test_a_statehub_csp_setting_replaces_the_default_policy(
    accounts: dict[str, Any], store: Any, settings: Any
) -> None:
    settings.STATEHUB_CSP = {"default-src": ["'self'"], "report-uri": ["/csp"]}
    response = client_for(accounts["viewer"]).get("/s/default/")
    assert response["Content-Security-Policy"] == "default-src 'self'; report-uri /csp"


def test_no_inline_script_or_style_in_pages(accounts: dict[str, Any], store: Any) -> None:
    admin = client_for(accounts["admin"])
    for url in (
        "/s/default/",
        "/s/default/state/agent/one%20x",
        "/audit/",
        "/users/",
        "/workers/",
        "/s/default/stats/",
        "/accounts/login/",
    ):
        html = admin.get(url).content.decode()
        assert "<script>" not in html and " style=" not in html and "<style" not in html, url
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", html), url  # no inline event handlers


def test_argon2_is_the_configured_hasher(settings: Any) -> None:
    configured = importlib.import_module("statehub.settings").PASSWORD_HASHERS
    assert configured[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    settings.PASSWORD_HASHERS = configured  # undo the tests' fast MD5 override
    assert get_hasher().algorithm == "argon2"
    assert make_password("correct horse").startswith("argon2$argon2id$")


def test_sessions_expire_when_idle(accounts: dict[str, Any], store: Any, settings: Any) -> None:
    base = importlib.import_module("statehub.settings")
    assert base.SESSION_SAVE_EVERY_REQUEST is True and base.SESSION_COOKIE_AGE > 0
    settings.SESSION_COOKIE_AGE = 600
    client = client_for(accounts["viewer"])
    response = client.get("/s/default/")
    assert response.cookies["sessionid"]["max-age"] == 600  # renewed on every request
    assert response.cookies["sessionid"]["httponly"]


@pytest.mark.slow
def test_production_settings_pass_check_deploy(tmp_path: Path) -> None:
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SETTINGS_MODULE="statehub.settings_production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="example.com",
        STATEHUB_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "dev-insecure-statehub-key-change-me"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": secrets.token_urlsafe(64), "DJANGO_DEBUG": "true"}, "DEBUG"),
    ],
    ids=["no key", "default key", "debug on"],
)
def test_production_settings_refuse_to_start_insecure(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = manage(
        "check",
        DJANGO_SETTINGS_MODULE="statehub.settings_production",
        DJANGO_ALLOWED_HOSTS="example.com",
        STATEHUB_DATA_DIR=str(tmp_path),
        **env,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr
