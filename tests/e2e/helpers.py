"""Shared Playwright helpers for the end-to-end tests: one wait for "the app is idle", locators by test id.

The idle state is read from attributes Streamlit 1.67 puts on the app root (checked on the running app):
``<div data-testid="stApp" data-test-connection-state="CONNECTED" data-test-script-state="notRunning">``.
The script state is ``running`` while a script run is in progress.
"""

from __future__ import annotations

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

