"""Time-series outliers in headless Chromium: train Seq2Seq on the ECG, move a feature threshold, download scores."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import (by_test_id, download_csv, expect_no_exception, open_page, publish_screenshot,
                               train_with_settings, wait_for_app_idle)

pytestmark = pytest.mark.e2e

TRAINING_TIMEOUT_MS = 300_000


def _metric(page, label: str):
    return by_test_id(page, "stMetric").filter(has_text=label).get_by_test_id("stMetricValue")


def _count(page, label: str) -> int:
    return int(_metric(page, label).inner_text().replace(",", ""))


def test_train_move_feature_threshold_and_download_scores(page, app_url, artifacts):
    open_page(page, f"{app_url}/timeseries_outliers", "Time-series outliers")
    train_with_settings(page, {"Window length": 50, "Latent size": 8, "Epochs": 2}, "Train Seq2Seq finished",
                        TRAINING_TIMEOUT_MS)
    expect(by_test_id(page, "stAlertContentSuccess")).to_contain_text("2 epoch(s)")
    expect(page.get_by_text("Feature scores over time").first).to_be_visible()  # the heatmap's title
    expect(by_test_id(page, "stMetric").filter(has_text="F1").first).to_be_visible()
    before = _count(page, "Flagged steps")
    assert 0 < before < 20000  # the default series: the synthetic ECG, 20,000 steps
    # Streamlit scrolls inside its own container: show the results in a tall viewport instead.
    page.set_viewport_size({"width": 1440, "height": 2200})
    done = by_test_id(page, "stAlertContentSuccess")
    done.evaluate("alert => alert.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "timeseries_outliers.png"))
    page.set_viewport_size({"width": 1440, "height": 1100})

    # Move the ECG's own threshold to its minimum percentile with the keyboard: more steps are flagged.
    thumb = by_test_id(page, "stSlider").filter(has_text="ecg").get_by_role("slider")
    thumb.focus()
    thumb.press("Home")
    wait_for_app_idle(page, after_action=True)
    expect(_metric(page, "Flagged steps")).not_to_have_text(f"{before:,}")
    after = _count(page, "Flagged steps")
    assert after > before
    expect_no_exception(page)

    steps = download_csv(page, "Scores per time step CSV")  # joins back: one row per input row, in input order
    assert list(steps.columns[:6]) == ["row", "time", "ecg", "label", "status", "reason"]
    assert steps["row"].tolist() == list(range(20000)) and (steps["status"] == "scored").all()
    assert {"ecg_reconstruction", "ecg_score", "ecg_flagged", "instance_score", "is_outlier", "window"} <= set(
        steps.columns)
    assert int(steps["is_outlier"].sum()) == after
    assert ((steps["ecg_score"] > 0) == steps["ecg_flagged"].astype(bool)).all()
    windows = download_csv(page, "Window scores CSV")
    assert {"window", "start_time", "end_time", "instance_score", "is_outlier", "labelled"} <= set(windows.columns)
    assert windows["window"].tolist() == list(range(400))
    expect_no_exception(page)


def test_the_page_defaults_rank_the_labelled_anomaly_first(page, app_url, artifacts):
    """Issue #20 item 11 in the browser: Train with every default; the top-scored window holds the labelled
    anomaly, and 20 epochs leave no convergence hint. Its screenshot is the README's picture of the page."""
    page.goto(f"{app_url}/timeseries_outliers")
    wait_for_app_idle(page)
    by_test_id(page, "stFormSubmitButton").filter(has_text="Train").locator("button").click()
    by_test_id(page, "stHeading").filter(has_text="Results").wait_for(state="visible", timeout=600_000)
    wait_for_app_idle(page)
    expect_no_exception(page)
    expect(by_test_id(page, "stAlertContentSuccess")).to_contain_text("20 epoch(s)")
    expect(by_test_id(page, "stAlertContentWarning").filter(has_text="until the loss flattens")).to_have_count(0)
    windows = download_csv(page, "Window scores CSV")
    assert bool(windows.sort_values("instance_score", ascending=False).iloc[0]["labelled"])
    page.set_viewport_size({"width": 1440, "height": 2200})
    by_test_id(page, "stAlertContentSuccess").evaluate("alert => alert.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(1_000)
    page.screenshot(path=str(artifacts / "timeseries_outliers_defaults.png"))
    page.set_viewport_size({"width": 1440, "height": 1100})


def test_screenshot_for_readme(artifacts):
    """Keep the README's picture of this page in step with the UI (copied from the test above)."""
    shot = artifacts / "timeseries_outliers_defaults.png"
    assert shot.exists() and shot.stat().st_size > 20_000
    publish_screenshot(shot, "timeseries_outliers.png")
