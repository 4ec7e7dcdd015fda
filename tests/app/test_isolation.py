"""Two sessions of the app at once never see each other's data, models or results.

Each AppTest is one browser session with its own ``st.session_state``. Both upload a different CSV through the
Data page's real uploader, open Tabular outliers and train at the same time (both jobs are submitted before
either finishes), then move their sliders and upload junk independently. Nothing one does shows up in the other.

AppTest gives every test session the same session id, so here the two sessions count as one owner for the
per-session job cap (2); the browser version of "two tabs training at once" is in bench/faults.py.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.app.helpers import ROOT, metric_value, no_exceptions

pytestmark = pytest.mark.app

TIMEOUT = 120
APP = ROOT / "app.py"


def csv_bytes(seed: int, rows: int, prefix: str, label: bool) -> bytes:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 3 if prefix == "b" else 4)).round(4))
    frame.columns = [f"{prefix}{i}" for i in frame.columns]
    if label:
        frame["label"] = (rng.random(rows) < 0.05).astype(int)
    return frame.to_csv(index=False).encode()


ALPHA = ("alpha.csv", csv_bytes(1, 240, "a", label=True))  # 4 features + label
BETA = ("beta.csv", csv_bytes(2, 160, "b", label=False))  # 3 features, no label


def open_session_with_upload(name: str, data: bytes) -> AppTest:
    """A fresh session: the app's Data page, an upload through its uploader, then Tabular outliers."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    no_exceptions(at)
    at.file_uploader(key="upload").upload(name, data, "text/csv")
    at.run()
    no_exceptions(at)
    assert at.session_state["active_table"].name == name
    at.switch_page("pages/tabular_outliers.py")
    at.run()
    no_exceptions(at)
    return at


def start_training(at: AppTest) -> None:
    at.number_input(key="aegmm:epochs").set_value(1)
    at.number_input(key="aegmm:max_rows").set_value(100)
    at.button(key="aegmm:train").click()
    at.run()
    no_exceptions(at)


def run_both_until_done(sessions: list[AppTest], timeout: float = 300) -> None:
    """Rerun the sessions in turn (as their panels do) until both jobs have finished."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(not at.session_state["job::aegmm"].active for at in sessions):
            for at in sessions:
                at.run()
                no_exceptions(at)
            return
        time.sleep(0.5)
        for at in sessions:
            at.run()
    raise AssertionError("the two trainings did not finish in time")


def flagged(at: AppTest) -> int:
    return int(metric_value(at, "Flagged rows").replace(",", ""))


@pytest.fixture(scope="module")
def two_trained_sessions():
    """Two sessions trained at once in the server's job threads (tests/ray runs the same on Ray)."""
    alpha = open_session_with_upload(*ALPHA)
    beta = open_session_with_upload(*BETA)
    start_training(alpha)
    start_training(beta)
    jobs = [at.session_state["job::aegmm"] for at in (alpha, beta)]
    assert jobs[0] is not jobs[1]
    assert sum(job.active for job in jobs) >= 1  # at least one was still queued/running when the other started
    run_both_until_done([alpha, beta])
    return alpha, beta


def test_each_session_sees_only_its_own_upload():
    alpha = open_session_with_upload(*ALPHA)
    beta = open_session_with_upload(*BETA)
    a_table, b_table = alpha.session_state["active_table"], beta.session_state["active_table"]
    assert a_table is not b_table and a_table.frame is not b_table.frame
    assert (a_table.name, list(a_table.frame.columns)) == ("alpha.csv", ["a0", "a1", "a2", "a3", "label"])
    assert (b_table.name, list(b_table.frame.columns)) == ("beta.csv", ["b0", "b1", "b2"])
    # On the workflow page each session's dataset chooser offers its own upload and its own columns only.
    for at, name, features, numeric in ((alpha, "alpha.csv", ["a0", "a1", "a2", "a3"], ["a0", "a1", "a2", "a3", "label"]),
                                        (beta, "beta.csv", ["b0", "b1", "b2"], ["b0", "b1", "b2"])):
        dataset = at.selectbox(key="aegmm:dataset")
        other = "beta.csv" if name == "alpha.csv" else "alpha.csv"
        assert dataset.value == "upload" and dataset.options[dataset.index] == f"{name} (your active dataset)"
        assert not any(other in option for option in dataset.options)
        assert at.multiselect(key="aegmm:features").value == features
        assert list(at.multiselect(key="aegmm:features").options) == numeric


def test_trainings_at_the_same_time_keep_separate_jobs_models_and_results(two_trained_sessions):
    alpha, beta = two_trained_sessions
    a_job, b_job = alpha.session_state["job::aegmm"], beta.session_state["job::aegmm"]
    assert a_job.state == "done", a_job.error
    assert b_job.state == "done", b_job.error
    a_run, b_run = a_job.view, b_job.view  # the page's view of each answer (workflows.tabular.AEGMMRun)
    assert a_run is not b_run and a_run.model is not b_run.model
    assert a_run.model.load().aegmm_ is not b_run.model.load().aegmm_
    assert (a_run.table_name, a_run.columns, len(a_run.scores)) == ("alpha.csv", ["a0", "a1", "a2", "a3"], 240)
    assert (b_run.table_name, b_run.columns, len(b_run.scores)) == ("beta.csv", ["b0", "b1", "b2"], 160)
    assert a_run.labels is not None and b_run.labels is None
    # Each page shows its own results.
    assert any("alpha.csv · 4 feature column(s) (4 model inputs) · 240 rows scored" in c.value for c in alpha.caption)
    assert any("beta.csv · 3 feature column(s) (3 model inputs) · 160 rows scored" in c.value for c in beta.caption)
    assert not any("alpha.csv" in c.value for c in beta.caption)
    assert {"Precision", "Recall", "F1"} <= {m.label for m in alpha.metric}
    assert "F1" not in {m.label for m in beta.metric}


def test_one_sessions_slider_and_bad_upload_do_not_touch_the_other(two_trained_sessions):
    alpha, beta = two_trained_sessions
    b_flagged, b_threshold = flagged(beta), beta.session_state["job::aegmm"].view.threshold
    before = flagged(alpha)
    alpha.slider(key="aegmm:percentile").set_value(60.0).run()
    no_exceptions(alpha)
    assert flagged(alpha) > before
    beta.run()
    no_exceptions(beta)
    assert beta.slider(key="aegmm:percentile").value == 95.0
    assert flagged(beta) == b_flagged
    assert beta.session_state["job::aegmm"].view.threshold == pytest.approx(b_threshold)
    assert alpha.session_state["job::aegmm"].view.threshold != pytest.approx(b_threshold)

    # A junk upload in alpha is alpha's problem only.
    alpha.switch_page("pages/data.py")
    alpha.run()
    alpha.file_uploader(key="upload").upload("junk.csv", b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes(range(256)),
                                             "text/csv")
    alpha.run()
    no_exceptions(alpha)
    assert any("Could not use junk.csv" in e.value for e in alpha.error)
    assert alpha.session_state["active_table"].name == "alpha.csv"
    beta.run()
    no_exceptions(beta)
    assert not beta.error and beta.session_state["active_table"].name == "beta.csv"
    assert beta.session_state["job::aegmm"].state == "done" and flagged(beta) == b_flagged


def test_other_sessions_reruns_do_not_delete_a_download_being_fetched():
    """Regression (found by bench/loadtest.py): a file generated by a download button was deleted by the orphan
    clean-up after any two script runs of *other* sessions, often before the browser fetched it. The server's
    start-up keeps it referenced by the session that clicked, until that session's own next full run."""
    from unittest.mock import patch

    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    import ui.runtime

    ui.runtime._keep_generated_downloads_for_their_session()  # as the app's start-up does

    manager = MediaFileManager(MemoryMediaFileStorage("/media"))
    with patch("streamlit.runtime.media_file_manager._get_session_id", return_value="visitor-a"):
        placeholder = manager.add_deferred(lambda: b"row,score\n1,0.5\n", "text/csv", "1.4.2", "scores.csv")
    url = manager.execute_deferred(placeholder)  # visitor A clicks "Scores CSV"; the browser gets this URL
    generated = url.rsplit("/", 1)[1].split(".")[0]
    for _ in range(10):  # other visitors' pages rerun in the meantime
        manager.remove_orphaned_files()
    assert manager.read_file(generated).content == b"row,score\n1,0.5\n"
    assert manager.execute_deferred(placeholder) == url  # a second click serves the same file
    manager.clear_session_refs("visitor-a")  # visitor A's next full run: the generated file may go now
    manager.remove_orphaned_files()
    manager.remove_orphaned_files()
    assert manager.read_file(generated) is None
