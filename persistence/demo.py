"""Demo data for a first look at the dashboard: a few agent runs, sessions and workflows."""

from __future__ import annotations

import random

from persistence import StatePersistence


def seed(store: StatePersistence, *, runs: int = 40, seed_value: int = 7) -> int:
    """Fill an empty store with versioned demo states; returns how many states were written."""
    rng = random.Random(seed_value)
    written = 0
    for n in range(runs):
        kind = ("agent_run", "user_session", "workflow")[n % 3]
        sid = f"{kind}_{1000 + n}"
        tags = [kind.split("_")[0], rng.choice(["active", "done", "failed"])]
        if n % 5 == 0:
            tags.append("vip")
        state: dict[str, object] = {"user_id": f"u{rng.randint(1, 99)}", "step": 0,
                                    "messages": [], "data": {}}
        for step in range(1, rng.randint(2, 7)):
            state = {
                **state,
                "step": step,
                "messages": [*state["messages"], {"role": "agent", "text": f"step {step} done"}],  # type: ignore[misc]
                "data": {**state["data"], f"result_{step}": rng.random()},  # type: ignore[dict-item]
            }
            store.save_with_metadata(
                state,
                sid,
                tags=tags,
                ttl_seconds=rng.choice([None, 3600, 86400]) if n % 4 == 0 else None,
                metadata={"source": "demo", "step": step},
            )
        written += 1
    return written
