"""The Users page (admins): list, create, set role, deactivate / reactivate, reset password.

A new account and a reset password get a one-time set-password link (Django's password-reset
token), shown once in the answer to the admin's POST and stored nowhere. Every change goes
through persistence.services, which checks the role again and writes the audit row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from persistence import roles, selectors, services
from persistence.forms import ROLE_CHOICES, RoleForm, UserActionForm, UserCreateForm
from persistence.roles import require_role
from persistence.views import page


def _users_page(
    request: HttpRequest, *, form: UserCreateForm | None = None, issued: Any = None
) -> HttpResponse:
    context = {
        "users": selectors.user_rows(request.user),
        "form": form or UserCreateForm(),
        "issued": issued,
        "roles": [value for value, _ in ROLE_CHOICES],
    }
    response = page(request, "persistence/users.html", context)
    response["Cache-Control"] = "no-store"  # a set-password link may be on it
    return response


def _after(request: HttpRequest) -> HttpResponse:
    """After a change: HTMX gets the page in place, a browser without JavaScript a redirect."""
    if getattr(request, "htmx", False):
        return _users_page(request)
    return redirect("persistence:users")


def _target(pk: int) -> Any:
    return get_object_or_404(get_user_model(), pk=pk)


@require_GET
@require_role("admin")
def users(request: HttpRequest) -> HttpResponse:
    return _users_page(request)


@require_POST
@require_role("admin", action="user_create")
def user_create(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST)
    if not form.is_valid():
        return _users_page(request, form=form)
    data = form.cleaned_data
    try:
        target, path = services.create_user(
            request.user, username=data["username"], email=data["email"], role=data["role"]
        )
    except ValueError as exc:
        form.add_error("username", str(exc))
        return _users_page(request, form=form)
    issued = {"username": target.get_username(), "link": request.build_absolute_uri(path)}
    messages.success(request, f"Created {target.get_username()} ({data['role']}).")
    return _users_page(request, issued=issued)


@require_POST
@require_role("admin", action="user_role")
def user_role(request: HttpRequest, pk: int) -> HttpResponse:
    target = _target(pk)
    form = _valid(request, RoleForm(request.POST), "Role not changed")
    if form is not None:
        role: roles.Role = form.cleaned_data["role"]
        reason = form.cleaned_data["reason"]
        if _changed(request, "Role not changed", services.set_role, target, role, reason):
            messages.success(request, f"{target.get_username()} is now {role}.")
    return _after(request)


@require_POST
@require_role("admin", action="user_deactivate")
def user_deactivate(request: HttpRequest, pk: int) -> HttpResponse:
    target = _target(pk)
    form = _valid(request, UserActionForm(request.POST), "Not deactivated")
    if form is not None and _changed(
        request, "Not deactivated", services.deactivate_user, target, form.cleaned_data["reason"]
    ):
        messages.success(request, f"Deactivated {target.get_username()}.")
    return _after(request)


@require_POST
@require_role("admin", action="user_reactivate")
def user_reactivate(request: HttpRequest, pk: int) -> HttpResponse:
    target = _target(pk)
    form = _valid(request, UserActionForm(request.POST), "Not reactivated")
    if form is not None and _changed(
        request, "Not reactivated", services.reactivate_user, target, form.cleaned_data["reason"]
    ):
        messages.success(request, f"Reactivated {target.get_username()}.")
    return _after(request)


@require_POST
@require_role("admin", action="password_reset")
def user_password(request: HttpRequest, pk: int) -> HttpResponse:
    target = _target(pk)
    form = _valid(request, UserActionForm(request.POST), "Password not reset")
    if form is None:
        return _after(request)
    try:
        path = services.reset_password(request.user, target, form.cleaned_data["reason"])
    except (ValueError, PermissionDenied) as exc:
        messages.error(request, f"Password not reset: {exc}.")
        return _after(request)
    messages.success(
        request, f"{target.get_username()}'s password no longer works; send them the link."
    )
    issued = {"username": target.get_username(), "link": request.build_absolute_uri(path)}
    return _users_page(request, issued=issued)


_FormT = TypeVar("_FormT", bound=Form)


def _valid(request: HttpRequest, form: _FormT, failed: str) -> _FormT | None:
    """``form`` if its fields are valid; else None, with a message naming what is wrong (a
    reason over 500 characters, a role that is none of the three): nothing is changed."""
    if form.is_valid():
        return form
    problems = "; ".join(
        f"{field}: {' '.join(map(str, errors))}" for field, errors in form.errors.items()
    )
    messages.error(request, f"{failed}: {problems}")
    return None


def _changed(request: HttpRequest, failed: str, change: Callable[..., object], *args: Any) -> bool:
    """Run the service ``change(admin, *args)``; False, with a message, if it refused."""
    try:
        change(request.user, *args)
    except (ValueError, PermissionDenied) as exc:
        messages.error(request, f"{failed}: {exc}.")
        return False
    return True
