"""The audit log: one AuditEntry row per audited action, written here and nowhere else.

What is written, and when (docs/security.md has the table):

- every dashboard mutation that reaches its view, by an authenticated user, writes exactly
  one row: ``ok`` when it was done, ``denied`` when the user's role does not allow it (nothing
  changed), ``error`` when it was allowed but failed (the exception is in ``details``), also
  when the view answered 404 or 503 before its service ran (the state, version, user or
  store was gone or down);
- every login attempt writes exactly one row: ``login_success``, ``login_failure``, or
  ``login_locked`` for the attempt that trips django-axes' limit and every attempt during the
  lockout (those answer 429);
- requests refused before a view runs (not logged in, bad CSRF token, wrong method) and forms
  with invalid input write nothing: no action was attempted.

The client address is REMOTE_ADDR, or an X-Forwarded-For entry when STATEHUB_TRUSTED_PROXIES
says how many proxies in front of us append to that header.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from persistence import conf, roles
from persistence.models import AuditEntry
from persistence.validation import MAX_STORED_VERSION

Action = AuditEntry.Action
Outcome = AuditEntry.Outcome

# The request being served, so services (which take a user, not a request) can record its
# address; set by persistence.middleware.AuditContextMiddleware.
current_request: ContextVar[HttpRequest | None] = ContextVar("statehub_request", default=None)
_LOGIN_ROW = "_statehub_login_audit"
_POST_ROW = "_statehub_audited"  # set on a request once it has written its row
_UNSERVED = "_statehub_unserved"  # set on a 404 or 503 response: why, for its POST's row


def mark_unserved(response: HttpResponse, why: str) -> HttpResponse:
    """Say that ``response`` answers a request whose target is gone or whose store is down,
    before any service ran: an allowed POST answered so still writes its ``error`` row."""
    setattr(response, _UNSERVED, why)
    return response


def unserved(response: HttpResponse) -> str | None:
    return getattr(response, _UNSERVED, None)


def client_address(request: HttpRequest) -> str:
    """The client's IP: REMOTE_ADDR, unless STATEHUB_TRUSTED_PROXIES proxies append to XFF."""
    hops = conf.trusted_proxies()
    remote = str(request.META.get("REMOTE_ADDR") or "")
    if hops > 0:
        chain = [
            part.strip()
            for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
            if part.strip()
        ]
        # Each trusted proxy appended the address it saw: the client is `hops` from the end.
        if len(chain) >= hops:
            return chain[-hops][:64]
    return remote[:64]


def record(
    action: str,
    *,
    user: Any = None,
    username: str | None = None,
    outcome: str = Outcome.OK,
    store: str = "",
    state_id: str = "",
    version: int | None = None,
    reason: str = "",
    details: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> AuditEntry:
    """Write one row. ``user`` is the actor; ``username`` overrides its name (failed logins)."""
    request = request if request is not None else current_request.get()
    account = user if getattr(user, "is_authenticated", False) and user.pk else None
    name = username if username is not None else (account.get_username() if account else "")
    if request is not None:
        setattr(request, _POST_ROW, True)
    return AuditEntry.objects.create(
        user=account,
        username=_text(name)[:150],
        address=client_address(request) if request is not None else "",
        action=action,
        outcome=outcome,
        store=_text(store)[:200],
        state_id=_text(state_id)[:512],
        # Only numbers that can be versions: a crafted POST must not stop its row being written.
        version=version if version is not None and 0 < version <= MAX_STORED_VERSION else None,
        reason=_text(reason)[:2000],
        details=_clean(details or {}),
    )


def _text(value: Any) -> str:
    """Text a PostgreSQL column can hold: a crafted request's NUL becomes the two characters
    ``\0`` (PostgreSQL refuses NUL in text and jsonb, which would lose the row in a 500)."""
    return str(value).replace("\x00", "\\0")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


@contextmanager
def audited(action: str, user: Any, needed: roles.Role, **fields: Any) -> Iterator[dict[str, Any]]:
    """Check the role and record the outcome of the block: exactly one row whatever happens.

    Yields a dict the block may fill with details of what it did. A missing role records
    ``denied`` and raises PermissionDenied; so does a PermissionDenied the block raises (a
    refusal that depends on the target, not the role). Any other exception from the block
    records ``error`` and propagates.
    """
    if not roles.has_role(user, needed):
        record(
            action,
            user=user,
            outcome=Outcome.DENIED,
            details={"needed_role": needed, "role": roles.role_of(user)},
            **fields,
        )
        raise PermissionDenied(f"{action} needs the {needed} role")
    details: dict[str, Any] = {}
    try:
        yield details
    except Exception as exc:
        details["error"] = f"{type(exc).__name__}: {exc}"[:1000]
        outcome = Outcome.DENIED if isinstance(exc, PermissionDenied) else Outcome.ERROR
        record(action, user=user, outcome=outcome, details=details, **fields)
        raise
    record(action, user=user, details=details, **fields)


def record_denied(
    request: HttpRequest, action: str, needed: roles.Role, kwargs: dict[str, Any]
) -> AuditEntry:
    """The row of a POST refused by ``@require_role`` before it reached its service."""
    details = {"needed_role": needed, "role": roles.role_of(request.user)}
    return _record_post(request, action, Outcome.DENIED, kwargs, details)


def record_unserved(
    request: HttpRequest, action: str, kwargs: dict[str, Any], status: int, error: str
) -> AuditEntry | None:
    """The ``error`` row of an allowed POST whose view answered ``status`` (404: what it acts
    on is gone; 503: its store is down; see ``mark_unserved``) without reaching a service,
    which would have written the row itself; None when a row was written already."""
    if getattr(request, _POST_ROW, False):
        return None
    details = {"status": status, "error": error[:1000]}
    return _record_post(request, action, Outcome.ERROR, kwargs, details)


def _record_post(
    request: HttpRequest,
    action: str,
    outcome: str,
    kwargs: dict[str, Any],
    details: dict[str, Any],
) -> AuditEntry:
    """A row for a dashboard POST from what the URL and the form named."""
    post = request.POST
    try:
        version: int | None = int(post.get("version", ""))
    except ValueError:
        version = None
    if "task" in post:
        details["task"] = post.get("task", "")[:64]
    if "pk" in kwargs:
        details["target_id"] = kwargs["pk"]
    return record(
        action,
        user=request.user,
        outcome=outcome,
        store=kwargs.get("store") or post.get("store", ""),
        state_id=kwargs.get("state_id", ""),
        version=version,
        reason=post.get("reason", ""),
        details=details,
        request=request,
    )


# ---------------------------------------------------------------------- logins


def on_logged_in(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    record(Action.LOGIN_SUCCESS, user=user, request=request)


def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    """A failed attempt; one that axes locks out is recorded as ``login_locked`` instead."""
    if request is not None and getattr(request, _LOGIN_ROW, None) is not None:
        return
    locked = bool(getattr(request, "axes_locked_out", False))
    entry = record(
        Action.LOGIN_LOCKED if locked else Action.LOGIN_FAILURE,
        username=str(credentials.get("username") or ""),
        outcome=Outcome.DENIED,
        request=request,
    )
    if request is not None:
        setattr(request, _LOGIN_ROW, entry)


def on_locked_out(sender: Any, request: HttpRequest | None, username: Any, **_: Any) -> None:
    """axes' lockout signal: turn this attempt's row into ``login_locked`` (or write it)."""
    entry: AuditEntry | None = getattr(request, _LOGIN_ROW, None)
    if entry is None:
        entry = record(
            Action.LOGIN_LOCKED,
            username=str(username or ""),
            outcome=Outcome.DENIED,
            request=request,
        )
        if request is not None:
            setattr(request, _LOGIN_ROW, entry)
    elif entry.action != Action.LOGIN_LOCKED:
        entry.action, entry.outcome = Action.LOGIN_LOCKED, Outcome.DENIED
        entry.save(update_fields=["action", "outcome"])


def connect_signals() -> None:
    from axes.signals import user_locked_out
    from django.contrib.auth.signals import user_logged_in, user_login_failed

    user_logged_in.connect(on_logged_in, dispatch_uid="statehub-audit-login")
    user_login_failed.connect(on_login_failed, dispatch_uid="statehub-audit-login-failed")
    user_locked_out.connect(on_locked_out, dispatch_uid="statehub-audit-locked")
