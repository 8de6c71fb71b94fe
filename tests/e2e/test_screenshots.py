"""Screenshots of the main pages, light and dark, on the demo data in a SQLite store.

Written to docs/screenshots/ when STATEHUB_SCREENSHOTS=1 (``STATEHUB_SCREENSHOTS=1 pytest
tests/e2e/test_screenshots.py``), else to a temporary folder, so a normal run still checks that
every page renders in a real browser without rewriting the committed images.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from persistence import StatePersistence, conf, demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def demo_store(settings: Any, tmp_path: Path) -> Iterator[StatePersistence]:
    settings.STATEHUB_STORES = {"default": f"sqlite:///{tmp_path / 'demo.sqlite3'}"}
    store = conf.get_store()
    demo.seed(store)
    yield store
    conf.close_stores()


def test_screenshots(demo_store: StatePersistence, page: Any, tmp_path: Path) -> None:
    out = DOCS if os.environ.get("STATEHUB_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    base = f"{page.base}/s/default"
    sid = "agent_run_1000"

    def shot(name: str, path: str, *, full: bool = True) -> None:
        response = page.goto(base + path)
        assert response is not None and response.ok, (path, response and response.status)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / f"{name}.png"), full_page=full)

    shot("states", "/?order=id")
    shot("state", f"/state/{sid}")
    shot("diff", f"/diff/{sid}")
    shot("rollback-confirm", f"/rollback/{sid}?to=1")
    shot("tags", "/tags/")
    shot("stats", "/stats/")
    shot("checkpoints", f"/checkpoints/{sid}")
    page.click("[data-theme-toggle]")
    shot("states-dark", "/?order=id")
    shot("state-dark", f"/state/{sid}")
    shot("diff-dark", f"/diff/{sid}")
    page.click("[data-theme-toggle]")
    page.set_viewport_size({"width": 390, "height": 800})
    shot("states-mobile", "/?order=id", full=False)
    for image in out.glob("*.png"):  # a blank page would be far smaller
        assert image.stat().st_size > 10_000, image.name
