"""Forms of the dashboard: the states filter and the reason asked for before a change."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from persistence import validation as check
from persistence.roles import ROLES
from persistence.selectors import StateQuery

ORDERS = [
    ("-updated", "Last update, newest first"),
    ("updated", "Last update, oldest first"),
    ("id", "State id, A→Z"),
    ("-id", "State id, Z→A"),
]


class AnyTagsField(forms.MultipleChoiceField):
    """Repeated ``tag`` parameters; any tag is valid (the store validates it)."""

    def valid_value(self, value: str) -> bool:
        return True


class StateFilterForm(forms.Form):
    """The states page query: ``?q=prefix&tag=a&tag=b&match=any&order=-updated&cursor=…``
    (or ``before=…`` for the page before)."""

    q = forms.CharField(required=False, max_length=256, strip=False)
    tag = AnyTagsField(required=False)
    match = forms.ChoiceField(choices=[("any", "any"), ("all", "all")], required=False)
    order = forms.ChoiceField(choices=ORDERS, required=False)
    cursor = forms.CharField(required=False, max_length=4096)
    before = forms.CharField(required=False, max_length=4096)

    def clean_tag(self) -> list[str]:
        tags = [t.strip() for t in self.cleaned_data.get("tag") or [] if t and t.strip()]
        return list(dict.fromkeys(tags))[:64]

    def clean_q(self) -> str:
        return str(self.cleaned_data.get("q") or "").strip()

    def query(self) -> StateQuery:
        data = self.cleaned_data if self.is_valid() else {}
        return StateQuery(
            prefix=data.get("q") or None,
            tags=tuple(data.get("tag") or ()),
            match=data.get("match") or "any",
            order=data.get("order") or "-updated",
            # A link carries one of the two; should both come, the page after wins.
            cursor=data.get("cursor") or None,
            before=None if data.get("cursor") else data.get("before") or None,
        )


class ReasonForm(forms.Form):
    """Why an operator rolls back or deletes: kept in the audit log, and in a rollback's new
    version's metadata."""

    reason = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Optional: why?"}),
    )


class RollbackForm(ReasonForm):
    version = forms.IntegerField(min_value=1, max_value=check.MAX_STORED_VERSION)
    # One per rendered form: the same form sent twice (a stale page, a resubmission) is one
    # rollback, as the store's write_id makes it.
    write_id = forms.RegexField(regex=r"\A[0-9a-f]{32}\Z", required=False)
    # The latest version the confirmation showed: a state saved since is confirmed again.
    seen = forms.IntegerField(min_value=1, max_value=check.MAX_STORED_VERSION, required=False)
    warned = forms.BooleanField(required=False)  # the operator was told it moved on, once


class DeleteVersionForm(ReasonForm):
    version = forms.IntegerField(min_value=1, max_value=check.MAX_STORED_VERSION)


ROLE_CHOICES = [(role, role) for role in ROLES]


class UserCreateForm(forms.Form):
    """A new dashboard account: it sets its own password through a one-time link."""

    username = forms.RegexField(
        regex=r"^[\w.@+-]+\Z",
        max_length=150,
        error_messages={"invalid": "letters, digits and @ . + - _ only"},
    )
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial="viewer")

    def clean_username(self) -> str:
        # A taken name is invalid input, refused before anything is attempted (and audited);
        # the service checks again, inside its audit, for a name taken in between.
        # Compared as it will be stored (NFKC): fullwidth letters are saved as ASCII ones.
        name: str = get_user_model().normalize_username(self.cleaned_data["username"])
        if get_user_model().objects.filter(username__iexact=name).exists():
            raise forms.ValidationError(f"a user named {name!r} already exists")
        return name


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)
    reason = forms.CharField(required=False, max_length=500)


class UserActionForm(forms.Form):
    reason = forms.CharField(required=False, max_length=500)


class AuditFilterForm(forms.Form):
    """The audit page query: ``?user=&action=&outcome=&store=&state=&since=&until=&cursor=``."""

    user = forms.CharField(required=False, max_length=150)
    action = forms.ChoiceField(required=False, choices=[("", "any action")])
    outcome = forms.ChoiceField(
        required=False,
        choices=[("", "any outcome"), ("ok", "ok"), ("denied", "denied"), ("error", "error")],
    )
    store = forms.CharField(required=False, max_length=200)
    state = forms.CharField(required=False, max_length=512, strip=False)
    since = forms.DateTimeField(required=False)
    until = forms.DateTimeField(required=False)
    cursor = forms.IntegerField(required=False, min_value=1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from persistence.models import AuditEntry

        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [("", "any action"), *AuditEntry.Action.choices]  # type: ignore[attr-defined]
