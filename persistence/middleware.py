"""Security middleware of the dashboard: the Content-Security-Policy header and the audit context.

Django 5.2 has no CSP support of its own. The policy is ``conf.csp_policy()`` (STATEHUB_CSP, or
``conf.DEFAULT_CSP``) and is sent on every response that has none yet.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

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
