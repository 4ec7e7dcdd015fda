"""Contrastive explanations in headless Chromium: train on iris, explain one test row, see its PN and PP, export."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import (by_test_id, expect_dataset, expect_no_exception, go_to, publish_screenshot, submit,
                               wait_for_app_idle)

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_MS = 300_000  # a loaded 2-core machine; the first search also compiles its loop


def set_number(page: Page, label: str, value: int) -> None:
    """Type ``value`` into the number input labelled exactly ``label`` and commit it (Tab blurs the field)."""
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Tab")
    wait_for_app_idle(page, after_action=True)


def metric(page: Page, label: str):
    """The value of the ``st.metric`` whose label is exactly ``label``."""
    box = by_test_id(page, "stMetric").filter(has=by_test_id(page, "stMetricLabel").get_by_text(label, exact=True))
    return box.get_by_test_id("stMetricValue")


def _seventh_test_row() -> int:
    """The table row of the seventh test row of the page's default split of iris (30 %, seed 0)."""
    from engine.datasets import load_dataset
    from engine.tabular import classification_data

    frame = load_dataset("iris")
    features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return int(classification_data(frame, features, "species", test_size=0.3, seed=0).test_rows[6])


def test_explain_one_iris_row_and_see_its_pn_and_pp(page, app_url, artifacts):
    go_to(page, app_url, "Contrastive explanations", "cem", heading="Contrastive explanations")
    expect_dataset(page, "Iris flowers")

    by_test_id(page, "stExpander").filter(has_text="Classifier and training settings").locator("summary").click()
    set_number(page, "Epochs", 30)
    submit(page, "Train")
    expect(metric(page, "Test accuracy")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    wait_for_app_idle(page)
    expect(metric(page, "Test rows")).to_have_text("45")
    assert float(metric(page, "Test accuracy").inner_text()) > 0.6
    expect_no_exception(page)

    # Another test row, named by its table row number only: its measurements (in cm) and the prediction follow.
    row = _seventh_test_row()
    picker = by_test_id(page, "stSelectbox").filter(has_text="Table row to explain (45 test rows)")
    combobox = picker.get_by_role("combobox")
    combobox.click()
    combobox.fill(str(row))
    page.get_by_role("option", name=f"Row {row}", exact=True).click()
    wait_for_app_idle(page, after_action=True)
    expect(combobox).to_have_value(f"Row {row}")
    expect(page.get_by_text(re.compile(r"test row \d", re.IGNORECASE))).to_have_count(0)  # one numbering
    expect(metric(page, "Model predicts")).to_have_text(re.compile("setosa|versicolor|virginica"))

    set_number(page, "c steps", 2)
    set_number(page, "Iterations per c step", 100)
    submit(page, "Explain this prediction")
    expect(metric(page, "PP predicted as")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    wait_for_app_idle(page)
    expect_no_exception(page)
    expect(by_test_id(page, "stHeading").filter(has_text=f"Explanation of row {row}")).to_be_visible()

    original = metric(page, "Original predicted as").inner_text()
    expect(metric(page, "Model predicts")).to_have_text(original)
    pn_class = metric(page, "PN predicted as").inner_text()
    assert pn_class != original and pn_class != "not found"
    expect(metric(page, "PP predicted as")).to_have_text(original)
    charts = by_test_id(page, "stPlotlyChart")
    expect(charts.filter(has_text="Class probabilities: original and explanations")).to_have_count(1)
    expect(charts.filter(has_text="PN − original")).to_have_count(1)
    expect(charts.filter(has_text="PP − original")).to_have_count(1)
    expect(by_test_id(page, "stMarkdown").filter(has_text="The model would predict")).to_be_visible()
    expect(by_test_id(page, "stMarkdown").filter(has_text="The model still predicts")).to_be_visible()

    # The changes in standard deviations instead of cm: the bar charts redraw, nothing else reruns.
    by_test_id(page, "stRadio").get_by_text("standard deviations").click()
    wait_for_app_idle(page, after_action=True)
    expect(charts.filter(has_text="change (standard deviations)")).to_have_count(2)
    expect_no_exception(page)

    # Streamlit scrolls inside its own container: a viewport as tall as the page shows all of it in the screenshot.
    main = by_test_id(page, "stMain")
    page.set_viewport_size({"width": 1440, "height": min(main.evaluate("el => el.scrollHeight") + 40, 6000)})
    main.evaluate("el => el.scrollTo(0, 0)")
    page.wait_for_timeout(1_000)
    shot = artifacts / "cem.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    page.set_viewport_size({"width": 1440, "height": 1100})

    with page.expect_download() as download_info:
        by_test_id(page, "stDownloadButton").filter(has_text="PN explanation JSON").locator("button").click()
    assert download_info.value.suggested_filename == f"cem_pn_row_{row}.json"
    payload = json.loads(open(download_info.value.path(), "rb").read())
    assert payload["meta"]["name"] == "CEM" and payload["meta"]["params"]["mode"] == "PN"
    assert payload["meta"]["lantern"]["row"] == row
    assert {"PN", "PN_pred", "X", "X_pred", "found"} <= set(payload["data"])
    expect(by_test_id(page, "stDownloadButton").filter(has_text="PP explanation JSON")).to_be_visible()
    expect_no_exception(page)


def test_screenshot_for_readme(artifacts):
    """Keep the README's picture of this page in step with the UI (copied from the test above)."""
    shot = artifacts / "cem.png"
    assert shot.exists() and shot.stat().st_size > 20_000
    publish_screenshot(shot, "cem.png")
