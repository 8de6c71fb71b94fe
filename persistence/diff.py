"""JSON-aware diff of two states: which paths changed, and a folded side-by-side line diff.

Pure Python, no Django: the dashboard caches what these functions return, and anything else
(a CLI, a notebook) can use them as they are. Both halves are capped so a diff of two
megabyte-sized states stays quick to compute and to render; the caps are reported, never silent.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

ChangeKind = Literal["added", "removed", "changed"]
RowKind = Literal["equal", "delete", "insert", "replace", "fold"]

MAX_CHANGES = 1000
MAX_ROWS = 2000
MAX_LINE = 2000  # characters of one line the side-by-side rows keep
MAX_LINES = 60_000  # per side: beyond it a line diff is neither quick nor readable
CONTEXT = 3
SMALL_GAP = 300  # gaps between anchors up to this many lines get difflib's finer matching

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Missing:
    """The value on the side of a change where the path does not exist."""

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"  # pickles (for the cache) as the module singleton


MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class Change:
    """One JSON path whose value differs; ``old``/``new`` are MISSING where absent."""

    path: str
    kind: ChangeKind
    old: Any = MISSING
    new: Any = MISSING


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a side-by-side diff; a ``fold`` row stands for ``folded`` equal lines."""

    kind: RowKind
    left_no: int | None = None
    left: str = ""
    right_no: int | None = None
    right: str = ""
    folded: int = 0


@dataclass(frozen=True, slots=True)
class LineDiff:
    rows: list[Row]
    truncated: bool  # more rows existed than were kept
    too_large: bool  # a side had more than MAX_LINES lines: no line diff was computed
    left_lines: int
    right_lines: int


def path_join(parent: str, key: str | int) -> str:
    """``$`` + ``.name`` for identifier keys, ``["any key"]`` otherwise, ``[3]`` for indexes."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if _IDENTIFIER.match(key):
        return f"{parent}.{key}"
    return f"{parent}[{orjson.dumps(key).decode()}]"


def _same(a: Any, b: Any) -> bool:
    # JSON distinguishes 1, 1.0 and true; Python's == does not.
    return type(a) is type(b) and a == b


def iter_changes(old: Any, new: Any, path: str = "$") -> Iterator[Change]:
    """Every changed leaf path, objects by sorted key, arrays index by index."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            child = path_join(path, key)
            if key not in new:
                yield Change(child, "removed", old=old[key])
            elif key not in old:
                yield Change(child, "added", new=new[key])
            else:
                yield from iter_changes(old[key], new[key], child)
    elif isinstance(old, list) and isinstance(new, list):
        for index in range(max(len(old), len(new))):
            child = path_join(path, index)
            if index >= len(new):
                yield Change(child, "removed", old=old[index])
            elif index >= len(old):
                yield Change(child, "added", new=new[index])
            else:
                yield from iter_changes(old[index], new[index], child)
    elif not _same(old, new):
        yield Change(path, "changed", old=old, new=new)


def changes(old: Any, new: Any, *, limit: int = MAX_CHANGES) -> tuple[list[Change], bool]:
    """The first ``limit`` changes from ``old`` to ``new``, and whether there were more."""
    out: list[Change] = []
    for change in iter_changes(old, new):
        if len(out) == limit:
            return out, True
        out.append(change)
    return out, False


def pretty(value: Any) -> str:
    """Sorted, 2-space indented JSON: the canonical text the line diff compares."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def preview(value: Any, limit: int = 160) -> str:
    """Compact JSON of a value, cut to ``limit`` characters (for the changes table)."""
    if value is MISSING:
        return ""
    text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def line_diff(
    old_text: str, new_text: str, *, context: int = CONTEXT, max_rows: int = MAX_ROWS
) -> LineDiff:
    """Side-by-side rows of two texts; equal runs longer than ``2*context`` are folded."""
    left, right = old_text.splitlines(), new_text.splitlines()
    if len(left) > MAX_LINES or len(right) > MAX_LINES:
        return LineDiff([], False, True, len(left), len(right))
    rows: list[Row] = []
    truncated = False
    for tag, i1, i2, j1, j2 in opcodes(left, right):
        rows.extend(_rows(tag, left, right, i1, i2, j1, j2, context))
        if len(rows) > max_rows:
            rows, truncated = rows[:max_rows], True
            break
    return LineDiff([_cut_row(r) for r in rows], truncated, False, len(left), len(right))


def _cut_row(row: Row) -> Row:
    """The row with each side cut at MAX_LINE characters: a state of a few long strings is a
    few long lines, which made a page of megabytes for the browser to lay out."""
    if len(row.left) <= MAX_LINE and len(row.right) <= MAX_LINE:
        return row
    return replace(row, left=_cut(row.left), right=_cut(row.right))


def _cut(line: str) -> str:
    more = len(line) - MAX_LINE
    return line if more <= 0 else f"{line[:MAX_LINE]} … ({more:,} more characters)"


Opcode = tuple[str, int, int, int, int]


def opcodes(a: list[str], b: list[str]) -> list[Opcode]:
    """difflib-style opcodes, computed the patience way so big inputs stay fast.

    Lines that occur exactly once on each side anchor the alignment (their longest increasing
    run, O(n log n)); only the small gaps between anchors go through difflib, whose own
    matching is quadratic on long runs of small edits. Sorted, indented JSON has mostly
    unique lines, so this is nearly always exact.
    """
    count_a, count_b = Counter(a), Counter(b)
    where_b = {line: j for j, line in enumerate(b) if count_b[line] == 1}
    pairs = [
        (i, where_b[line]) for i, line in enumerate(a) if count_a[line] == 1 and line in where_b
    ]
    anchors = _increasing(pairs)
    out: list[Opcode] = []
    i0 = j0 = 0
    for i, j in [*anchors, (len(a), len(b))]:
        out.extend(_gap(a, b, i0, i, j0, j))
        if i < len(a):
            out.append(("equal", i, i + 1, j, j + 1))
        i0, j0 = i + 1, j + 1
    return _merge(out)


def _increasing(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest run of ``pairs`` (sorted by i) whose j also increases."""
    tails: list[int] = []  # tails[k]: smallest j ending a run of length k+1
    tail_at: list[int] = []  # index into pairs of that tail
    back: list[int] = [-1] * len(pairs)
    for n, (_, j) in enumerate(pairs):
        k = bisect.bisect_left(tails, j)
        if k == len(tails):
            tails.append(j)
            tail_at.append(n)
        else:
            tails[k], tail_at[k] = j, n
        back[n] = tail_at[k - 1] if k else -1
    run: list[tuple[int, int]] = []
    n = tail_at[-1] if tail_at else -1
    while n >= 0:
        run.append(pairs[n])
        n = back[n]
    return run[::-1]


def _gap(a: list[str], b: list[str], i1: int, i2: int, j1: int, j2: int) -> list[Opcode]:
    if i1 == i2 and j1 == j2:
        return []
    if i1 == i2:
        return [("insert", i1, i2, j1, j2)]
    if j1 == j2:
        return [("delete", i1, i2, j1, j2)]
    if (i2 - i1) + (j2 - j1) > SMALL_GAP:
        return [("replace", i1, i2, j1, j2)]
    matcher = difflib.SequenceMatcher(None, a[i1:i2], b[j1:j2], autojunk=False)
    return [
        (tag, i1 + x1, i1 + x2, j1 + y1, j1 + y2) for tag, x1, x2, y1, y2 in matcher.get_opcodes()
    ]


def _merge(ops: list[Opcode]) -> list[Opcode]:
    """Join neighbouring opcodes of the same kind (anchor lines come one at a time)."""
    merged: list[Opcode] = []
    for op in ops:
        if merged and merged[-1][0] == op[0]:
            tag, i1, _, j1, _ = merged[-1]
            merged[-1] = (tag, i1, op[2], j1, op[4])
        else:
            merged.append(op)
    return merged


def _rows(
    tag: str, left: list[str], right: list[str], i1: int, i2: int, j1: int, j2: int, context: int
) -> list[Row]:
    if tag == "equal":
        return _equal_rows(left, i1, i2, j1, context, first=i1 == 0, last=i2 == len(left))
    if tag == "delete":
        return [Row("delete", i + 1, left[i]) for i in range(i1, i2)]
    if tag == "insert":
        return [Row("insert", right_no=j + 1, right=right[j]) for j in range(j1, j2)]
    out = []
    for k in range(max(i2 - i1, j2 - j1)):
        i, j = i1 + k, j1 + k
        out.append(
            Row(
                "replace",
                i + 1 if i < i2 else None,
                left[i] if i < i2 else "",
                j + 1 if j < j2 else None,
                right[j] if j < j2 else "",
            )
        )
    return out


def _equal_rows(
    left: list[str], i1: int, i2: int, j1: int, context: int, *, first: bool, last: bool
) -> list[Row]:
    """Keep ``context`` lines next to each change; fold the rest of the run into one row."""
    head = 0 if first else context
    tail = 0 if last else context
    n = i2 - i1
    if n <= head + tail + 1:
        keep = [range(n)]
        folded = 0
    else:
        keep = [range(head), range(n - tail, n)]
        folded = n - head - tail

    def equal(k: int) -> Row:
        return Row("equal", i1 + k + 1, left[i1 + k], j1 + k + 1, left[i1 + k])

    rows = [equal(k) for k in keep[0]]
    if folded:
        rows.append(Row("fold", folded=folded))
        rows.extend(equal(k) for k in keep[1])
    return rows
