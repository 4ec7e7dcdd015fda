"""Adversarial detection in headless Chromium: train on Digits, distil, attack with PGD, read the ROC, export."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import (by_test_id, download_csv, expect_dataset, expect_no_exception, open_page,
                               publish_screenshot, wait_for_app_idle)

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_MS = 300_000


def _set_number(scope, label: str, value: int) -> None:
    field = by_test_id(scope, "stNumberInput").filter(has_text=label).locator("input")
    field.fill(str(value))
    field.press("Enter")


def _metric(page, label: str):
    return by_test_id(page, "stMetric").filter(has_text=label).get_by_test_id("stMetricValue")


def _submit(page, label: str) -> None:
    by_test_id(page, "stFormSubmitButton").filter(has_text=label).locator("button").click()


def test_train_distil_attack_and_see_the_roc(page, app_url, artifacts):
    open_page(page, f"{app_url}/adversarial", "Adversarial detection")
    expect_dataset(page, "Handwritten digits")
    # Nothing to distil or attack before a classifier exists.
    expect(by_test_id(page, "stFormSubmitButton").filter(has_text="Distil detector")).to_have_count(0)

    settings = by_test_id(page, "stExpander").filter(has_text="Training and split settings")
    settings.click()
    _set_number(settings, "Epochs", 15)
    _submit(page, "Train classifier")
    _metric(page, "Test accuracy").wait_for(state="visible", timeout=JOB_TIMEOUT_MS)
    wait_for_app_idle(page)
    assert float(_metric(page, "Test accuracy").inner_text()) > 0.8

    distil_form = by_test_id(page, "stForm").filter(has_text="Distil detector")
    _set_number(distil_form, "Epochs", 20)
    _submit(page, "Distil detector")
    attack_button = by_test_id(page, "stFormSubmitButton").filter(has_text="Attack and score")
    attack_button.wait_for(state="visible", timeout=JOB_TIMEOUT_MS)
    wait_for_app_idle(page)
    expect(by_test_id(page, "stAlertContentSuccess").filter(has_text="Distil detector finished")).to_be_visible()

    _set_number(page, "PGD steps", 10)
    _submit(page, "Attack and score")
    results = by_test_id(page, "stHeading").filter(has_text="Results")
    results.wait_for(state="visible", timeout=JOB_TIMEOUT_MS)
    wait_for_app_idle(page)
    expect_no_exception(page)

    clean = float(_metric(page, "Classifier accuracy, clean").inner_text())
    attacked = float(_metric(page, "Classifier accuracy, attacked").inner_text())
    assert attacked < clean
    assert 0.6 < float(_metric(page, "Detection ROC-AUC").inner_text()) <= 1.0
    charts = by_test_id(page, "stPlotlyChart")
    expect(charts.filter(has_text="ROC: clean vs adversarial")).to_have_count(1)
    expect(charts.filter(has_text="Scores of clean and attacked test rows")).to_have_count(1)
    expect(charts.filter(has_text="perturbation")).to_have_count(1)
    # The first example shows the method working: right before the attack, fooled by it, flagged.
    example = by_test_id(page, "stRadio").filter(has_text="right before the attack, fooled by it, flagged")
    expect(example).to_be_visible()
    expect(by_test_id(page, "stMarkdown").filter(has_text="(right) and the attacked input as")).to_have_count(1)
    # The page scrolls inside Streamlit's main container: show the results in a tall viewport instead.
    page.set_viewport_size({"width": 1440, "height": 1900})
    results.evaluate("heading => heading.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(1_000)
    page.screenshot(path=str(artifacts / "adversarial.png"))
    page.set_viewport_size({"width": 1440, "height": 1100})

    # The lowest threshold percentile flags more clean rows: the false-alarm rate rises, from cached scores.
    before = _metric(page, "False-alarm rate").inner_text()
    thumb = by_test_id(page, "stSlider").filter(has_text="Threshold percentile").get_by_role("slider")
    thumb.focus()
    thumb.press("Home")
    wait_for_app_idle(page, after_action=True)
    expect(_metric(page, "False-alarm rate")).not_to_have_text(before)
    assert float(_metric(page, "False-alarm rate").inner_text().rstrip("%")) > float(before.rstrip("%"))

    scores = download_csv(page, "Scores CSV")
    assert {"row", "label", "status", "reason", "clean_prediction", "adversarial_prediction", "adversarial_score",
            "adversarial_flagged", "clean_score", "clean_flagged"} <= set(scores.columns)
    assert len(scores) == 1797 and scores["row"].tolist() == list(range(1797))  # one line per row of Digits
    assert (scores["status"] == "scored").sum() == 450  # the test rows, all attacked
    expect(by_test_id(page, "stDownloadButton").filter(has_text="Detector archive")).to_be_visible()
    expect_no_exception(page)


def test_screenshot_for_readme(artifacts):
    """Keep the README's picture of this page in step with the UI (copied from the test above)."""
    shot = artifacts / "adversarial.png"
    assert shot.exists() and shot.stat().st_size > 20_000
    publish_screenshot(shot, "adversarial.png")
