"""Cold start and reloads in Chromium (issue #20.5d, #20.9): the first visit to a freshly started server shows the
app's navigation (never Streamlit's raw list of pages/ files), nothing reaches for a host other than the server, a
reload keeps the uploaded CSV, and a refused upload leaves the uploader empty."""

from __future__ import annotations

from contextlib import contextmanager
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import serve
from tests.e2e.helpers import (
    TIMEOUT_MS,
    active_dataset_heading,
    by_test_id,
    error_alerts,
    open_tab,
    upload_through_file_chooser,
    wait_for_app_idle,
)

pytestmark = pytest.mark.e2e

# Records every text the sidebar navigation ever shows, from the first paint (a flash is caught too).
RECORD_NAVIGATION = """
window.__navs = [];
new MutationObserver(() => {
  for (const nav of document.querySelectorAll('[data-testid="stSidebarNav"]')) {
    if (window.__navs[window.__navs.length - 1] !== nav.innerText) window.__navs.push(nav.innerText);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""
RAW_PAGE_LIST = "timeseries outliers"  # Streamlit's name for pages/timeseries_outliers.py (the app's: Time-series)
UPLOAD = b"sensor_a,sensor_b,label\n" + b"".join(f"{i * 0.5},{i % 7},{int(i % 11 == 0)}\n".encode() for i in range(40))


def loopback(url: str) -> bool:
    return urlparse(url).hostname in ("127.0.0.1", "localhost", "::1") or url.startswith(("data:", "blob:"))


@contextmanager
def open_app(browser, url: str):
    """A page in a fresh browser context on ``url`` with the requests, failures and console errors recorded (the
    page and what it saw); the context is closed on leaving."""
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    try:
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(RECORD_NAVIGATION)
        page = context.new_page()
        seen = {"outside": [], "failed": [], "console": []}
        page.on("request", lambda r: None if loopback(r.url) else seen["outside"].append(r.url))
        page.on("requestfailed", lambda r: seen["failed"].append(f"{r.url} {r.failure}"))
        page.on("console", lambda m: seen["console"].append(m.text) if m.type == "error" else None)
        page.goto(url)
        active_dataset_heading(page).wait_for(state="visible")
        wait_for_app_idle(page)
        yield page, seen
    finally:
        context.close()


def test_the_first_visit_to_a_fresh_server_shows_the_app_navigation_and_reaches_no_outside_host(browser, artifacts):
    with serve(artifacts) as (url, _):
        with open_app(browser, url) as (page, seen):
            expect(by_test_id(page, "stSidebarNav")).to_contain_text("Time-series outliers")
            page.wait_for_timeout(1_000)  # late requests (favicon, fonts) too
            navs = page.evaluate("window.__navs")
            assert navs and not [n for n in navs if RAW_PAGE_LIST in n], navs
            assert seen["outside"] == [], seen["outside"]
            assert not [m for m in seen["console"] if "ERR_NAME_NOT_RESOLVED" in m], seen["console"]
            assert seen["failed"] == [], seen["failed"]


def test_a_reload_keeps_the_uploaded_csv_and_another_visitor_does_not_get_it(browser, app_url):
    with open_app(browser, app_url) as (page, seen):
        open_tab(page, "Upload a CSV")
        upload_through_file_chooser(page, "mine.csv", UPLOAD)
        expect(active_dataset_heading(page)).to_have_text("Active dataset: mine.csv")
        token = parse_qs(urlparse(page.url).query)["s"][0]
        assert len(token) == 32

        page.reload()
        active_dataset_heading(page).wait_for(state="visible")
        wait_for_app_idle(page)
        expect(active_dataset_heading(page)).to_have_text("Active dataset: mine.csv")
        assert parse_qs(urlparse(page.url).query)["s"] == [token]
        assert seen["outside"] == []

        # The same URL in another browser (another visitor) gets a session of its own.
        with open_app(browser, page.url) as (stranger, _):
            expect(active_dataset_heading(stranger)).not_to_have_text("Active dataset: mine.csv")
            assert parse_qs(urlparse(stranger.url).query)["s"] != [token]


def test_a_refused_upload_leaves_the_uploader_empty(browser, app_url):
    with open_app(browser, app_url) as (page, _):
        open_tab(page, "Upload a CSV")
        upload_through_file_chooser(page, "junk.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
        expect(error_alerts(page).first).to_contain_text("junk.csv")
        expect(error_alerts(page).first).to_be_visible()  # the Upload tab stays open, with the reason
        expect(by_test_id(page, "stFileUploader")).to_be_visible()
        expect(by_test_id(page, "stFileChipName")).to_have_count(0)
        expect(by_test_id(page, "stFileUploader")).not_to_contain_text("junk.csv")
