"""Demo data for a first look at the dashboard: agent runs, user sessions and workflows.

Each state gets a few versions that tell a small story (an agent calling tools, a cart
filling up, a workflow moving through its steps), so the timeline, diff and rollback pages
have something worth looking at. Deterministic for a given ``seed_value``.
"""

from __future__ import annotations

import random
from typing import Any

from persistence import StatePersistence

_TOOLS = ["search", "fetch_url", "run_sql", "summarize", "send_email", "code_exec"]
_STEPS = ["received", "validated", "enriched", "approved", "shipped", "closed"]
_ITEMS = ["sku-1042", "sku-2210", "sku-3307", "sku-4415", "sku-5521"]


def _agent_versions(rng: random.Random, n: int) -> list[dict[str, Any]]:
    state: dict[str, Any] = {
        "run_id": f"run-{n:04}",
        "model": rng.choice(["gpt-4o", "claude-sonnet", "llama-70b"]),
        "goal": rng.choice(["Answer a billing question", "Summarize a report", "Fix a bug"]),
        "messages": [],
        "tool_calls": [],
        "memory": {"facts": [], "scratchpad": ""},
        "usage": {"input_tokens": 0, "output_tokens": 0},
        "status": "running",
    }
    versions = []
    for step in range(1, rng.randint(3, 7)):
        tool = rng.choice(_TOOLS)
        state = {
            **state,
            "messages": [
                *state["messages"],
                {"role": "assistant", "content": f"Step {step}: calling {tool}"},
            ],
            "tool_calls": [
                *state["tool_calls"],
                {"tool": tool, "ok": rng.random() > 0.15, "ms": rng.randint(20, 1800)},
            ],
            "memory": {
                "facts": [*state["memory"]["facts"], f"fact #{step}"],
                "scratchpad": f"thinking about step {step + 1}",
            },
            "usage": {
                "input_tokens": state["usage"]["input_tokens"] + rng.randint(200, 2000),
                "output_tokens": state["usage"]["output_tokens"] + rng.randint(50, 600),
            },
        }
        versions.append(state)
    versions[-1] = {**versions[-1], "status": rng.choice(["done", "done", "failed"])}
    return versions


def _session_versions(rng: random.Random, n: int) -> list[dict[str, Any]]:
    state: dict[str, Any] = {
        "user_id": f"u{rng.randint(100, 999)}",
        "locale": "en-US",
        "cart": [],
        "preferences": {"theme": "light"},
        "pages_seen": 0,
    }
    versions = []
    for _ in range(rng.randint(2, 5)):
        cart = [*state["cart"], {"sku": rng.choice(_ITEMS), "qty": rng.randint(1, 3)}]
        state = {**state, "cart": cart, "pages_seen": state["pages_seen"] + rng.randint(1, 9)}
        if rng.random() < 0.3:
            state = {**state, "preferences": {"theme": "dark"}}
        versions.append(state)
    return versions


def _workflow_versions(rng: random.Random, n: int) -> list[dict[str, Any]]:
    versions = []
    history: list[dict[str, Any]] = []
    for step in _STEPS[: rng.randint(2, len(_STEPS))]:
        history = [*history, {"step": step, "by": rng.choice(["system", "alice", "bob"])}]
        versions.append(
            {
                "order_id": f"ord-{5000 + n}",
                "current": step,
                "history": history,
                "amount": {"value": round(rng.uniform(10, 900), 2), "currency": "EUR"},
            }
        )
    return versions


def seed(store: StatePersistence, *, runs: int = 40, seed_value: int = 7) -> int:
    """Fill an empty store with versioned demo states; returns how many states were written."""
    rng = random.Random(seed_value)
    makers = {
        "agent_run": _agent_versions,
        "user_session": _session_versions,
        "workflow": _workflow_versions,
    }
    written = 0
    for n in range(runs):
        kind = ("agent_run", "user_session", "workflow")[n % 3]
        sid = f"{kind}_{1000 + n}"
        versions = makers[kind](rng, n)
        tags = [kind.split("_")[0], rng.choice(["active", "done", "failed"])]
        if n % 5 == 0:
            tags.append("vip")
        ttl = rng.choice([600, 3600, 86400, 7 * 86400]) if n % 4 == 0 else None
        for step, state in enumerate(versions, start=1):
            store.save_with_metadata(
                state, sid, tags=tags, ttl_seconds=ttl, metadata={"source": "demo", "step": step}
            )
        if kind == "agent_run" and n % 2 == 0:
            store.create_checkpoint(sid, versions[0], metadata={"label": "after first step"})
        written += 1
    # One larger state, to show the size charts and the JSON viewer on something bigger.
    big = {
        "documents": [
            {
                "id": i,
                "title": f"Document {i}",
                "body": "lorem ipsum " * 40,
                "scores": [rng.random() for _ in range(5)],
            }
            for i in range(150)
        ]
    }
    store.save_with_metadata(
        big, "rag_index_main", tags=["rag", "active"], metadata={"source": "demo"}
    )
    return written + 1
