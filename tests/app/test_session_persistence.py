"""Results that are not lost (issue #20.5): kept on screen while the next run trains, compared with the previous
run, kept when training is stopped early, form values across a page switch, and the session across a reload.

``session_app.py`` is a one-job page built like the workflow pages (its job trains a tiny model with the engine's
loop); ``session_nav_app.py`` two pages under one navigation, as app.py has; the reload test of the uploaded
table runs the real app and Data page.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.helpers import ROOT, metric_value, no_exceptions, run_until_job_done
from tests.app.session_jobs import STARTED

pytestmark = pytest.mark.app

HERE = ROOT / "tests" / "app"
TIMEOUT = 120
LONG = 100_000  # epochs: a run that only ends when stopped (or at the time budget)


@pytest.fixture(autouse=True)
def short_budget(monkeypatch):
    """A run that is never stopped ends within a minute (the server's time budget) instead of hanging a test."""
    from ui import settings

    monkeypatch.setattr(settings, "SETTINGS", dataclasses.replace(settings.SETTINGS, job_time_budget_s=60))


def demo() -> AppTest:
    at = AppTest.from_file(str(HERE / "session_app.py"), default_timeout=TIMEOUT)
    at.run()
    no_exceptions(at)
    return at


def train(at: AppTest, epochs: int) -> None:
    STARTED.clear()
    at.number_input(key="demo:epochs").set_value(epochs)
    at.button(key="demo:train").click()
    at.run()
    no_exceptions(at)


def wait_until_training(at: AppTest, timeout: float = 60) -> None:
    """Rerun until the job has trained a batch (its panel then offers "Stop and keep")."""
    assert STARTED.wait(timeout), "the job did not start training"
    at.run()
    no_exceptions(at)


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def test_results_stay_on_screen_while_the_next_run_trains_and_the_previous_run_is_offered_for_comparison():
    at = demo()
    train(at, 2)
    run_until_job_done(at, "demo")
    assert metric_value(at, "Results of run") == "1"
    assert not [e for e in at.expander if e.label == "Compare with the previous run"]  # nothing to compare yet

    train(at, LONG)  # run 2: while it trains, run 1's results stay
    wait_until_training(at)
    assert at.session_state["job::demo"].state == "running"
    assert metric_value(at, "Results of run") == "1"
    assert "results below are from your last finished run" in texts(at.caption)
    at.button(key="cancel::demo").click()
    run_until_job_done(at, "demo")
    assert at.session_state["job::demo"].state == "cancelled"
    assert metric_value(at, "Results of run") == "1"  # cancelling run 2 does not take run 1's results away
    assert "previous results are still shown" in texts(at.warning)

    train(at, 1)  # run 3 replaces them when it finishes, and is compared with run 1
    run_until_job_done(at, "demo")
    assert metric_value(at, "Results of run") == "3"
    assert [e for e in at.expander if e.label == "Compare with the previous run"]
    table = at.dataframe[-1].value
    assert list(table.index) == ["this run", "previous run"]
    assert table["run"].tolist() == [3, 1] and table["epochs"].tolist() == [1, 2]
    assert {"flagged", "loss", "final loss", "seconds"} <= set(table.columns)


def _press_during_a_long_run(button: str):
    """A fresh demo page whose long run was interrupted with ``button`` once it trained; the page and its job."""
    at = demo()
    train(at, LONG)
    wait_until_training(at)
    at.button(key=button).click()
    run_until_job_done(at, "demo")
    return at, at.session_state["job::demo"]


def test_stop_and_keep_finishes_the_run_with_the_model_trained_so_far():
    at, job = _press_during_a_long_run("stopkeep::demo")
    assert job.state == "done" and job.result is not None
    assert metric_value(at, "Results of run") == "1"
    assert 1 <= int(metric_value(at, "Epochs trained")) < LONG
    assert "stopped: stopped" in texts(at.caption)
    assert "stopped at your request" in texts(at.warning)


def test_cancel_still_discards_the_run():
    at, job = _press_during_a_long_run("cancel::demo")
    assert job.state == "cancelled"
    assert not [m for m in at.metric if m.label == "Results of run"]


def test_form_values_survive_a_switch_to_another_page_and_back():
    at = AppTest.from_file(str(HERE / "session_nav_app.py"), default_timeout=TIMEOUT)
    at.run()
    at.number_input(key="demo:epochs").set_value(5).run()
    at.select_slider(key="demo:batch").set_value(32).run()
    at.multiselect(key="demo:features").set_value(["b", "c"]).run()
    at.checkbox(key="demo:normal_only").check().run()
    at.button(key="demo:train").click().run()
    at.switch_page("session_pages/other.py").run()
    assert [t.value for t in at.title] == ["Other"]
    at.run()  # a rerun on the other page: Streamlit has dropped the form's widgets by now
    at.switch_page("session_pages/form.py").run()
    no_exceptions(at)
    assert at.number_input(key="demo:epochs").value == 5
    assert at.select_slider(key="demo:batch").value == 32
    assert at.multiselect(key="demo:features").value == ["b", "c"]
    assert at.checkbox(key="demo:normal_only").value is True


def reload(at: AppTest, script, token: str | None) -> AppTest:
    """The same browser opening the page's URL again: a new session, with ``?s=<token>`` when given."""
    again = AppTest.from_file(str(script), default_timeout=TIMEOUT)
    if token is not None:
        again.query_params["s"] = token
    again.run()
    no_exceptions(again)
    return again


def test_a_reload_with_the_token_brings_the_results_back_and_another_token_gets_nothing():
    at = demo()
    train(at, 2)
    run_until_job_done(at, "demo")
    token = at.query_params["s"][0] if isinstance(at.query_params["s"], list) else at.query_params["s"]
    assert len(token) == 32

    back = reload(at, HERE / "session_app.py", token)
    assert metric_value(back, "Results of run") == "1"
    assert back.number_input(key="demo:epochs").value == 2  # the form as it was (default: 3)

    for other in (None, "x" * 32, token[:-1], token + "A", "../" + token[3:]):
        stranger = reload(at, HERE / "session_app.py", other)
        assert not [m for m in stranger.metric if m.label == "Results of run"], other
        assert stranger.query_params["s"] != token


GOOD_CSV = b"a,b,label\n" + b"".join(f"{i},{i * 2 % 7},{int(i % 9 == 0)}\n".encode() for i in range(60))


def test_a_reload_with_the_token_brings_the_uploaded_table_back():
    app = HERE / "session_data_app.py"
    at = AppTest.from_file(str(app), default_timeout=TIMEOUT)
    at.run()
    no_exceptions(at)
    at.file_uploader[0].upload("mine.csv", GOOD_CSV, "text/csv")
    at.run()
    no_exceptions(at)
    assert at.session_state["active_table"].name == "mine.csv"
    token = at.query_params["s"]
    token = token[0] if isinstance(token, list) else token

    back = reload(at, app, token)
    assert back.session_state["active_table"].name == "mine.csv"
    assert back.session_state["active_origin"] == "upload"
    stranger = reload(at, app, None)
    assert stranger.session_state["active_table"].name != "mine.csv"


def test_expired_sessions_are_not_restored(monkeypatch):
    from ui import session

    at = demo()
    train(at, 1)
    run_until_job_done(at, "demo")
    token = at.query_params["s"]
    token = token[0] if isinstance(token, list) else token
    now = time.monotonic()
    monkeypatch.setattr(session.STORE, "_clock", lambda: now + session.STORE.ttl_s + 60)
    monkeypatch.setattr(session.STORE, "is_owner_alive", None)
    back = reload(at, HERE / "session_app.py", token)
    assert not [m for m in back.metric if m.label == "Results of run"]
