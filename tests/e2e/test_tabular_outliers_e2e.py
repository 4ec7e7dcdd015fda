"""Tabular outliers in headless Chromium: train AEGMM on Shuttle, move the threshold, download the scores."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import serve
from tests.e2e.helpers import (by_test_id, download_csv, expect_no_exception, new_page, open_page, publish_screenshot,
                               train_with_settings, wait_for_app_idle)

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
    page.screenshot(path=str(artifacts / "tabular_outliers.png"), full_page=True)

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
