"""Security middleware of the dashboard: the Content-Security-Policy header and the audit context.

Django 5.2 has no CSP support of its own. The policy is ``conf.csp_policy()`` (STATEHUB_CSP, or
``conf.DEFAULT_CSP``) and is sent on every response that has none yet.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme

from persistence import audit, conf


def csp_header() -> str:
    policy = conf.csp_policy()
    return "; ".join(f"{name} {' '.join(sources)}".strip() for name, sources in policy.items())


class SecurityHeadersMiddleware:
    """Content-Security-Policy, Permissions-Policy and (unless set) no caching on every
    response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", csp_header())
        if "Cache-Control" not in response.headers:
            # State data is not for caches, and a page the browser's Back button takes from
            # its cache shows versions that may be gone, with a form that would act on them.
            add_never_cache_headers(response)
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"
        )
        return response


class AuditContextMiddleware:
    """Make the current request known to persistence.audit (for the client address)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = audit.current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            audit.current_request.reset(token)


class HtmxLoginRedirectMiddleware:
    """An htmx request whose session has ended gets the login page as a whole page.

    LoginRequiredMiddleware answers it with a redirect to the login page, which the browser
    follows inside the XHR: htmx would then swap the whole login page into the part of the
    page it was updating, header and all. This turns that redirect into an
    ``HX-Redirect`` to the login page whose ``next`` is the page the user was on (not the URL
    of the partial), so logging in again leads back there."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.headers.get("HX-Request") != "true" or not isinstance(
            response, HttpResponseRedirect
        ):
            return response
        login = resolve_url(settings.LOGIN_URL)
        if urlsplit(response.url).path != login:
            return response
        current = request.headers.get("HX-Current-URL", "")
        if current and url_has_allowed_host_and_scheme(current, {request.get_host()}):
            page = urlsplit(current)
            here = urlunsplit(("", "", page.path, page.query, ""))
        else:  # no page named, or another site's: the partial's own URL
            here = request.get_full_path()
        answer = HttpResponse(status=200)
        answer["HX-Redirect"] = f"{login}?{urlencode({REDIRECT_FIELD_NAME: here})}"
        return answer
