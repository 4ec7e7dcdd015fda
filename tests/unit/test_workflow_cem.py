"""workflows.cem: preparation, table-row numbering, and PN / PP sentences worded by what changed."""

import numpy as np
import pandas as pd
import pytest

from engine.errors import DataError
from engine.explanation import Explanation
from engine.ingest import table_from_frame
from jobs.explain import CEMSettings
from workflows import cem as flow
from workflows.explain_data import Prepared, number_text, row_label, position_in_test


def _prepared(image=False) -> Prepared:
    n = 3
    return Prepared("t", ["a", "b", "c"], ["no", "yes"], (1, 3) if image else None,
                    np.zeros((4, n), np.float32), np.array([0, 1, 0, 1]), np.zeros((2, n), np.float32),
                    np.array([0, 1]), np.array([17, 4]), np.zeros(n), np.ones(n), "random")


def _pn(x, pn, no_info=None) -> Explanation:
    x, pn = np.array([x], np.float32), np.array([pn], np.float32)
    return Explanation(meta={}, data={"X": x, "PN": pn, "delta": pn - x, "X_pred": 0, "PN_pred": 1,
                                      "no_info_val": np.zeros(x.shape[1]) if no_info is None else no_info,
                                      "found": np.array([True])})


def _pp(x, pp, no_info) -> Explanation:
    x, pp = np.array([x], np.float32), np.array([pp], np.float32)
    return Explanation(meta={}, data={"X": x, "PP": pp, "delta": x - pp, "X_pred": 1, "PP_pred": 1,
                                      "no_info_val": np.asarray(no_info, np.float32), "found": np.array([True])})


def test_a_pn_that_lowers_one_feature_and_raises_another_says_so():
    sentence = flow.pn_sentence(_prepared(), _pn([2.0, 1.0, 5.0], [0.5, 3.0, 5.0]))
    assert sentence == ("The model would predict **yes** instead of **no** if **b** were raised from 1 to 3 and "
                        "**a** were lowered from 2 to 0.5.")  # largest change first
    assert "addition" not in sentence and "**c**" not in sentence  # unchanged features are not named


def test_a_pn_on_an_image_adds_and_removes_ink():
    sentence = flow.pn_sentence(_prepared(image=True), _pn([0.0, 0.8, 0.5], [0.6, 0.0, 0.5]))
    assert "**a** were added (0 → 0.6)" in sentence and "**b** were removed (0.8 → 0)" in sentence


def test_a_pn_with_many_changes_names_the_largest_and_counts_the_rest():
    data = Prepared("t", list("abcdefg"), ["no", "yes"], None, np.zeros((2, 7), np.float32), np.array([0, 1]),
                    np.zeros((1, 7), np.float32), np.array([0]), np.array([0]), np.zeros(7), np.ones(7), "random")
    sentence = flow.pn_sentence(data, _pn([0.0] * 7, [1, 2, 3, 4, 5, 6, 7]))
    assert sentence.index("**g**") < sentence.index("**f**") and "**a**" not in sentence
    assert sentence.endswith("(and 2 smaller change(s)).")


def test_a_pp_says_which_features_it_keeps_as_they_are_and_which_it_lowers():
    sentence = flow.pp_sentence(_prepared(), _pp([2.0, 3.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]))
    assert sentence.startswith("The model still predicts **yes**")
    assert "**a** kept at 2" in sentence and "**b** lowered from 3 to 1 (no information: 0)" in sentence
    assert "**c**" not in sentence


def test_a_pp_with_nothing_kept():
    sentence = flow.pp_sentence(_prepared(), _pp([2.0, 3.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]))
    assert "nothing of this row is needed" in sentence


def test_rows_are_named_by_their_table_row_number():
    data = _prepared()
    assert data.position(4) == 1 and position_in_test(np.array([9, 3]), 9) == 0
    with pytest.raises(DataError, match="not one of the test rows"):
        data.position(5)
    assert row_label(32576) == "row 32,576" and flow.explain_label(4) == "Explain row 4"
    assert flow.json_name("PN", 104) == "cem_pn_row_104.json"
    exp = flow.with_context(_pn([1.0, 0, 0], [2.0, 0, 0]), data, 4)
    assert exp.meta["lantern"]["row"] == 4 and "test_row" not in exp.meta["lantern"]


def test_number_text():
    assert number_text(226802.0, 0) == "226,802" and number_text(-0.00001, 3, signed=True) == "0"
    assert number_text(0.25, 3, signed=True) == "+0.25"


def test_prepare_standardises_and_keeps_the_table_rows_of_the_test_split():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(10, 2, 60), "y": rng.normal(0, 1, 60), "label": ["a", "b"] * 30})
    data = flow.prepare(table_from_frame(frame, "demo"), ["x", "y"], "label", None, None, 0.25, 1000, 0)
    assert len(data.X_test) + len(data.X_train) == 60 and 14 <= len(data.X_test) <= 16
    assert data.X_train.mean(axis=0) == pytest.approx([0, 0], abs=1e-5)
    np.testing.assert_allclose(data.to_table_units(data.X_test), frame[["x", "y"]].to_numpy()[data.test_rows],
                               rtol=1e-5)


def test_prepare_refuses_text_features_with_what_to_do():
    frame = pd.DataFrame({"x": np.arange(40.0), "t": ["p", "q"] * 20, "label": ["a", "b"] * 20})
    with pytest.raises(DataError, match="leave them out"):
        flow.prepare(table_from_frame(frame, "demo"), ["x", "t"], "label", None, None, 0.25, 1000, 0)


def test_not_found_hint_names_the_settings_to_change():
    hint = flow.not_found_hint("PN", CEMSettings(kappa=0.2, gamma=1.0, c_steps=2, max_iterations=100))
    assert hint.startswith("No pertinent negative (PN) found: in 2 c step(s) × 100 iterations")
    assert "**gamma**" in hint and "kappa = 0.2" in hint


def test_every_search_setting_has_plain_words_help():
    for name in ("kappa", "beta", "gamma", "c_init", "c_steps", "max_iterations", "no_info", "learning_rate"):
        assert len(flow.HELP[name].split()) >= 12, name
