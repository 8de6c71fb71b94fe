"""Hostile content in real Chromium, under the real Content-Security-Policy.

Every payload is stored as state content, a state id, a tag, custom metadata, an audit
username / reason / state id and a username; then the states list, the state pages, a diff,
the tags page, the audit page and the users page are loaded. Nothing may run (no dialog), no
element or attribute a payload would create may exist, no request may go to a marker URL, and
no CSP violation may be reported (the policy is the second line; escaping is the first).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from persistence import StatePersistence, audit, conf

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAYLOADS = [
    "<script>alert('XSS1')</script>",
    "<img src=x onerror=\"alert('XSS2')\" class=xss-mark>",
    '"><img src=x id=XSS3 onerror=alert(3)>',
    "'><svg id=XSS4 onload=alert(4)>",
    "<svg/onload=alert('XSS5')>",
    '<div hx-get="/xss-XSS6" hx-trigger="load" id="XSS6">x</div>',
    "{{ 7*7 }}XSS7",
    "{% debug %}XSS8{% now 'Y' %}",
    "javascript:alert('XSS9')",
    '<a href="javascript:alert(10)" id="XSS10">click</a>',
    '<iframe src="/xss-XSS11" id="XSS11"></iframe>',
    "<body onload=alert(12)>",
    "<input autofocus onfocus=alert(13) id=XSS13>",
    "<details open ontoggle=alert(14) id=XSS14>",
    "</textarea><script>alert(15)</script>",
    "</title><script>alert(16)</script>",
    "<style>@import '/xss-XSS17';</style>",
    "<link rel=stylesheet href=/xss-XSS18>",
    '<base href="/xss-XSS19/">',
    '<meta http-equiv="refresh" content="0;url=/xss-XSS20">',
    '<object data="/xss-XSS21" id="XSS21"></object>',
    '<embed src="/xss-XSS22" id="XSS22">',
    '<form action="/xss-XSS23"><button id=XSS23>go</button></form>',
    '<img src="/xss-XSS24" id="XSS24">',
    '<div hx-post="/xss-XSS25" hx-trigger="load" id="XSS25"></div>',
    '<div hx-on:click="alert(26)" id="XSS26">x</div>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(27)>",
    '"onmouseover="alert(28)" data-xss="XSS28',
    "' autofocus onfocus='alert(29)' data-xss='XSS29",
    "<scr<script>ipt>alert(30)</script>",
    "</pre><script>alert(31)</script><pre>",
    '<video><source onerror="alert(32)" id="XSS32"></video>',
    "<template><script>alert(33)</script></template>",
    '<noscript><p title="</noscript><img src=x onerror=alert(34)>">',
    "${alert(35)}`XSS35`",
    '<a hx-get="/xss-XSS36" hx-trigger="load delay:1ms" id="XSS36">y</a>',
]

# Run in the page after it loaded: everything a payload would create if it were not escaped.
PROBE = """() => {
  const found = [];
  document.querySelectorAll('[id^="XSS"], [data-xss], .xss-mark, base, iframe, object, embed, '
    + 'meta[http-equiv], link[href^="/xss"], img[src="x"], img[src^="/xss"], '
    + '[hx-get^="/xss"], [hx-post^="/xss"], form[action^="/xss"], a[href^="javascript:"], video')
    .forEach(el => found.push(el.outerHTML.slice(0, 120)));
  document.querySelectorAll('*').forEach(el => {
    for (const attr of el.attributes) {
      if (/^(hx-)?on/i.test(attr.name)) found.push(el.tagName + ' ' + attr.name);
    }
  });
  document.querySelectorAll('script').forEach(s => { if (!s.src) found.push('inline script'); });
  document.querySelectorAll('style').forEach(s => found.push('style element'));
  if (document.body.innerText.includes('49XSS7')) found.push('template evaluated');
  return found;
}"""


@pytest.fixture
def hostile(settings: Any, tmp_path: Path, django_user_model: Any) -> Iterator[StatePersistence]:
    settings.STATEHUB_STORES = {"default": f"sqlite:///{tmp_path / 'xss.sqlite3'}"}
    store = conf.get_store()
    content = {"payloads": PAYLOADS, **{f"k{i}{p}": p for i, p in enumerate(PAYLOADS)}}
    store.save_with_metadata({"first": PAYLOADS[:5]}, "all-payloads", tags=["plain"])
    store.save_with_metadata(
        content, "all-payloads", tags=PAYLOADS, metadata={"note": PAYLOADS, "by": PAYLOADS[2]}
    )
    for payload in PAYLOADS:
        store.save_with_metadata({"p": payload}, payload, tags=[payload], metadata={"m": payload})
        audit.record(
            "rollback",
            username=payload[:150],
            reason=payload,
            store="default",
            state_id=payload,
            details={"d": payload},
        )
        audit.record("rollback", username="x", store=payload[:200], state_id="all-payloads")
        django_user_model.objects.create_user(username=payload[:150], email="")
    yield store
    conf.close_stores()


def state_url(base: str, state_id: str) -> str:
    return f"{base}/s/default/state/{quote(state_id, safe='')}"


def test_payloads_never_run_or_inject(hostile: StatePersistence, page: Any) -> None:
    dialogs: list[str] = []
    marker_requests: list[str] = []
    violations: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    # A payload's own URLs all start /xss-; the test's navigations only carry them encoded.
    page.on(
        "request",
        lambda r: (
            marker_requests.append(r.url) if urlsplit(r.url).path.startswith("/xss") else None
        ),
    )
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    base = page.base
    urls = [
        f"{base}/s/default/",
        f"{base}/s/default/?order=id",
        state_url(base, "all-payloads"),
        f"{base}/s/default/diff/all-payloads?a=1&b=2",
        f"{base}/s/default/tags/",
        f"{base}/s/default/stats/",
        f"{base}/audit/",
        f"{base}/users/",
    ] + [state_url(base, payload) for payload in PAYLOADS]
    injected: dict[str, list[str]] = {}
    for url in urls:
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        page.wait_for_timeout(30)  # let any hx-trigger="load" fire
        found = page.evaluate(PROBE)
        if found:
            injected[url] = found
    # The text is shown as text: the state page heading is the payload, verbatim.
    page.goto(state_url(base, PAYLOADS[2]))
    assert page.locator("h1").inner_text() == PAYLOADS[2]
    # HTMX navigation swaps the same content in: still nothing runs.
    page.goto(f"{base}/s/default/")
    page.click("nav >> text=Audit")
    page.wait_for_url(re.compile(r"/audit/$"))
    injected_after_swap = page.evaluate(PROBE)
    assert not dialogs, dialogs
    assert not injected and not injected_after_swap, (injected, injected_after_swap)
    assert not marker_requests, marker_requests
    assert not violations, violations
    # The probe does see an injection when there is one (a control, made by the test itself).
    page.evaluate(
        "document.body.insertAdjacentHTML('beforeend', '<b id=XSS99></b><i data-xss></i>')"
    )
    assert len(page.evaluate(PROBE)) == 2


def test_every_page_works_under_the_csp(hostile: StatePersistence, page: Any) -> None:
    """Plain content: the pages' own scripts, styles and HTMX raise no CSP violation."""
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )
    base = page.base
    for path in (
        "/s/default/",
        "/s/default/tags/",
        "/s/default/stats/",
        "/workers/",
        "/audit/",
        "/users/",
        "/s/default/checkpoints/all-payloads",
        "/s/default/rollback/all-payloads?to=1",
        "/accounts/password_change/",
    ):
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
    # HTMX in action: search, nav swap, theme toggle, dialog.
    page.goto(f"{base}/s/default/")
    page.fill("#q", "all-")
    page.wait_for_url(re.compile(r"q=all-"))
    page.click("nav >> text=Tags")
    page.wait_for_url(re.compile(r"/tags/$"))
    page.click("[data-theme-toggle]")
    page.keyboard.press("?")
    assert page.locator("#shortcuts").is_visible()
    assert not violations, violations
