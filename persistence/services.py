"""Writes the dashboard makes: rollback and deletes on a store, and user management.

Every function takes the acting user (and the operator's reason), checks its role and writes
exactly one audit row (persistence.audit.audited): ``ok``, ``denied`` (PermissionDenied is
raised, nothing changed) or ``error`` (the exception propagates). Views, commands and tasks all
come through here.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from persistence import conf, roles
from persistence.audit import Action, audited
from persistence.store import StatePersistence
from persistence.tokens import set_password_tokens
from persistence.types import StateMetadata


class LastAdminError(ValueError):
    """The change would leave the dashboard without an active admin."""


def _actor(user: Any) -> str:
    return str(getattr(user, "get_username", lambda: "")() or "anonymous")


def _store_name(store: StatePersistence, name: str) -> str:
    if name:
        return name
    for candidate in conf.store_names():  # callers outside the views: find it by identity
        if conf._open.get(candidate) is store:
            return candidate
    return ""


# ---------------------------------------------------------------------- states


def rollback_state(
    store: StatePersistence,
    user: Any,
    state_id: str,
    version: int,
    reason: str = "",
    *,
    store_name: str = "",
    write_id: str | None = None,
) -> StateMetadata:
    """Write a new version equal to ``version``, recording who did it and why.

    Raises StateNotFoundError / VersionPrunedError when the target is gone. A ``write_id``
    already used for this state returns the version it wrote instead of writing another.
    """
    where = {"store": _store_name(store, store_name), "state_id": state_id, "reason": reason}
    with audited(Action.ROLLBACK, user, "operator", version=version, **where) as details:
        metadata: dict[str, Any] = {"by": _actor(user)}
        if reason:
            metadata["reason"] = reason
        meta = store.rollback(state_id, version, metadata=metadata, write_id=write_id)
        # With the version's write time, which its number alone is not (numbers start again
        # at 1 when a state is deleted): the timeline matches both (selectors.rollback_actors).
        details["new_version"] = meta.version
        details["created_at"] = meta.created_at.timestamp()
    return meta


def delete_version(
    store: StatePersistence,
    user: Any,
    state_id: str,
    version: int,
    reason: str = "",
    *,
    store_name: str = "",
) -> bool:
    """Delete one version (the state too if it was the last one); True if it existed."""
    where = {"store": _store_name(store, store_name), "state_id": state_id, "reason": reason}
    with audited(Action.DELETE_VERSION, user, "operator", version=version, **where) as details:
        existed = store.delete_version(state_id, version)
        details["existed"] = existed
    return existed


def delete_state(
    store: StatePersistence, user: Any, state_id: str, reason: str = "", *, store_name: str = ""
) -> bool:
    """Delete a state with all its versions and checkpoints; True if it existed."""
    where = {"store": _store_name(store, store_name), "state_id": state_id, "reason": reason}
    with audited(Action.DELETE_STATE, user, "operator", **where) as details:
        existed = store.delete_state(state_id)
        details["existed"] = existed
    return existed


# ---------------------------------------------------------------------- users


def active_admins() -> Any:
    """Active accounts with the admin role: superusers and members of the admin group."""
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name="admin"))
        .distinct()
    )


class ProtectedAccountError(PermissionDenied):
    """The target account can log in to the Django admin: only a superuser may change it."""


def _check_manageable(user: Any, target: Any) -> None:
    if not roles.can_manage(user, target):
        kind = "a superuser" if target.is_superuser else "a staff account"
        raise ProtectedAccountError(
            f"{target.get_username()} is {kind} (it can log in to the Django admin); "
            f"only a superuser can change it"
        )


def _keeps_an_admin(target: Any) -> None:
    """Raise LastAdminError if ``target`` is the only active admin left.

    Call it inside the transaction that demotes or deactivates ``target``: it locks the admin
    group's row until that transaction ends, so two admins removing each other at once are
    checked one after the other (on PostgreSQL each would otherwise see the other still there
    and both succeed). SQLite has no row locks; there the second writer fails instead."""
    list(Group.objects.select_for_update().filter(name="admin").values_list("pk", flat=True))
    if roles.role_of(target) != "admin":
        return
    if not active_admins().exclude(pk=target.pk).exists():
        raise LastAdminError(f"{target.get_username()} is the last active admin")


def set_password_path(target: Any) -> str:
    """The one-time set-password link of ``target`` (persistence.tokens).

    The token is bound to the current password hash and last login, so it stops working once
    used, and after PASSWORD_RESET_TIMEOUT seconds; and to the account's staff, superuser and
    active flags, so a promotion voids it."""
    uid = urlsafe_base64_encode(force_bytes(target.pk))
    token = set_password_tokens.make_token(target)
    return reverse("password_reset_confirm", args=[uid, token])


def _set_group(target: Any, role: roles.Role) -> None:
    target.groups.remove(*Group.objects.filter(name__in=roles.ROLES))
    target.groups.add(Group.objects.get(name=role))
    roles.forget(target)


def create_user(
    user: Any, *, username: str, email: str, role: roles.Role, reason: str = ""
) -> tuple[Any, str]:
    """A new active account with ``role`` and no usable password; returns it and its link."""
    model = get_user_model()
    username = model.normalize_username(username)  # as it will be stored (NFKC)
    with audited(Action.USER_CREATE, user, "admin", reason=reason) as details:
        details.update(target=username, role=role)
        if model.objects.filter(username__iexact=username).exists():
            raise ValueError(f"a user named {username!r} already exists")
        try:
            with transaction.atomic():
                target = model.objects.create_user(username=username, email=email)
                target.set_unusable_password()
                target.save(update_fields=["password"])
                _set_group(target, role)
        except IntegrityError as exc:  # taken in between by another request
            raise ValueError(f"a user named {username!r} already exists") from exc
        details["target_id"] = target.pk
    return target, set_password_path(target)


def set_role(user: Any, target: Any, role: roles.Role, reason: str = "") -> None:
    """Give ``target`` exactly ``role``; a superuser stays admin (change it in Django admin)."""
    with audited(Action.USER_ROLE, user, "admin", reason=reason) as details:
        details.update(
            target=target.get_username(),
            target_id=target.pk,
            role=role,
            previous=roles.role_of(target),
        )
        _check_manageable(user, target)
        if target.is_superuser and role != "admin":
            raise ValueError(f"{target.get_username()} is a superuser: always an admin")
        with transaction.atomic():
            if role != "admin":
                _keeps_an_admin(target)
            _set_group(target, role)


def deactivate_user(user: Any, target: Any, reason: str = "") -> None:
    """Stop ``target`` from logging in (its sessions end at their next request)."""
    with audited(Action.USER_DEACTIVATE, user, "admin", reason=reason) as details:
        details.update(target=target.get_username(), target_id=target.pk)
        _check_manageable(user, target)
        with transaction.atomic():
            _keeps_an_admin(target)
            _set_active(target, False)


def reactivate_user(user: Any, target: Any, reason: str = "") -> None:
    with audited(Action.USER_REACTIVATE, user, "admin", reason=reason) as details:
        details.update(target=target.get_username(), target_id=target.pk)
        _check_manageable(user, target)
        with transaction.atomic():
            _set_active(target, True)


def _set_active(target: Any, active: bool) -> None:
    """Save ``target``'s active flag from its current row (not from the object, which may be
    stale). An account waiting for its password gets a new unusable one: its set-password
    link, which stops matching while the flag differs, must not match again when it is set
    back (the link may have leaked)."""
    # NO KEY UPDATE, as a plain UPDATE would take: FOR UPDATE would also wait for the key-share
    # lock that adding the user to a group holds while it waits for the admin group's row,
    # which a deactivation holds (_keeps_an_admin): a deadlock.
    row = type(target)._default_manager.select_for_update(no_key=True).get(pk=target.pk)
    if row.is_active != active:  # a repeated click must not void the link of a waiting account
        row.is_active = active
        fields = ["is_active"]
        if not row.has_usable_password():
            row.set_unusable_password()
            fields.append("password")
        row.save(update_fields=fields)
    target.is_active, target.password = row.is_active, row.password
    roles.forget(target)


def reset_password(user: Any, target: Any, reason: str = "") -> str:
    """Make ``target``'s password unusable now and return a one-time set-password link."""
    with audited(Action.PASSWORD_RESET, user, "admin", reason=reason) as details:
        details.update(target=target.get_username(), target_id=target.pk)
        _check_manageable(user, target)
        target.set_unusable_password()
        target.save(update_fields=["password"])
    return set_password_path(target)
