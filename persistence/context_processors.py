"""Template context of every page: the user's role, so templates hide what it cannot use."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from persistence import roles


def roles_context(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {
        "statehub_role": roles.role_of(user),
        "can_view": roles.has_role(user, "viewer"),
        "can_operate": roles.has_role(user, "operator"),
        "can_admin": roles.has_role(user, "admin"),
    }
