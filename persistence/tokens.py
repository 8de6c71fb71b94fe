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
