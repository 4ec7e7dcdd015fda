"""The Data page in headless Chromium against `streamlit run app.py`: bundled data, a real upload, bad CSVs."""

from __future__ import annotations

import urllib.request

import pytest
from playwright.sync_api import expect

from engine.datasets import get_dataset
from tests.bad_csv import EXPECTED, bad_csv_corpus
from tests.e2e.helpers import (
    active_dataset_heading,
    by_test_id,
    click_button,
    error_alerts,
    expect_no_exception,
    open_tab,
    publish_screenshot,
    select_option,
    upload_through_file_chooser,
    wait_for_app_idle,
    warning_alerts,
)
from ui.data import DEFAULT_DATASET

pytestmark = pytest.mark.e2e

DEFAULT_TITLE = get_dataset(DEFAULT_DATASET).title
UPLOAD = b"sensor_a,sensor_b,city,label\n1.5,10,Paris,0\n2.5,20,Lyon,1\n3.5,30,Paris,0\n4.5,40,Nice,0\n"
CORPUS = bad_csv_corpus(include_huge=False)
BROWSER_BAD_CSVS = ["empty", "binary_png", "binary_random", "ragged_rows", "wide_10000_columns"]


def sidebar(page):
    return by_test_id(page, "stSidebarUserContent")


def test_health_endpoint_answers(app_url):
    with urllib.request.urlopen(f"{app_url}/_stcore/health", timeout=10) as response:
        assert response.status == 200 and response.read() == b"ok"


def test_app_loads_on_the_data_page_with_the_default_bundled_dataset(page, artifacts):
    expect(by_test_id(page, "stHeading").first).to_have_text("Data")
    expect(active_dataset_heading(page)).to_have_text(f"Active dataset: {DEFAULT_TITLE}")
    expect(sidebar(page)).to_contain_text(DEFAULT_TITLE)
    expect(sidebar(page)).to_contain_text("49,097 rows × 10 columns")
    expect(by_test_id(page, "stMetric").filter(has_text="Rows")).to_contain_text("49,097")
    expect(by_test_id(page, "stDataFrame").first).to_be_visible()  # the preview grid
    expect(by_test_id(page, "stSidebarNav")).to_contain_text("Data")
    expect_no_exception(page)
    shot = artifacts / "data_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    publish_screenshot(shot, "data_page.png")


def test_picking_a_bundled_dataset(page):
    select_option(page, "Bundled dataset", "Iris flowers · tabular")
    expect(active_dataset_heading(page)).to_have_text(f"Active dataset: {DEFAULT_TITLE}")  # not yet applied
    click_button(page, "Use this dataset")
    expect(active_dataset_heading(page)).to_have_text("Active dataset: Iris flowers")
    expect(by_test_id(page, "stMetric").filter(has_text="Label column")).to_contain_text("species")
    expect(sidebar(page)).to_contain_text("Iris flowers")
    expect(sidebar(page)).to_contain_text("150 rows × 5 columns")
    expect_no_exception(page)


def test_uploading_a_csv_through_the_file_chooser_shows_its_preview(page, artifacts):
    open_tab(page, "Upload a CSV")
    upload_through_file_chooser(page, "sensors.csv", UPLOAD)
    expect(active_dataset_heading(page)).to_have_text("Active dataset: sensors.csv")
    expect(error_alerts(page)).to_have_count(0)
    expect(by_test_id(page, "stFileChipName")).to_have_text("sensors.csv")  # the uploader lists the file
    # The grid is drawn on a canvas; its cells are mirrored in an (invisible) accessible table.
    preview = by_test_id(page, "stDataFrame").first
    expect(preview.locator("th")).to_have_text(["", "sensor_a", "sensor_b", "city", "label"])
    expect(preview.locator("tbody tr").first.locator("td")).to_have_text(["0", "1.5", "10", "Paris", "0"])
    expect(by_test_id(page, "stMetric").filter(has_text="Rows")).to_contain_text("4")
    expect(by_test_id(page, "stMetric").filter(has_text="Label column")).to_contain_text("label")
    # The sidebar, drawn before the page runs, follows the new dataset too.
    expect(sidebar(page)).to_contain_text("sensors.csv")
    expect(sidebar(page)).to_contain_text("4 rows × 4 columns")
    expect_no_exception(page)
    page.screenshot(path=str(artifacts / "data_page_upload.png"), full_page=True)


@pytest.mark.parametrize("name", BROWSER_BAD_CSVS)
def test_a_bad_csv_shows_an_error_and_no_exception(page, name):
    assert EXPECTED[name][0] == "error"
    open_tab(page, "Upload a CSV")
    upload_through_file_chooser(page, f"{name}.csv", CORPUS[name])
    expect(error_alerts(page)).to_have_count(1)
    message = error_alerts(page).first
    expect(message).to_contain_text(f"Could not use {name}.csv:")
    for word in EXPECTED[name][1]:
        expect(message).to_contain_text(word)
    expect(active_dataset_heading(page)).to_have_text(f"Active dataset: {DEFAULT_TITLE}")
    expect_no_exception(page)


def test_a_csv_with_warnings_is_used_and_the_warnings_are_shown(page):
    open_tab(page, "Upload a CSV")
    upload_through_file_chooser(page, "gaps.csv", CORPUS["all_nan_column"])
    expect(active_dataset_heading(page)).to_have_text("Active dataset: gaps.csv")
    expect(warning_alerts(page).filter(has_text="entirely empty")).to_have_count(1)
    expect_no_exception(page)


def test_the_app_keeps_working_after_a_bad_upload(page):
    open_tab(page, "Upload a CSV")
    upload_through_file_chooser(page, "junk.csv", CORPUS["binary_random"])
    expect(error_alerts(page)).to_have_count(1)
    open_tab(page, "Bundled datasets")
    select_option(page, "Bundled dataset", "Wine recognition · tabular")
    click_button(page, "Use this dataset")
    expect(active_dataset_heading(page)).to_have_text("Active dataset: Wine recognition")
    expect_no_exception(page)
    wait_for_app_idle(page)
