"""Shared Playwright helpers for the end-to-end tests: one wait for "the app is idle", locators by test id.

The idle state is read from attributes Streamlit 1.67 puts on the app root (checked on the running app):
``<div data-testid="stApp" data-test-connection-state="CONNECTED" data-test-script-state="notRunning">``.
The script state is ``running`` while a script run is in progress.
"""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

APP_IDLE = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'
APP_RUNNING = '[data-testid="stApp"][data-test-script-state="running"]'
TIMEOUT_MS = 120_000  # the first run imports TensorFlow; on a loaded 2-core machine that takes a while


def wait_for_app_idle(page: Page, *, after_action: bool = False, timeout: float = TIMEOUT_MS) -> None:
    """Wait until the app is connected and no script run is in progress.

    After a click or upload (``after_action=True``) the DOM still says ``notRunning`` for a moment, until
    the server acknowledges the rerun; so first give the rerun up to a second to start, then wait for it
    to finish. A short settle pause lets React paint the last deltas.
    """
    if after_action:
        try:
            page.wait_for_selector(APP_RUNNING, state="attached", timeout=1_000)
        except PlaywrightTimeoutError:
            pass  # the rerun was quicker than we could look, or none was needed
    page.wait_for_selector(APP_IDLE, state="attached", timeout=timeout)
    page.wait_for_timeout(150)


def by_test_id(page: Page | Locator, test_id: str) -> Locator:
    return page.get_by_test_id(test_id)


def click_button(page: Page, label: str) -> None:
    """Click the ``st.button`` labelled ``label`` and wait for the rerun it triggers."""
    by_test_id(page, "stButton").filter(has_text=label).locator("button").click()
    wait_for_app_idle(page, after_action=True)


def open_tab(page: Page, label: str) -> None:
    """Show the ``st.tabs`` tab labelled ``label`` (tabs switch in the browser, without a rerun)."""
    by_test_id(page, "stTab").filter(has_text=label).click()


def select_option(page: Page, label: str, option: str) -> None:
    """Pick ``option`` in the ``st.selectbox`` labelled ``label`` and wait for the rerun."""
    by_test_id(page, "stSelectbox").filter(has_text=label).get_by_role("combobox").click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_app_idle(page, after_action=True)


def upload_through_file_chooser(page: Page, name: str, data: bytes, mime: str = "text/csv") -> None:
    """Upload ``data`` as ``name`` the way a user does: click the uploader's button, answer the file chooser."""
    dropzone = by_test_id(page, "stFileUploaderDropzone")
    with page.expect_file_chooser() as chooser:
        by_test_id(dropzone, "stBaseButton-secondary").click()
    chooser.value.set_files({"name": name, "mimeType": mime, "buffer": data})
    wait_for_app_idle(page, after_action=True)


def active_dataset_heading(page: Page) -> Locator:
    return by_test_id(page, "stHeading").filter(has_text="Active dataset:")


def expect_no_exception(page: Page) -> None:
    """No Streamlit exception element (a traceback box) anywhere on the page."""
    expect(by_test_id(page, "stException")).to_have_count(0)


def error_alerts(page: Page) -> Locator:
    return by_test_id(page, "stAlertContentError")


def warning_alerts(page: Page) -> Locator:
    return by_test_id(page, "stAlertContentWarning")


def publish_screenshot(shot, name: str) -> None:
    """Copy a screenshot to docs/images/<name> for the README when LANTERN_UPDATE_SCREENSHOTS=1.

    Test runs leave the tracked README images alone unless asked to refresh them.
    """
    import os
    import shutil
    from pathlib import Path

    if os.environ.get("LANTERN_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(shot, Path(__file__).resolve().parents[2] / "docs" / "images" / name)


def set_number(page: Page, label: str, value: int) -> None:
    """Type ``value`` into the ``st.number_input`` whose label contains ``label`` and commit it (Tab blurs it)."""
    field = by_test_id(page, "stNumberInput").filter(has_text=label).locator("input")
    field.fill(str(value))
    field.press("Tab")
    wait_for_app_idle(page, after_action=True)


def submit(page: Page, label: str) -> None:
    """Press the form's submit button labelled ``label`` and wait for the rerun."""
    by_test_id(page, "stFormSubmitButton").filter(has_text=label).locator("button").click()
    wait_for_app_idle(page, after_action=True)


def metric(page: Page, label: str) -> Locator:
    """The ``st.metric`` whose label is exactly ``label``."""
    return by_test_id(page, "stMetric").filter(has=by_test_id(page, "stMetricLabel").get_by_text(label, exact=True))



def open_page(page: Page, url: str, heading: str) -> None:
    """Go to ``url``, wait until the app is idle and check that the page's first heading is ``heading``."""
    page.goto(url)
    wait_for_app_idle(page)
    expect(by_test_id(page, "stHeading").first).to_have_text(heading)


def train_with_settings(page: Page, settings: dict[str, int], finished: str, timeout: float) -> None:
    """On an outlier page: open "Model and training settings", type ``settings`` (label → value), press Train and
    wait for the results; then check that the page raised nothing and its success message says ``finished``."""
    by_test_id(page, "stExpander").filter(has_text="Model and training settings").click()
    for label, value in settings.items():
        set_number(page, label, value)
    by_test_id(page, "stFormSubmitButton").filter(has_text="Train").locator("button").click()
    by_test_id(page, "stHeading").filter(has_text="Results").wait_for(state="visible", timeout=timeout)
    wait_for_app_idle(page)
    expect_no_exception(page)
    expect(by_test_id(page, "stAlertContentSuccess")).to_contain_text(finished)


def download_csv(page: Page, label: str):
    """Press the download button labelled ``label`` and read the CSV it gives as a DataFrame."""
    import io

    import pandas as pd

    with page.expect_download() as download_info:
        by_test_id(page, "stDownloadButton").filter(has_text=label).locator("button").click()
    with open(download_info.value.path(), "rb") as handle:
        return pd.read_csv(io.BytesIO(handle.read()))


def go_to(page: Page, app_url: str, link: str, path: str, heading: str | None = None) -> None:
    """Click ``link`` in the sidebar navigation and check that the browser shows ``{app_url}/{path}`` (the URL may
    carry the session token, ``?s=...``) and, if given, that the page's first heading is ``heading``."""
    by_test_id(page, "stSidebarNav").get_by_role("link", name=link).click()
    wait_for_app_idle(page, after_action=True)
    expect(page).to_have_url(re.compile(re.escape(f"{app_url}/{path}") + r"(\?.*)?$"))
    if heading is not None:
        expect(by_test_id(page, "stHeading").first).to_have_text(heading)


def expect_dataset(page: Page, title: str) -> None:
    """Check that the page's Dataset picker shows a dataset whose title contains ``title``."""
    dataset = by_test_id(page, "stSelectbox").filter(has_text="Dataset").get_by_role("combobox")
    expect(dataset).to_have_value(re.compile(re.escape(title)))


def new_page(browser, url: str | None = None) -> Page:
    """A page in a fresh browser context (so a fresh Streamlit session), on ``url`` if given, waited until the app's
    first run has ended. Close it with ``page.context.close()``."""
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    if url is not None:
        page.goto(url)
        # Before its first run the app is briefly connected and idle with nothing drawn: wait for the page too.
        active_dataset_heading(page).wait_for(state="visible")
        wait_for_app_idle(page)
    return page
