"""The dashboard in real headless Chromium: log in, search, filter, open, diff, roll back,
delete, keyboard. Parametrized over SQLite, Redis and PostgreSQL stores (see conftest)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

try:  # web-first waits: polled by Playwright's selector engine, so the page's CSP allows them
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)  # as the page's own waits (conftest), not 5 s
except ImportError:  # the browser fixture reports a missing Playwright
    expect = None

from persistence import StatePersistence, conf
from tests.e2e.conftest import PASSWORD, seed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def rows(page: Any) -> list[str]:
    return page.locator("#rows tbody [data-row-link]").all_inner_texts()


def test_search_filter_and_keyboard(e2e_store: StatePersistence, page: Any) -> None:
    seed(e2e_store)
    page.reload()
    assert sorted(rows(page)) == ["agent-1", "agent-2", "session-1"]

    # "/" focuses the search box; typing filters live (debounced) and updates the URL.
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("sess")
    page.wait_for_url(re.compile(r"q=sess"))
    expect(page.locator("#rows tbody [data-row-link]")).to_have_count(1)
    assert rows(page) == ["session-1"]

    # Esc leaves the search box as typed (a search field would clear itself and list all).
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") != "q"
    assert page.input_value("#q") == "sess"
    page.wait_for_timeout(600)  # longer than the search's debounce: no request went out
    assert rows(page) == ["session-1"] and "q=sess" in page.url

    # Tag filter: add a tag, press Enter.
    page.fill("#q", "")
    page.keyboard.press("Escape")
    page.goto(f"{page.base}/s/default/")
    page.fill("#tag-add", "vip")
    page.press("#tag-add", "Enter")
    page.wait_for_url(re.compile(r"tag=vip"))
    page.wait_for_selector(".chip")
    assert rows(page) == ["agent-1"]

    # j / k / Enter open a row.
    page.goto(f"{page.base}/s/default/?order=id")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert page.locator("tr.kbd-active [data-row-link]").inner_text() == "agent-1"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/state/agent-1$"))
    page.wait_for_selector("text=✓ verified")

    # Back returns to the list.
    page.go_back()
    page.wait_for_url(re.compile(r"order=id"))
    page.wait_for_selector("#rows")

    # "?" opens the shortcuts overlay.
    page.keyboard.press("?")
    assert page.locator("#shortcuts").is_visible()


def test_open_diff_rollback_and_delete(e2e_store: StatePersistence, page: Any) -> None:
    seed(e2e_store)
    page.reload()
    page.click("#rows >> text=agent-1")
    page.wait_for_url(re.compile(r"/state/agent-1$"))
    assert page.locator(".jtree").is_visible()
    assert "“done”" not in page.content()  # JSON strings are shown JSON-quoted
    page.wait_for_selector('.j-str:text("\\"done\\"")')

    # Diff of the latest against the previous version: the changed path is listed.
    page.click("text=Diff with v2")
    page.wait_for_url(re.compile(r"/diff/agent-1\?a=2&b=3"))
    page.wait_for_selector("td.path:text-is('$.msg')")
    assert page.locator("td.path", has_text="$.tools[1]").count() == 1

    # Pick two versions from the selectors.
    page.select_option("#a", "1")
    page.click("button:text('Compare')")
    page.wait_for_url(re.compile(r"a=1&b=3"))
    page.wait_for_selector("td.path:text-is('$.tools')")

    # Roll back to v1 from the diff page, with a reason.
    page.click("text=Roll back to v1")
    page.wait_for_url(re.compile(r"/rollback/agent-1\?to=1"))
    page.fill("#id_reason", "e2e says so")
    page.click("button:text('Roll back to v1')")
    page.wait_for_url(re.compile(r"/state/agent-1$"))
    page.wait_for_selector("text=Rolled back to version 1")
    assert page.locator("#timeline", has_text="rollback of v1").count() == 1
    _, meta = e2e_store.load_with_metadata("agent-1")  # type: ignore[misc]
    assert meta.version == 4 and meta.metadata["reason"] == "e2e says so"

    # Delete version 2 from the timeline.
    page.click("#timeline tr:has(a:text-is('v2')) >> text=delete")
    page.wait_for_url(re.compile(r"/delete-version/agent-1\?v=2"))
    page.click("button:text('Delete v2')")
    page.wait_for_url(re.compile(r"/state/agent-1$"))
    page.wait_for_selector("text=Deleted version 2")
    assert [v.version for v in e2e_store.list_versions("agent-1")] == [1, 3, 4]


def test_an_error_message_goes_once_the_next_page_loads(
    e2e_store: StatePersistence, page: Any
) -> None:
    """A failed request leaves an error message; a page that then loads fine means it is stale
    (the store is back, the state was found), so it goes. A poll would not clear it."""
    seed(e2e_store)
    page.goto(f"{page.base}/s/default/")
    page.evaluate("htmx.ajax('GET', '/s/default/state/no-such-state', '#main')")
    page.wait_for_selector("#toasts .msg-error")
    page.evaluate("htmx.ajax('GET', '/s/default/', '#main')")
    page.wait_for_selector("#rows")
    expect(page.locator("#toasts .msg-error")).to_have_count(0)


def test_a_link_inside_the_page_that_finds_nothing_says_so_in_a_message_and_the_title(
    e2e_store: StatePersistence, page: Any
) -> None:
    """The 404 page replaces the part of the page that held the link, so the message cannot
    wait for htmx:responseError, which then fires on a removed element."""
    seed(e2e_store)
    page.goto(f"{page.base}/s/default/state/agent-1")
    page.wait_for_selector("text=✓ verified")
    assert e2e_store.delete_state("agent-1")
    page.click("#main >> text=vs latest >> nth=0")
    page.wait_for_selector("#toasts .msg-error")
    assert page.locator("#toasts .msg-error").count() == 1
    assert page.title() == "Not found · statehub"


def test_back_to_a_page_whose_version_is_gone_shows_why(
    e2e_store: StatePersistence, page: Any
) -> None:
    """Back asks the server (no htmx history copies) and shows its answer even when it is a
    404: the version deleted meanwhile, not the page that was on screen before."""
    seed(e2e_store)
    page.goto(f"{page.base}/s/default/delete-version/agent-1?v=2")
    page.wait_for_selector("text=Delete v2")
    page.click("nav.crumbs >> text=States")
    page.wait_for_url(re.compile(r"/s/default/$"))
    page.wait_for_selector("#rows")
    assert e2e_store.delete_version("agent-1", 2)
    page.go_back()
    page.wait_for_url(re.compile(r"delete-version/agent-1\?v=2$"))
    page.wait_for_selector("text=may have just been deleted")
    assert page.locator("#rows").count() == 0


@pytest.fixture
def memory_store(settings: Any) -> StatePersistence:
    """A memory store as "default" (the live server runs in this process), set before ``page``."""
    settings.STATEHUB_STORES = {"default": f"memory://e2e-layout-{uuid.uuid4().hex}"}
    return conf.get_store()


def test_long_tags_and_right_to_left_text_keep_their_place(
    memory_store: StatePersistence, page: Any
) -> None:
    long_tag = "t" * 128
    memory_store.save_with_metadata({"שלום": 1, "note": "ok"}, "wide", tags=[long_tag, "agent"])
    page.goto(f"{page.base}/s/default/")
    chip = page.locator(f'#rows a.tag[title="{long_tag}"]')
    assert chip.bounding_box()["width"] <= 18 * 16 + 1  # cut with an ellipsis, full in title
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.goto(f"{page.base}/s/default/state/wide")
    # Where the Hebrew key's letters and its value are drawn: without isolation the bidi
    # algorithm drew the line as `"1 : "שלום`, the value left of the key.
    key_x, value_x = page.evaluate(
        """() => {
          const line = [...document.querySelectorAll('.j-line')].find(
            (l) => l.textContent.includes('שלום'));
          const walker = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
          let node;
          while ((node = walker.nextNode()) && !node.data.includes('שלום'));
          const range = document.createRange();  // the four letters alone
          range.setStart(node, node.data.indexOf('שלום'));
          range.setEnd(node, node.data.indexOf('שלום') + 4);
          return [range.getBoundingClientRect().x,
                  line.querySelector('.j-num').getBoundingClientRect().x];
        }"""
    )
    assert key_x < value_x


def test_keyboard_users_can_skip_the_header_and_land_on_each_new_page(
    e2e_store: StatePersistence, page: Any
) -> None:
    seed(e2e_store)
    page.goto(f"{page.base}/s/default/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.click("nav[aria-label=Main] >> text=Stats")  # swapped in by htmx, no page load
    page.wait_for_url(re.compile(r"/stats/$"))
    expect(page.locator("h1")).to_be_focused()
    assert page.evaluate("document.activeElement.textContent") == "Stats"
    page.goto(f"{page.base}/s/default/")
    page.click("#q")
    page.keyboard.type("agent")  # the live search swaps the rows: typing goes on
    page.wait_for_url(re.compile(r"q=agent"))
    expect(page.locator("#rows tbody [data-row-link]")).to_have_count(2)
    assert page.evaluate("document.activeElement.id") == "q"


CLIPPED_TABLES = """() => [...document.querySelectorAll('table')].filter((table) => {
  for (let el = table.parentElement; el && el !== document.body; el = el.parentElement) {
    const overflow = getComputedStyle(el).overflowX;
    if (overflow === 'auto' || overflow === 'scroll') return false;  // it scrolls: reachable
    if (overflow === 'hidden' || overflow === 'clip')
      return table.getBoundingClientRect().right > el.getBoundingClientRect().right + 1;
  }
  return false;
}).length"""


def test_no_table_is_cut_off_on_a_phone(memory_store: StatePersistence, page: Any) -> None:
    """A table wider than a 375 px screen scrolls sideways; in a card that clips, its last
    columns (the workers' Run now buttons) could not be reached at all."""
    memory_store.save_with_metadata({"a": 1}, "phone-" + "x" * 60, tags=["t" * 60])
    cid = memory_store.create_checkpoint("phone-" + "x" * 60, {"a": 1})
    assert cid
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{page.base}/workers/?online=1")  # asked at once: no request left in flight
    assert page.evaluate(CLIPPED_TABLES) == 0, "workers"
    for path in ("/stats/", "/tags/", f"/checkpoints/phone-{'x' * 60}", "/"):
        page.goto(f"{page.base}/s/default{path}")
        assert page.evaluate(CLIPPED_TABLES) == 0, path


def test_a_click_after_the_session_ended_opens_the_whole_login_page_and_leads_back(
    e2e_store: StatePersistence, page: Any
) -> None:
    """htmx follows the login redirect inside its request: without HX-Redirect the login
    page, header and all, would land inside the page, and the next= would be the partial's."""
    seed(e2e_store)
    page.goto(f"{page.base}/s/default/rollback/agent-1?to=1")
    page.context.clear_cookies()  # the session ends (idle timeout, logout elsewhere)
    page.click("nav[aria-label=Main] >> text=Stats")
    page.wait_for_url(re.compile(r"/accounts/login/\?next=%2Fs%2Fdefault%2Frollback"))
    assert page.locator("header.topbar").count() <= 1 and page.locator("#main").count() <= 1
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/s/default/rollback/agent-1\?to=1$"))
    assert page.locator("h1").inner_text() == "Roll back to v1?"
