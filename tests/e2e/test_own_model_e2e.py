"""Use my own model in headless Chromium: upload an ONNX forest on Anchors, explain one of its predictions."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.app import own_models
from tests.e2e.helpers import (by_test_id, expect_no_exception, go_to, metric, publish_screenshot, set_number, submit,
                               upload_through_file_chooser, wait_for_app_idle)

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_MS = 240_000  # a loaded 2-core machine


def test_upload_an_onnx_model_on_anchors_and_explain_one_of_its_predictions(page, app_url, artifacts):
    model = own_models.adult_forest_onnx()  # a scikit-learn forest on Adult's 14 default features, as ONNX
    go_to(page, app_url, "Anchors", "anchors")

    by_test_id(page, "stRadio").filter(has_text="Classifier").get_by_text("Use my own model").click()
    wait_for_app_idle(page, after_action=True)
    expect(page.get_by_text("loads ONNX models only")).to_be_visible()
    upload_through_file_chooser(page, "adult_forest.onnx", model, mime="application/octet-stream")
    expect(by_test_id(page, "stAlertContentSuccess").filter(has_text="adult_forest.onnx: ONNX classifier, 14 inputs")
           ).to_be_visible()
    expect_no_exception(page)

    by_test_id(page, "stExpander").filter(has_text="Split settings").locator("summary").click()
    set_number(page, "Train on at most", 3000)
    submit(page, "Use this model")
    expect(metric(page, "Test accuracy")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    wait_for_app_idle(page)
    accuracy = float(metric(page, "Test accuracy").get_by_test_id("stMetricValue").inner_text())
    assert 0.75 < accuracy <= 1.0  # the uploaded forest's accuracy on Adult's label column
    expect(page.get_by_text("adult_forest.onnx: ONNX classifier", exact=False).first).to_be_visible()
    by_test_id(page, "stRadio").filter(has_text="Classifier").scroll_into_view_if_needed()
    page.mouse.wheel(0, 250)
    shot = artifacts / "own_model_anchors.png"
    page.screenshot(path=str(shot))
    publish_screenshot(shot, "own_model_anchors.png")

    set_number(page, "Coverage samples", 1000)
    submit(page, "Explain this prediction")
    expect(metric(page, "Held-out precision")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    wait_for_app_idle(page)
    expect_no_exception(page)
    verdict = by_test_id(page, "stMarkdown").filter(has_text="THEN the model predicts").or_(
        by_test_id(page, "stAlertContentInfo").filter(has_text="No condition is needed"))
    expect(verdict.first).to_be_visible()
    precision = float(metric(page, "Precision").get_by_test_id("stMetricValue").inner_text())
    assert 0 < precision <= 1
    expect(by_test_id(page, "stDownloadButton").filter(has_text="Explanation JSON")).to_be_visible()
