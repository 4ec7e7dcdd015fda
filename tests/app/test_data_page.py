"""The Data page under streamlit.testing.v1.AppTest: bundled datasets, uploads, the bad-CSV corpus, roles.

Uploads go through AppTest's own file-uploader API (``at.file_uploader(key=...).upload(name, bytes, mime)``,
new in Streamlit 1.67): AppTest registers the bytes with its script runner and sends the uploader's widget
state exactly as the browser does, so the page's real ``st.file_uploader`` → ``ui.data.load_upload`` path runs.

Role edits use the route AppTest documents for keyed data editors: the edit state
(``edited_rows`` / ``added_rows`` / ``deleted_rows``) is assigned on ``at.session_state`` before ``run()``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.datasets import get_dataset
from tests.bad_csv import EXPECTED, bad_csv_corpus
from ui.data import DEFAULT_DATASET

pytestmark = pytest.mark.app

ROOT = Path(__file__).resolve().parents[2]
DATA_PAGE = ROOT / "pages" / "data.py"
APP = ROOT / "app.py"
TIMEOUT = 120  # the shared 2-core machine is slow; a run normally takes 1-2 s
DEFAULT_TITLE = get_dataset(DEFAULT_DATASET).title
GOOD_CSV = b"sensor_a,sensor_b,city,label\n1.5,10,Paris,0\n2.5,20,Lyon,1\n3.5,30,Paris,0\n4.5,40,Nice,0\n"


@pytest.fixture(scope="module")
def corpus():
    return bad_csv_corpus(include_huge=True)


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def header(at: AppTest) -> str:
    headers = [h.value for h in at.header if h.value.startswith("Active dataset: ")]
    assert len(headers) == 1, [h.value for h in at.header]
    return headers[0].removeprefix("Active dataset: ")


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}"
    return values[0]


def open_page() -> AppTest:
    at = AppTest.from_file(str(DATA_PAGE), default_timeout=TIMEOUT)
    at.run()
    no_exception(at)
    return at


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    # The page's only uploader (its key changes after a refused upload, so that the refused file is not shown).
    at.file_uploader[0].upload(name, data, "text/csv")
    at.run()
    no_exception(at)
    return at


def tables(at: AppTest) -> list:
    """The read-only tables in page order: the preview, then the missing-value report when there is one.

    (``st.dataframe`` without selections has no element id in AppTest, so its ``key`` cannot find it.)
    """
    return [d for d in at.dataframe if d.editing_mode == "read_only"]


def roles_editor(at: AppTest):
    editors = at.data_editor
    assert len(editors) == 1
    return editors[0]


def edit_roles(at: AppTest, edits: dict[int, str]) -> AppTest:
    """Edit the role cell of summary rows (by position), as a user would in the data editor."""
    at.session_state[roles_editor(at).key] = {
        "edited_rows": {row: {"role": role} for row, role in edits.items()},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    no_exception(at)
    return at


# -- bundled datasets ------------------------------------------------------------------------------


def test_page_opens_on_the_default_bundled_dataset():
    at = open_page()
    assert header(at) == DEFAULT_TITLE
    assert metric(at, "Rows") == "49,097" and metric(at, "Columns") == "10"
    assert metric(at, "Label column") == "anomaly"
    assert at.selectbox(key="bundled_choice").value == DEFAULT_DATASET
    assert at.button(key="use_bundled").disabled  # it is already the active dataset
    assert len(tables(at)) == 1 and len(tables(at)[0].value) == 200  # preview only, nothing missing
    assert list(roles_editor(at).value["column"]) == [f"f{i}" for i in range(1, 10)] + ["anomaly"]
    assert at.success[0].value == "No missing or infinite values."


def test_picking_a_bundled_dataset_makes_it_active():
    at = open_page()
    at.selectbox(key="bundled_choice").set_value("iris").run()
    no_exception(at)
    assert header(at) == DEFAULT_TITLE  # choosing alone changes nothing
    assert not at.button(key="use_bundled").disabled
    at.button(key="use_bundled").click().run()
    no_exception(at)
    assert header(at) == "Iris flowers"
    assert metric(at, "Rows") == "150" and metric(at, "Label column") == "species"
    assert at.session_state["active_origin"] == "bundled:iris"
    assert at.selectbox(key="bundled_choice").value == "iris" and at.button(key="use_bundled").disabled
    assert roles_editor(at).value.set_index("column").loc["species", "role"] == "label"


# -- uploads -------------------------------------------------------------------------------------


def test_uploaded_csv_becomes_the_active_dataset_with_preview_and_roles():
    at = upload(open_page(), "sensors.csv", GOOD_CSV)
    assert not at.error
    assert header(at) == "sensors.csv"
    assert at.session_state["active_origin"] == "upload"
    assert metric(at, "Rows") == "4" and metric(at, "Columns") == "4" and metric(at, "Label column") == "label"
    preview = tables(at)[0].value
    assert list(preview.columns) == ["sensor_a", "sensor_b", "city", "label"]
    assert preview["sensor_b"].tolist() == [10, 20, 30, 40]
    roles = roles_editor(at).value.set_index("column")["role"].to_dict()
    assert roles == {"sensor_a": "feature", "sensor_b": "feature", "city": "categorical", "label": "label"}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_bad_csv_shows_a_message_and_never_an_exception(corpus, name):
    at = upload(open_page(), f"{name}.csv", corpus[name])
    outcome, words = EXPECTED[name]
    errors = [e.value for e in at.error]
    warnings = [w.value for w in at.warning]
    if outcome == "error":
        assert len(errors) == 1, errors
        assert errors[0].startswith(f"Could not use {name}.csv: ")
        assert all(word in errors[0] for word in words), errors[0]
        assert header(at) == DEFAULT_TITLE  # the previous dataset stays active
        assert any("previous active dataset is still in use" in c.value for c in at.caption)
    else:
        assert errors == []
        assert header(at) == f"{name}.csv"
        if outcome == "warning":
            assert any(all(word in w for word in words) for w in warnings), warnings


def test_a_good_upload_after_a_bad_one_clears_the_error(corpus):
    at = upload(open_page(), "ragged.csv", corpus["ragged_rows"])
    assert at.error
    at = upload(at, "sensors.csv", GOOD_CSV)
    assert not at.error and header(at) == "sensors.csv"


def test_a_bad_upload_keeps_the_previously_uploaded_dataset(corpus):
    at = upload(open_page(), "sensors.csv", GOOD_CSV)
    at = upload(at, "empty.csv", corpus["empty"])
    assert "empty" in at.error[0].value
    assert header(at) == "sensors.csv"


def test_missing_values_are_reported_per_column(corpus):
    at = upload(open_page(), "gaps.csv", corpus["all_nan_column"])
    assert len(tables(at)) == 2
    report = tables(at)[1].value
    assert report["column"].tolist() == ["empty"] and report["missing"].tolist() == [3]


def test_the_upload_is_parsed_once_not_on_every_rerun(monkeypatch):
    import ui.data

    calls = []
    real = ui.data.load_upload
    monkeypatch.setattr(ui.data, "load_upload", lambda data, name: calls.append(name) or real(data, name))
    at = upload(open_page(), "sensors.csv", GOOD_CSV)
    at.run()
    at.run()
    no_exception(at)
    assert calls == ["sensors.csv"]


# -- roles ------------------------------------------------------------------------------------------


def test_editing_a_role_in_the_editor_updates_the_active_dataset():
    at = upload(open_page(), "sensors.csv", GOOD_CSV)
    at = edit_roles(at, {0: "label", 3: "feature"})  # sensor_a becomes the label, label a feature
    assert not at.error
    assert metric(at, "Label column") == "sensor_a"
    assert at.session_state["active_table"].roles == {
        "sensor_a": "label", "sensor_b": "feature", "city": "categorical", "label": "feature"}
    assert roles_editor(at).value.set_index("column").loc["sensor_a", "role"] == "label"


def test_an_impossible_role_shows_a_message_and_changes_nothing():
    at = upload(open_page(), "sensors.csv", GOOD_CSV)
    at = edit_roles(at, {2: "feature"})  # 'city' holds text
    assert len(at.error) == 1
    assert at.error[0].value.startswith("Role change not applied: column 'city' holds text")
    assert at.session_state["active_table"].roles["city"] == "categorical"


def test_two_labels_are_refused():
    at = upload(open_page(), "sensors.csv", GOOD_CSV)
    at = edit_roles(at, {0: "label"})  # 'label' keeps its label role too
    assert "only one column can be the label" in at.error[0].value
    assert metric(at, "Label column") == "label"


def test_role_edits_do_not_leak_into_the_next_dataset_of_the_same_width():
    at = open_page()
    at.selectbox(key="bundled_choice").set_value("ecg_synth_train").run()
    at.button(key="use_bundled").click().run()
    at = edit_roles(at, {1: "ignore"})  # 'ecg' → ignore
    assert at.session_state["active_table"].roles["ecg"] == "ignore"
    at.selectbox(key="bundled_choice").set_value("ecg_synth_test").run()
    at.button(key="use_bundled").click().run()
    no_exception(at)
    assert header(at) == get_dataset("ecg_synth_test").title
    assert at.session_state["active_table"].roles["ecg"] == "feature"
    assert roles_editor(at).value.set_index("column").loc["ecg", "role"] == "feature"


# -- the whole app ---------------------------------------------------------------------------------
# Only the first run of app.py is checked here: on a rerun AppTest (1.67) runs the st.navigation page
# without app.py's sidebar, so the sidebar after an upload is checked in the browser (tests/e2e).


def test_the_whole_app_opens_on_the_data_page_with_the_default_dataset():
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    no_exception(at)
    assert at.title[0].value == "Data"
    assert header(at) == DEFAULT_TITLE
    sidebar_text = " ".join(m.value for m in at.sidebar.markdown)
    assert f"**{DEFAULT_TITLE}**" in sidebar_text and "49,097 rows × 10 columns" in sidebar_text
    assert "server: 0 running · 0 queued" in sidebar_text
