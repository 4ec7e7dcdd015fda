"""An analyst's own CSV, end to end in headless Chromium (issue #20): upload → train → threshold → export → join back.

The CSV (tests/own_csv.py) has 300 rows, 5 numeric columns, a text column, four missing values and a 0/1 label.
The text column is used as a feature (one-hot); the downloaded scores CSV has one line per input row, in order,
and joins back to the file on ``row`` with pandas.
"""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import (
    active_dataset_heading,
    by_test_id,
    expect_no_exception,
    open_tab,
    publish_screenshot,
    set_number,
    submit,
    upload_through_file_chooser,
    wait_for_app_idle,
)
from tests.own_csv import MISSING_ROWS, own_csv_bytes, own_frame

pytestmark = pytest.mark.e2e

TRAINING_TIMEOUT_MS = 300_000


def _flagged(page) -> int:
    text = by_test_id(page, "stMetric").filter(has_text="Flagged rows").get_by_test_id("stMetricValue").inner_text()
    return int(text.replace(",", ""))


def test_own_csv_upload_train_threshold_export_and_join_back(page, artifacts):
    # 1. Upload on the Data page.
    open_tab(page, "Upload a CSV")
    upload_through_file_chooser(page, "own.csv", own_csv_bytes())
    expect(active_dataset_heading(page)).to_have_text("Active dataset: own.csv")

    # 2. Tabular outliers, through the sidebar (a page switch inside the session keeps the upload).
    by_test_id(page, "stSidebarNav").get_by_role("link", name="Tabular outliers").click()
    page.wait_for_url(re.compile(r"/tabular_outliers(\?.*)?$"))
    by_test_id(page, "stHeading").filter(has_text="Tabular outliers").first.wait_for(state="visible")
    wait_for_app_idle(page, after_action=True)
    sidebar = by_test_id(page, "stSidebarUserContent")
    expect(sidebar).to_contain_text("own.csv")
    expect(sidebar).to_contain_text("300 rows × 7 columns")
    hint = by_test_id(page, "stAlertContentInfo").filter(has_text="Choose the feature columns")
    expect(hint).to_contain_text("own.csv")
    expect(hint).not_to_contain_text("Shuttle")

    # 3. Add the text column to the features, 2 epochs, train.
    features = by_test_id(page, "stMultiSelect").filter(has_text="Feature columns")
    features.get_by_role("combobox").click()
    page.get_by_role("option", name="city", exact=True).click()
    page.keyboard.press("Escape")
    by_test_id(page, "stExpander").filter(has_text="Model and training settings").click()
    set_number(page, "Epochs", 2)
    submit(page, "Train")
    by_test_id(page, "stHeading").filter(has_text="Results").wait_for(state="visible", timeout=TRAINING_TIMEOUT_MS)
    wait_for_app_idle(page)
    expect_no_exception(page)
    expect(by_test_id(page, "stAlertContentSuccess")).to_contain_text("Train AEGMM finished")
    expect(by_test_id(page, "stAlertContentInfo").filter(has_text="rows were not scored")).to_contain_text(
        "4 of 300 rows")
    before = _flagged(page)

    # 4. Move the threshold down: more rows flagged.
    thumb = by_test_id(page, "stSlider").filter(has_text="Threshold percentile").get_by_role("slider")
    thumb.focus()
    thumb.press("Home")
    wait_for_app_idle(page, after_action=True)
    expect(by_test_id(page, "stMetric").filter(has_text="Flagged rows").get_by_test_id("stMetricValue")
           ).not_to_have_text(f"{before:,}")
    after = _flagged(page)
    assert after > before
    page.screenshot(path=str(artifacts / "own_csv_walkthrough.png"), full_page=True)
    # README pictures: the results with the text feature and the skipped rows, then the flagged rows and the export.
    results = by_test_id(page, "stHeading").filter(has_text="Results")
    results.evaluate("heading => heading.scrollIntoView({block: 'start'})")
    by_test_id(page, "stMain").evaluate("main => main.scrollBy(0, -90)")  # the heading below the app's top bar
    page.wait_for_timeout(1_000)
    page.screenshot(path=str(artifacts / "own_csv_results.png"))
    publish_screenshot(artifacts / "own_csv_results.png", "own_csv_results.png")
    page.set_viewport_size({"width": 1440, "height": 1500})
    by_test_id(page, "stHeading").filter(has_text="Flagged rows").evaluate(
        "heading => heading.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(1_000)
    page.screenshot(path=str(artifacts / "own_csv_export.png"))
    publish_screenshot(artifacts / "own_csv_export.png", "own_csv_export.png")
    page.set_viewport_size({"width": 1440, "height": 1100})

    # 5. Download the scores CSV and join it back to the file with pandas.
    with page.expect_download() as download_info:
        by_test_id(page, "stDownloadButton").filter(has_text="Scores CSV").locator("button").click()
    scores = pd.read_csv(io.BytesIO(open(download_info.value.path(), "rb").read()))
    source = own_frame()
    joined = source.reset_index(names="row").merge(scores[["row", "status", "reason", "instance_score", "is_outlier"]],
                                                   on="row", how="left", validate="one_to_one")
    assert len(scores) == len(source) == 300 and scores["row"].tolist() == list(range(300))
    assert joined["status"].notna().all()  # every input row is in the export
    assert scores["city"].tolist() == source["city"].tolist()  # the text column is there, row for row
    skipped = joined[joined["status"] == "skipped"]
    assert skipped["row"].tolist() == list(MISSING_ROWS) and skipped["reason"].str.contains("x2").all()
    assert int(scores["is_outlier"].sum()) == after
    # The labelled outliers (shifted far from the rest) are flagged at the lowest threshold.
    assert joined.loc[joined["label"] == 1, "is_outlier"].eq(1).mean() >= 0.9
    expect_no_exception(page)
