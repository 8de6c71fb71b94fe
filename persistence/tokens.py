"""The token of the one-time set-password links that admins hand out."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.tokens import PasswordResetTokenGenerator


class SetPasswordTokenGenerator(PasswordResetTokenGenerator):
    """Django's password-reset token, also bound to what the account may reach.

    A dashboard admin who is not a superuser may issue links only for accounts without access
    to the Django admin (roles.can_manage). Django's token would outlive a later promotion:
    this one stops working once the account becomes staff or superuser, or is deactivated.
    Its own salt also voids every link issued before it was introduced."""

    key_salt = "persistence.tokens.SetPasswordTokenGenerator"

    def _make_hash_value(self, user: Any, timestamp: int) -> str:
        base = super()._make_hash_value(user, timestamp)
        return f"{base}|{user.is_staff}|{user.is_superuser}|{user.is_active}"


set_password_tokens = SetPasswordTokenGenerator()

_ACCESS = ("is_active", "is_staff", "is_superuser")


def void_pending_links(
    sender: Any, instance: Any, raw: bool = False, update_fields: Any = None, **_: Any
) -> None:
    """pre_save of the user model, for whole-object saves (the Django admin's): when an account
    waiting for its password is promoted or demoted, give it a new unusable password, so that
    the link voided by the change is not revived by undoing it. The dashboard's own changes
    (services._set_active) do this themselves on the current row."""
    if raw or update_fields is not None or instance.pk is None:
        return
    if instance.has_usable_password():
        return
    before = sender._default_manager.filter(pk=instance.pk).values(*_ACCESS).first()
    if before and any(before[flag] != getattr(instance, flag) for flag in _ACCESS):
        instance.set_unusable_password()


def connect_signals() -> None:
    from django.contrib.auth import get_user_model
    from django.db.models.signals import pre_save

    pre_save.connect(void_pending_links, sender=get_user_model(), dispatch_uid="void_links")
