"""The Anchors page in headless Chromium: train a small forest on Adult, explain one test row, see the anchor."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import (by_test_id, expect_dataset, expect_no_exception, go_to, metric, publish_screenshot,
                               set_number, submit,
                               wait_for_app_idle)

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_MS = 240_000  # a loaded 2-core machine


def test_explain_one_adult_row_and_see_rules_precision_and_coverage(page, app_url, artifacts):
    go_to(page, app_url, "Anchors", "anchors", heading="Anchors")
    expect_dataset(page, "Adult census income")

    # A small forest: 10 trees on 3,000 of Adult's training rows.
    by_test_id(page, "stExpander").filter(has_text="Classifier and split settings").locator("summary").click()
    set_number(page, "Trees", 10)
    set_number(page, "Train on at most", 3000)
    submit(page, "Train classifier")
    expect(metric(page, "Test accuracy")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    wait_for_app_idle(page)
    expect(metric(page, "Test rows")).to_contain_text("16,281")
    expect_no_exception(page)

    # Another test row, found by typing its table row number: its values and the model's prediction follow.
    picker = by_test_id(page, "stSelectbox").filter(has_text="Table row to explain").get_by_role("combobox")
    picker.click()
    picker.fill("32,576")
    page.get_by_role("option", name="Row 32,576", exact=True).click()
    wait_for_app_idle(page, after_action=True)
    expect(picker).to_have_value("Row 32,576")
    expect(metric(page, "Model predicts")).to_contain_text("50K")

    set_number(page, "Coverage samples", 2000)
    submit(page, "Explain this prediction")
    expect(metric(page, "Held-out precision")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    wait_for_app_idle(page)
    expect_no_exception(page)
    expect(by_test_id(page, "stHeading").filter(has_text="Anchor for row 32,576")).to_be_visible()

    # The anchor as rule chips, its verdict, precision and coverage, the chart and the example rows.
    rule_line = by_test_id(page, "stMarkdown").filter(has_text="THEN the model predicts")
    expect(rule_line).to_be_visible()
    chips = rule_line.locator("span.stMarkdownBadge")
    assert chips.count() >= 3  # this row's anchor has several rules, then the predicted class
    for label in ("Precision", "Coverage", "Held-out coverage", "Rules"):
        expect(metric(page, label)).to_be_visible()
    precision = float(metric(page, "Precision").get_by_test_id("stMetricValue").inner_text())
    coverage = float(metric(page, "Coverage").get_by_test_id("stMetricValue").inner_text())
    assert 0 < precision <= 1 and 0 < coverage <= 1
    expect(by_test_id(page, "stAlertContentSuccess").or_(by_test_id(page, "stAlertContentWarning"))
           .filter(has_text="certified").first).to_be_visible()
    expect(by_test_id(page, "stPlotlyChart").first).to_be_visible()
    expect(by_test_id(page, "stTab").filter(has_text="Same prediction")).to_be_visible()
    expect(by_test_id(page, "stTab").filter(has_text="Different prediction")).to_be_visible()
    expect(by_test_id(page, "stDownloadButton").filter(has_text="Explanation JSON")).to_be_visible()
    expect_no_exception(page)

    # Streamlit scrolls inside its own container: a tall viewport shows the whole page in the screenshot.
    page.set_viewport_size({"width": 1440, "height": 3600})
    page.wait_for_timeout(1_000)
    shot = artifacts / "anchors.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    publish_screenshot(shot, "anchors.png")
