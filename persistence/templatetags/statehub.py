"""Filters and tags of the dashboard: sizes, durations, the JSON tree and the header.

Everything that reaches HTML from a state, id, tag or metadata is escaped here or by the
template's autoescape; the JSON tree is built from escaped pieces only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from django import template
from django.urls import NoReverseMatch, reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from persistence import conf, diff, roles

register = template.Library()

TREE_MAX_NODES = 5000
TREE_MAX_STRING = 2000  # characters of one string or key the tree shows
OPEN_DEPTH = 2
# Invisible characters that reorder the text around them (bidi embeddings, overrides, isolates,
# marks): ``visible`` writes them as JSON escapes, so "abc\u202e" cannot pass for something else.
_BIDI = str.maketrans(
    {
        c: f"\\u{c:04x}"
        for c in (0x61C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
    }
)


@register.filter
def duration(seconds: float | None) -> str:
    """``3725`` -> ``1h 2m``; empty for None."""
    if seconds is None:
        return ""
    s = int(seconds)
    if s <= 0:
        return "expired"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            major, rest = divmod(s, size)
            minor = {"d": (rest // 3600, "h"), "h": (rest // 60, "m"), "m": (rest, "s")}[unit]
            return f"{major}{unit} {minor[0]}{minor[1]}" if minor[0] else f"{major}{unit}"
    return f"{s}s"


@register.filter
def ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


@register.filter
def as_json(value: Any) -> str:
    """Indented JSON text (escaped later by autoescape)."""
    return visible(
        orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str)
    )


@register.filter
def visible(value: Any) -> str:
    """Text (JSON text, a tag, a metadata value) with its bidi controls written as \\u escapes,
    which JSON reads back the same: shown as they are, they would silently reorder what
    follows them."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text.translate(_BIDI)


@register.filter
def audit_state_url(entry: Any) -> str:
    """The state page an audit row is about, or "" (the row may name anything a POST sent)."""
    if not entry.store or not entry.state_id:
        return ""
    try:
        return reverse("persistence:state", args=[entry.store, entry.state_id])
    except NoReverseMatch:
        return ""


@register.filter
def as_json_line(value: Any) -> str:
    """Compact one-line JSON text (escaped later by autoescape)."""
    return visible(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str))


@register.filter
def audit_details(details: Any) -> str:
    """An audit row's details for people: ``key: value`` pairs, a write time as a UTC date
    (the row's JSON, in the CSV export and the title, keeps the exact values)."""
    if not isinstance(details, dict):
        return as_json_line(details) if details else ""
    parts = []
    for key, value in details.items():
        if key == "new_version":
            continue  # the Version column shows it
        if key == "created_at" and isinstance(value, int | float):
            shown = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        elif isinstance(value, bool):
            shown = "yes" if value else "no"
        elif isinstance(value, str | int | float):
            shown = str(value)
        else:
            shown = as_json_line(value)
        parts.append(f"{key.replace('_', ' ')}: {shown}")
    return visible(" · ".join(parts))


@register.filter
def preview(value: Any) -> str:
    return visible(diff.preview(value))


@register.filter
def is_missing(value: Any) -> bool:
    return value is diff.MISSING


@register.filter
def get(mapping: dict[Any, Any], key: Any) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


@register.simple_tag
def json_tree(value: Any, max_nodes: int = TREE_MAX_NODES) -> SafeString:
    """The value as nested, collapsible ``<details>``, syntax classes on every token."""
    out: list[str] = []
    budget = [max_nodes]
    _node(out, None, value, 0, budget, last=True)
    if budget[0] < 0:
        out.append(
            f'<p class="j-cut">Tree cut at {max_nodes} nodes: download the JSON for all of it.</p>'
        )
    return mark_safe('<div class="jtree" data-jtree>' + "".join(out) + "</div>")


def _key_html(key: str | int | None) -> str:
    if key is None:
        return ""
    if isinstance(key, int):
        return f'<span class="j-index">{key}</span><span class="j-punct">: </span>'
    return f'<span class="j-key">{_string_html(key)}</span><span class="j-punct">: </span>'


def _string_html(text: str) -> str:
    """A JSON string for the tree: bidi controls escaped, the inside isolated (<bdi>: right-to-
    left text stays between its quotes), and cut at TREE_MAX_STRING characters."""
    shown = visible(orjson.dumps(text[:TREE_MAX_STRING]))[1:-1]
    more = len(text) - TREE_MAX_STRING
    cut = f'<span class="j-cut-inline">… {more:,} more characters</span>' if more > 0 else ""
    return f'"<bdi>{escape(shown)}</bdi>{cut}"'


def _scalar_html(value: Any) -> str:
    if value is None:
        return '<span class="j-null">null</span>'
    if isinstance(value, bool):
        return f'<span class="j-bool">{"true" if value else "false"}</span>'
    if isinstance(value, int | float):
        return f'<span class="j-num">{escape(orjson.dumps(value).decode())}</span>'
    return f'<span class="j-str">{_string_html(value)}</span>'


def _node(
    out: list[str], key: str | int | None, value: Any, depth: int, budget: list[int], *, last: bool
) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        return
    comma = "" if last else '<span class="j-punct">,</span>'
    if not isinstance(value, dict | list) or not value:
        text = (
            ("{}" if isinstance(value, dict) else "[]")
            if isinstance(value, dict | list)
            else _scalar_html(value)
        )
        if isinstance(value, dict | list):
            text = f'<span class="j-punct">{text}</span>'
        out.append(f'<div class="j-line">{_key_html(key)}{text}{comma}</div>')
        return
    is_dict = isinstance(value, dict)
    opening, closing = ("{", "}") if is_dict else ("[", "]")
    count = f"{len(value)} {'key' if is_dict else 'item'}{'' if len(value) == 1 else 's'}"
    is_open = " open" if depth < OPEN_DEPTH else ""
    out.append(
        f'<details class="j-node"{is_open}><summary>{_key_html(key)}'
        f'<span class="j-punct">{opening}</span><span class="j-count">{count}</span>'
        f'<span class="j-ellipsis j-punct">…{closing}{"" if last else ","}</span>'
        f'</summary><div class="j-children">'
    )
    items: list[tuple[Any, Any]] = (
        list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    )
    for i, (k, v) in enumerate(items):
        _node(out, k, v, depth + 1, budget, last=i == len(items) - 1)
        if budget[0] < 0:
            break
    out.append(
        f'</div><div class="j-line j-close"><span class="j-punct">{closing}</span>'
        f"{comma}</div></details>"
    )


@register.inclusion_tag("persistence/_nav.html", takes_context=True)
def statehub_nav(context: template.Context) -> dict[str, Any]:
    """The header's links for the store in the URL (or the default store)."""
    request = context.get("request")
    match = getattr(request, "resolver_match", None)
    try:
        names = conf.store_names()
    except ValueError:
        names = []
    current = (match.kwargs.get("store") if match else None) or (names[0] if names else "")
    if current not in names and names:
        current = names[0]
    links = [
        (label, reverse(f"persistence:{name}", args=[current]))
        for label, name in (("States", "states"), ("Tags", "tags"), ("Stats", "stats"))
        if current
    ]
    role = roles.role_of(context.get("user"))
    return {
        "links": links,
        "role": role,
        "workers_url": reverse("persistence:workers"),
        "audit_url": reverse("persistence:audit"),
        "users_url": reverse("persistence:users") if role == "admin" else "",
        "stores": names,
        "current": current,
        "request": request,
        "user": context.get("user"),
    }


@register.filter
def size(num: int | None) -> str:
    """Bytes as ``812 B`` / ``14.5 KB`` / ``3.2 MB`` (cheaper than filesizeformat in big tables)."""
    if num is None:
        return ""
    if num < 1024:
        return f"{num} B"
    value = num / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


@register.filter
def ago(when: datetime | None, now: datetime | None = None) -> str:
    """``3m ago`` / ``2h ago`` / ``5d ago``: short relative times for tables."""
    if when is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < 60:
        return "just now" if seconds < 5 else f"{int(seconds)}s ago"
    unit, span = next((u, s) for u, s in (("d", 86400), ("h", 3600), ("m", 60)) if seconds >= s)
    return f"{int(seconds // span)}{unit} ago"


@register.filter
def iso(when: datetime | None) -> str:
    return "" if when is None else when.isoformat(sep=" ", timespec="seconds")
