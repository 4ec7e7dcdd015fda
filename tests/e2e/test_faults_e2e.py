"""Hostile input and faults in headless Chromium: too-wide and binary "CSV" uploads, a tab closed mid-training,
and the Cancel button. Every case runs in seconds; the slow ones (a 500 MB upload, the time budget, load)
are in bench/faults.py and bench/loadtest.py, with their outcomes in docs/RELIABILITY.md.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import time
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.helpers import (TIMEOUT_MS, active_dataset_heading, by_test_id, error_alerts, expect_no_exception,
                               new_page, open_tab, upload_through_file_chooser, wait_for_app_idle)

pytestmark = pytest.mark.e2e

LOG_LINE = re.compile(r"lantern\.jobs \w+ (\{.*\})\s*$")
WATCHDOG_WAIT_S = 60  # the watchdog looks every 2 s; a loaded machine gets generous slack


def wide_csv(columns: int = 100_000) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    row = ",".join("1" for _ in range(columns))
    return f"{header}\n{row}\n{row}\n".encode()


def gzip_csv() -> bytes:
    """A gzip'd CSV that would expand to 40 MB, named .csv: a "bomb" the reader must refuse as binary."""
    return gzip.compress(b"a,b\n" + b"1,2\n" * 10_000_000, mtime=0)


def zip_csv() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.csv", b"a,b\n" + b"1,2\n" * 1_000_000)
    return out.getvalue()


def upload_is_refused(page, name: str, data: bytes, *words: str) -> None:
    before = active_dataset_heading(page).inner_text()
    open_tab(page, "Upload a CSV")
    upload_through_file_chooser(page, name, data)
    expect(error_alerts(page)).to_have_count(1)
    message = error_alerts(page).first
    expect(message).to_contain_text(f"Could not use {name}:")
    for word in words:
        expect(message).to_contain_text(word)
    expect(active_dataset_heading(page)).to_have_text(before)  # the previous dataset stays in use
    expect_no_exception(page)


def test_a_csv_with_100000_columns_is_refused_by_the_column_limit(page):
    upload_is_refused(page, "wide.csv", wide_csv(), "100,000 columns", "the limit is 1,000")


@pytest.mark.parametrize("name, data", [("bomb.csv", gzip_csv()), ("zipped.csv", zip_csv())], ids=["gzip", "zip"])
def test_compressed_bytes_named_csv_are_refused_as_binary(page, name, data):
    assert len(data) < 200_000  # small on disk, tens of MB once expanded: nothing may expand them
    upload_is_refused(page, name, data, "binary")


# -- training faults ------------------------------------------------------------------------------------
def server_log(app_url: str) -> Path:
    """The server's log: the one the e2e fixture writes, or LANTERN_E2E_SERVER_LOG for a server you started."""
    log = Path(os.environ.get("LANTERN_E2E_SERVER_LOG", ARTIFACTS / f"server-{app_url.rsplit(':', 1)[1]}.log"))
    if not log.exists():
        pytest.fail(f"the server log {log} does not exist; with LANTERN_E2E_URL, point LANTERN_E2E_SERVER_LOG "
                    "at the stderr log of the server you started.")
    return log


def job_events(log: Path) -> list[dict]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        match = LOG_LINE.search(line)
        if match:
            events.append(json.loads(match.group(1)))
    return events


def start_long_training(page) -> str:
    """Train AEGMM on bundled Shuttle for 200 epochs (minutes); returns the session's short id."""
    owner = by_test_id(page, "stSidebar").get_by_text(re.compile(r"^session [0-9a-f]{8}$")).inner_text().split()[1]
    by_test_id(page, "stSidebarNav").get_by_role("link", name="Tabular outliers").click()
    page.wait_for_url(re.compile(r".*/tabular_outliers(\?.*)?$"))  # the query keeps the session token
    wait_for_app_idle(page, after_action=True)
    by_test_id(page, "stExpander").filter(has_text="Model and training settings").locator("summary").click()
    epochs = by_test_id(page, "stNumberInput").filter(has_text="Epochs").locator("input")
    epochs.fill("200")
    epochs.press("Tab")  # not Enter: Enter submits the form
    by_test_id(page, "stFormSubmitButton").locator("button").click()
    # Running (a progress bar) or queued behind other tests' jobs: either way it holds a place.
    expect(by_test_id(page, "stProgress").or_(by_test_id(page, "stAlertContentInfo").filter(
        has_text="is queued"))).to_be_visible(timeout=TIMEOUT_MS)
    return owner


def wait_for_events(log: Path, predicate, timeout_s: float = WATCHDOG_WAIT_S) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = job_events(log)
        if predicate(events):
            return events
        time.sleep(0.5)
    raise AssertionError(f"no such job events within {timeout_s} s; last ones: {job_events(log)[-5:]}")


def test_a_tab_closed_mid_training_has_its_job_cancelled_and_its_slot_freed(browser, app_url):
    log = server_log(app_url)
    page = new_page(browser, app_url)
    owner = start_long_training(page)
    queued = wait_for_events(log, lambda events: any(e["event"] == "queued" and e["owner"] == owner for e in events))
    job_id = next(e["job"] for e in queued if e["event"] == "queued" and e["owner"] == owner)
    page.context.close()  # the visitor closes the tab: the websocket goes, the session is no longer active

    events = wait_for_events(log, lambda events: any(e["event"] == "finished" and e["job"] == job_id for e in events))
    of_job = [e for e in events if e["job"] == job_id]
    assert any(e["event"] == "owner_gone" for e in of_job), of_job
    finished = next(e for e in of_job if e["event"] == "finished")
    assert finished["outcome"] == "cancelled" and finished["error"] is None
    # The slot is free: a new visitor sees no job running or queued on the server (no other test leaves one).
    probe = browser.new_context()
    try:
        check = probe.new_page()
        check.goto(app_url)
        active_dataset_heading(check).wait_for(state="visible", timeout=TIMEOUT_MS)
        expect(by_test_id(check, "stSidebar")).to_contain_text("server: 0 running · 0 queued")
    finally:
        probe.close()


def test_the_cancel_button_stops_training_and_says_so(page, app_url):
    log = server_log(app_url)
    owner = start_long_training(page)
    by_test_id(page, "stButton").filter(has_text="Cancel").locator("button").first.click()
    expect(by_test_id(page, "stAlertContentWarning").filter(has_text="Train AEGMM was cancelled")).to_be_visible(
        timeout=TIMEOUT_MS)
    wait_for_app_idle(page)
    expect(by_test_id(page, "stHeading").filter(has_text="Results")).to_have_count(0)
    expect(by_test_id(page, "stButton").filter(has_text="Cancel")).to_have_count(0)
    expect_no_exception(page)
    finished = [e for e in job_events(log) if e["owner"] == owner and e["event"] == "finished"]
    assert [e["outcome"] for e in finished] == ["cancelled"]
