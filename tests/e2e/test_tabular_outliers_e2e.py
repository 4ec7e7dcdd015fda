"""Tabular outliers in headless Chromium: train AEGMM on Shuttle, move the threshold, download the scores."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import serve
from tests.e2e.helpers import (TIMEOUT_MS, by_test_id, download_csv, expect_no_exception, new_page, open_page,
                               publish_screenshot, set_number, train_with_settings, wait_for_app_idle)

pytestmark = pytest.mark.e2e

TRAINING_TIMEOUT_MS = 300_000


def _flagged(page) -> int:
    text = by_test_id(page, "stMetric").filter(has_text="Flagged rows").get_by_test_id("stMetricValue").inner_text()
    return int(text.replace(",", ""))


def test_train_threshold_and_download_scores(page, app_url, artifacts):
    open_page(page, f"{app_url}/tabular_outliers", "Tabular outliers")
    train_with_settings(page, {"Epochs": 2, "Train on at most": 3000}, "Train AEGMM finished", TRAINING_TIMEOUT_MS)
    before = _flagged(page)
    assert 0 < before < 49_097
    expect(by_test_id(page, "stMetric").filter(has_text="F1")).to_be_visible()
    # Streamlit scrolls inside its own container: show the results in a taller viewport, from the run's outcome.
    page.set_viewport_size({"width": 1440, "height": 1600})
    by_test_id(page, "stAlertContentSuccess").evaluate("alert => alert.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(1_000)
    page.screenshot(path=str(artifacts / "tabular_outliers.png"))
    page.set_viewport_size({"width": 1440, "height": 1100})

    # Move the percentile to its minimum with the keyboard: more rows are flagged, from cached scores.
    thumb = by_test_id(page, "stSlider").filter(has_text="Threshold percentile").get_by_role("slider")
    thumb.focus()
    thumb.press("Home")
    wait_for_app_idle(page, after_action=True)
    expect(by_test_id(page, "stMetric").filter(has_text="Flagged rows").get_by_test_id("stMetricValue")).not_to_have_text(
        f"{before:,}")
    after = _flagged(page)
    assert after > before

    scores = download_csv(page, "Scores CSV")
    assert {"instance_score", "is_outlier", "f1", "anomaly"} <= set(scores.columns)
    assert len(scores) == 49_097
    assert int(scores["is_outlier"].sum()) == after
    expect_no_exception(page)


def test_screenshot_for_readme(artifacts):
    """Keep the README's picture of this page in step with the UI (copied from the test above)."""
    shot = artifacts / "tabular_outliers.png"
    assert shot.exists() and shot.stat().st_size > 20_000
    publish_screenshot(shot, "tabular_outliers.png")


def test_stop_and_keep_then_compare_with_the_previous_run_screenshot_for_readme(page, app_url, artifacts):
    """Train once, then stop a long second run with **Stop and keep**: its results replace the first run's, with
    the stopped-at-your-request note, the convergence hint and the comparison of the two runs (README picture)."""
    page.goto(f"{app_url}/tabular_outliers")
    wait_for_app_idle(page)
    by_test_id(page, "stExpander").filter(has_text="Model and training settings").click()
    set_number(page, "Epochs", 2)
    set_number(page, "Train on at most", 3000)
    by_test_id(page, "stFormSubmitButton").filter(has_text="Train").locator("button").click()
    by_test_id(page, "stHeading").filter(has_text="Results").wait_for(state="visible", timeout=TRAINING_TIMEOUT_MS)
    wait_for_app_idle(page)
    expect(by_test_id(page, "stAlertContentSuccess")).to_contain_text("Train AEGMM finished")

    set_number(page, "Epochs", 200)
    by_test_id(page, "stFormSubmitButton").filter(has_text="Train").locator("button").click()
    stop = page.get_by_role("button", name="Stop and keep").first  # the live panel redraws: a stale copy may linger
    stop.wait_for(state="visible", timeout=TRAINING_TIMEOUT_MS)
    page.wait_for_timeout(3_000)  # a few epochs
    stop.click()
    stopped = by_test_id(page, "stAlertContentWarning").filter(has_text="was stopped at your request")
    stopped.wait_for(state="visible", timeout=TRAINING_TIMEOUT_MS)
    wait_for_app_idle(page)
    expect_no_exception(page)
    by_test_id(page, "stExpander").filter(has_text="Compare with the previous run").click()
    wait_for_app_idle(page)
    comparison = by_test_id(page, "stExpander").filter(has_text="Compare with the previous run")
    expect(comparison).to_contain_text("previous run")
    expect(comparison).to_contain_text("stopped early (kept)")
    expect(by_test_id(page, "stHeading").filter(has_text="Results")).to_be_visible()
    page.set_viewport_size({"width": 1440, "height": 1300})
    stopped.evaluate("alert => alert.scrollIntoView({block: 'start'})")
    by_test_id(page, "stMain").evaluate("main => main.scrollBy(0, -90)")  # below the app's top bar
    page.wait_for_timeout(1_000)
    shot = artifacts / "tabular_stop_and_compare.png"
    page.screenshot(path=str(shot))
    page.set_viewport_size({"width": 1440, "height": 1100})
    assert shot.stat().st_size > 20_000
    publish_screenshot(shot, "tabular_stop_and_compare.png")


def test_a_saved_detector_scores_with_its_threshold_screenshot_for_readme(browser, artifacts):
    """Trusted mode: download the detector archive, upload it under *Score with a saved detector*, score: the slider
    starts at the saved threshold and the new scores are drawn against the training scores (README picture)."""
    from tests.e2e.helpers import upload_through_file_chooser

    with serve(artifacts, {"LANTERN_TRUSTED": "1"}) as (url, _server):
        context = browser.new_context(viewport={"width": 1440, "height": 1100})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        try:
            page.goto(f"{url}/tabular_outliers")
            wait_for_app_idle(page)
            by_test_id(page, "stExpander").filter(has_text="Model and training settings").click()
            set_number(page, "Epochs", 2)
            set_number(page, "Train on at most", 3000)
            by_test_id(page, "stFormSubmitButton").filter(has_text="Train").locator("button").click()
            by_test_id(page, "stHeading").filter(has_text="Results").wait_for(state="visible",
                                                                               timeout=TRAINING_TIMEOUT_MS)
            wait_for_app_idle(page)
            with page.expect_download() as download_info:
                by_test_id(page, "stDownloadButton").filter(has_text="Detector archive").locator("button").click()
            archive = open(download_info.value.path(), "rb").read()

            by_test_id(page, "stExpander").filter(has_text="Score with a saved detector").click()
            upload_through_file_chooser(page, "aegmm.lantern.zip", archive, "application/zip")
            by_test_id(page, "stFormSubmitButton").filter(has_text="Score with the saved detector").locator(
                "button").click()
            saved_note = page.get_by_text("is where the slider starts").first
            saved_note.wait_for(state="visible", timeout=TRAINING_TIMEOUT_MS)
            wait_for_app_idle(page)
            expect_no_exception(page)
            expect(by_test_id(page, "stAlertContentSuccess")).to_contain_text("Score with the saved AEGMM finished")
            page.set_viewport_size({"width": 1440, "height": 1300})
            by_test_id(page, "stHeading").filter(has_text="Results").evaluate(
                "heading => heading.scrollIntoView({block: 'start'})")
            by_test_id(page, "stMain").evaluate("main => main.scrollBy(0, -90)")  # below the app's top bar
            page.wait_for_timeout(1_000)
            shot = artifacts / "tabular_saved_detector.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 20_000
            publish_screenshot(shot, "tabular_saved_detector.png")
        finally:
            context.close()


def test_with_jobs_on_ray_the_page_works_the_same(browser, artifacts):
    """``LANTERN_RAY_ADDRESS=local``: the server starts a local Ray runtime at start-up and hands its jobs to it."""
    with serve(artifacts, {"LANTERN_RAY_ADDRESS": "local", "LANTERN_MAX_CONCURRENT_JOBS": "1"}) as (url, server):
        page = new_page(browser)
        try:
            open_page(page, f"{url}/tabular_outliers", "Tabular outliers")
            train_with_settings(page, {"Epochs": 2, "Train on at most": 2000}, "Train AEGMM finished",
                                TRAINING_TIMEOUT_MS)
            assert 0 < _flagged(page) < 49_097
            log = next(artifacts.glob(f"server-{url.rsplit(':', 1)[1]}.log")).read_text(errors="replace")
            assert '"event": "ray_started"' in log and '"outcome": "done"' in log
        finally:
            page.context.close()
