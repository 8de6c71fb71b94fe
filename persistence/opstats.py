"""Per-operation call counts, error counts and latency percentiles, kept in process."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from typing import Any

_WINDOW = 2048  # latencies kept per operation: enough for stable p99, bounded memory


class OperationStats:
    """Thread-safe counters; ``timed(op)`` wraps one call of a public operation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _EVERY.add(self)
        self._calls: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._latency: dict[str, deque[float]] = {}

    def timed(self, op: str) -> _Timer:
        return _Timer(self, op)

    def record(self, op: str, elapsed: float, *, ok: bool) -> None:
        with self._lock:
            self._calls[op] = self._calls.get(op, 0) + 1
            if not ok:
                self._errors[op] = self._errors.get(op, 0) + 1
            latencies = self._latency.get(op)
            if latencies is None:
                latencies = self._latency[op] = deque(maxlen=_WINDOW)
            latencies.append(elapsed)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``{op: {calls, errors, p50_ms, p95_ms, p99_ms, max_ms}}`` over the recent window."""
        with self._lock:
            items = [
                (op, n, self._errors.get(op, 0), sorted(self._latency[op]))
                for op, n in self._calls.items()
            ]
        return {
            op: {
                "calls": n,
                "errors": errors,
                "p50_ms": _pct(lat, 0.50),
                "p95_ms": _pct(lat, 0.95),
                "p99_ms": _pct(lat, 0.99),
                "max_ms": round(lat[-1] * 1000, 3),
            }
            for op, n, errors, lat in sorted(items)
        }


class _Timer:
    """Times one call (a class, not @contextmanager: this wraps every store operation)."""

    __slots__ = ("_op", "_start", "_stats")

    def __init__(self, stats: OperationStats, op: str) -> None:
        self._stats, self._op = stats, op

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._stats.record(self._op, time.perf_counter() - self._start, ok=exc_type is None)


def _pct(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, round(q * (len(ordered) - 1)))
    return round(ordered[index] * 1000, 3)


_EVERY: weakref.WeakSet[OperationStats] = weakref.WeakSet()


def _after_fork() -> None:
    # A lock that another thread of the parent held at the fork stays held in the child, where
    # that thread does not exist: the child's first call would wait forever.
    for stats in list(_EVERY):
        stats._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
