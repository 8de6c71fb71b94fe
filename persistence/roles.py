"""Dashboard roles: viewer < operator < admin, as Django groups of the same names.

- viewer: reads everything (states, diffs, tags, stats, checkpoints, workers, audit log);
- operator: viewer + rollback, delete a version or a state, Run now;
- admin: operator + user management. Superusers are admins.

An active account in none of the groups has no role and no access: every dashboard page
answers 403 with a page that says so (an admin gives it a role on the Users page).
The check is made in every view (``@require_role``) and again in the services.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any, Literal, cast

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
_CACHE = "_statehub_role"


def role_of(user: Any) -> Role | None:
    """The user's highest role, or None (anonymous, inactive, or in no role group)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    if user.is_superuser:
        return "admin"
    cached = getattr(user, _CACHE, False)
    if cached is not False:
        return cast("Role | None", cached)
    role = highest(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    setattr(user, _CACHE, role)
    return role


def highest(group_names: Iterable[str]) -> Role | None:
    """The highest role among these group names (an account's assigned role)."""
    names = set(group_names)
    return next((r for r in reversed(ROLES) if r in names), None)


def forget(user: Any) -> None:
    """Drop the role cached on this user object (after its groups changed)."""
    if hasattr(user, _CACHE):
        delattr(user, _CACHE)


def has_role(user: Any, needed: Role) -> bool:
    role = role_of(user)
    return role is not None and ROLES.index(role) >= ROLES.index(needed)


def can_manage(user: Any, target: Any) -> bool:
    """Whether ``user`` may change ``target``'s account from the dashboard.

    Accounts that can log in to the Django admin (staff and superusers) are left to
    superusers: otherwise a dashboard admin could reset such an account's password, use the
    one-time link and so reach the Django admin, which dashboard roles never give."""
    return bool(user.is_superuser) or not (target.is_superuser or target.is_staff)


def check(user: Any, needed: Role) -> None:
    """Raise PermissionDenied unless ``user`` has ``needed`` (or a higher role)."""
    if not has_role(user, needed):
        raise PermissionDenied(f"this needs the {needed} role")


def forbidden(request: HttpRequest, needed: Role) -> HttpResponse:
    """The 403 page: what the user's role is and what the page needs."""
    role = role_of(request.user)
    response = render(request, "403.html", {"needed": needed, "role": role}, status=403)
    response["X-Statehub-Message"] = (
        f"Forbidden: this needs the {needed} role"
        if role
        else "Forbidden: your account has no role yet; ask an admin"
    )
    return response


def require_role(
    needed: Role, *, action: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Answer 403 unless the user has ``needed``. A POST of ``action`` always writes one audit
    row: ``denied`` here, or ``error`` here when the view answers before its service could
    write the row because what it acts on is gone or its store is down (audit.mark_unserved).
    A POST of invalid input (a malformed version, an id no state can have) writes nothing."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            from persistence import audit  # audit imports this module

            audited_as = action if request.method == "POST" else None
            if not has_role(request.user, needed):
                if audited_as:
                    audit.record_denied(request, audited_as, needed, kwargs)
                return forbidden(request, needed)
            if not audited_as:
                return view(request, *args, **kwargs)
            try:
                response = view(request, *args, **kwargs)
            except Http404 as exc:  # get_object_or_404: the user it names is gone
                audit.record_unserved(request, audited_as, kwargs, 404, str(exc))
                raise
            why = audit.unserved(response)
            if why is not None:
                audit.record_unserved(request, audited_as, kwargs, response.status_code, why)
            return response

        wrapper.statehub_role = needed  # type: ignore[attr-defined]
        return wrapper

    return decorate
