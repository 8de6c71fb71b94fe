"""Shared pieces of the benchmarks: the sample state, a timer, and the ratio table."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import orjson


def sample_state(seed: int = 1) -> dict[str, Any]:
    """A ~1.7 KB agent-run state: ids, a short message history, scores and flags."""
    rng = random.Random(seed)
    words = ["plan", "search", "fetch", "summarise", "answer", "retry", "tool", "result"]
    state = {
        "run_id": f"run-{rng.randint(10**8, 10**9)}",
        "user_id": f"user-{rng.randint(1, 10**6)}",
        "step": 17,
        "status": "running",
        "messages": [
            {
                "role": rng.choice(["user", "agent", "tool"]),
                "text": " ".join(rng.choice(words) for _ in range(12)),
                "tokens": rng.randint(5, 500),
            }
            for _ in range(12)
        ],
        "scores": [round(rng.random(), 4) for _ in range(20)],
        "flags": {"streaming": True, "cached": False, "retries": 2},
    }
    return state


def ops_per_second(fn: Callable[[int], object], n: int, *, warmup: int = 200) -> float:
    """Calls ``fn(i)`` n times after a warm-up; returns calls per second."""
    for i in range(warmup):
        fn(-1 - i)
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def seconds_per_call(fn: Callable[[], object], n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def print_table(title: str, rows: list[tuple[str, float, float, float]]) -> bool:
    """rows: (operation, store ops/s, raw ops/s, target ratio). Returns True if all met."""
    print(f"\n{title}")
    print(f"{'operation':<28}{'store ops/s':>14}{'raw ops/s':>14}{'ratio':>9}{'target':>9}  ok")
    ok = True
    for name, mine, raw, target in rows:
        ratio = mine / raw
        met = ratio >= target
        ok &= met
        print(
            f"{name:<28}{mine:>14,.0f}{raw:>14,.0f}{ratio:>9.2f}{target:>8.2f}x  "
            f"{'yes' if met else 'NO'}"
        )
    return ok


def state_size() -> int:
    return len(orjson.dumps(sample_state()))
