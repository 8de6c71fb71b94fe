"""A checker for recorded histories of saves and loads on a few states.

An operation is ``(kind, state_id, invoked, completed, version, token)``: ``kind`` is
"write" or "read", the times come from one monotonic clock, a read's ``version`` is what it
saw (None: nothing) and a write's ``version`` is what the store acknowledged. A write that
failed has ``completed=None``: it may or may not have taken effect.

The rules checked, per state (each is what a linearizable register must satisfy):

1. fresh: a read returns the latest write acknowledged before the read was invoked, or a
   newer one - never an older version and never nothing once something was acknowledged;
2. no future: a read returns only a version that some write had been invoked for before the
   read completed (and, once acknowledged, with that write's token);
3. monotonic: a read invoked after another read completed never sees an older version.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Op:
    kind: str
    state_id: str
    invoked: float
    completed: float | None
    version: int | None
    token: str | None


def check_history(raw: Iterable[Any], *, limit: int = 20) -> list[str]:
    """Every violation found (up to ``limit``), as readable sentences; empty when correct."""
    ops = [item if isinstance(item, Op) else Op(*item) for item in raw]
    by_state: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_state[op.state_id].append(op)
    problems: list[str] = []
    for sid, state_ops in sorted(by_state.items()):
        problems += _check_state(sid, state_ops)
        if len(problems) >= limit:
            break
    return problems[:limit]


def _check_state(sid: str, ops: list[Op]) -> list[str]:
    writes = [op for op in ops if op.kind == "write"]
    reads = [op for op in ops if op.kind == "read" and op.completed is not None]
    acked = sorted((w for w in writes if w.completed is not None), key=lambda w: w.completed or 0)
    ack_times = [w.completed for w in acked]
    # The highest acknowledged version at each acknowledgement time (a prefix maximum).
    best: list[int] = []
    for w in acked:
        best.append(max(best[-1] if best else 0, w.version or 0))
    writer_of = {w.version: w for w in acked}
    # A write that failed may still have happened, under a version nobody was told about.
    unknown = {w.token: w for w in writes if w.completed is None}

    problems = []
    for r in reads:
        assert r.completed is not None
        n = bisect.bisect_left(ack_times, r.invoked)  # acked strictly before the read began
        floor = best[n - 1] if n else 0
        seen = r.version or 0
        if seen < floor:
            problems.append(
                f"stale read on {sid!r}: invoked at {r.invoked:.6f}, saw "
                f"{'nothing' if r.version is None else f'version {r.version}'}, but version "
                f"{floor} was acknowledged before it began"
            )
        if r.version is None:
            continue
        writer = writer_of.get(r.version)
        if writer is not None:
            if writer.invoked > r.completed:
                problems.append(
                    f"read from the future on {sid!r}: saw version {r.version} at "
                    f"{r.completed:.6f}, before its write was invoked ({writer.invoked:.6f})"
                )
            elif r.token != writer.token:
                problems.append(
                    f"wrong value on {sid!r}: version {r.version} read token {r.token!r}, "
                    f"the write acknowledged {writer.token!r}"
                )
        elif (maybe := unknown.get(r.token)) is None or maybe.invoked > r.completed:
            problems.append(
                f"read from the future on {sid!r}: saw version {r.version} (token {r.token!r}) "
                "that no write invoked before the read completed could have written"
            )
    problems += _monotonic(sid, reads)
    return problems


def _monotonic(sid: str, reads: list[Op]) -> list[str]:
    """A read invoked after another completed must not see an older version."""
    done = sorted(reads, key=lambda r: r.completed or 0)
    done_times = [r.completed for r in done]
    prefix: list[tuple[int, Op]] = []
    for r in done:
        seen = r.version or 0
        prefix.append(max(prefix[-1], (seen, r), key=lambda x: x[0]) if prefix else (seen, r))
    problems = []
    for r in reads:
        n = bisect.bisect_left(done_times, r.invoked)
        if n and (r.version or 0) < prefix[n - 1][0]:
            earlier = prefix[n - 1][1]
            problems.append(
                f"non-monotonic reads on {sid!r}: a read invoked at {r.invoked:.6f} saw "
                f"version {r.version}, after a read that completed at {earlier.completed:.6f} "
                f"saw version {earlier.version}"
            )
    return problems
