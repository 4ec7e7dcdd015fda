"""workflows.anchors: readable rows, the view of a forest's answer, the explain request by table row."""

import numpy as np
import pandas as pd
import pytest

from engine.errors import DataError
from engine.explainers import AnchorTabular
from engine.ingest import table_from_frame
from jobs.explain import AnchorModel, AnchorSearch, ForestAnswer, ForestRequest
from workflows import anchors as flow


def _table():
    rng = np.random.default_rng(0)
    n = 80
    frame = pd.DataFrame({"age": rng.integers(18, 80, n).astype(float), "job": rng.choice(["clerk", "nurse"], n),
                          "label": rng.choice(["lo", "hi"], n)})
    frame.loc[3, "job"] = None
    return table_from_frame(frame, "demo", roles={"age": "feature", "job": "categorical", "label": "label"})


def test_readable_rows_match_the_explainers():
    data = flow.prepare(_table(), ["age", "job"], "label", None, 0.25, 1000, 0)
    explainer = AnchorTabular(lambda X: np.tile([0.5, 0.5], (len(X), 1)), data.feature_names,
                              data.categorical_names, seed=0).fit(data.X_train)
    rows = np.vstack([data.X_train, data.X_test])
    mine = flow.readable_rows(rows, data.feature_names, data.categorical_names)
    pd.testing.assert_frame_equal(mine, explainer.readable_rows(rows))
    assert set(mine["job"].dropna()) == {"clerk", "nurse", "(missing)"}  # a missing category is named


def test_readable_values_as_text():
    frame = flow.readable_rows(np.array([[np.nan, 25.5]]), ["job", "age"], {0: ["a", "b"]})
    assert flow.readable_values(frame)["value"].tolist() == ["(missing)", "25.5"]


def test_forest_view_and_explain_request_use_the_table_row():
    data = flow.prepare(_table(), ["age", "job"], "label", None, 0.25, 1000, 0)
    forest = ForestRequest(data.X_train, data.y_train, data.X_test, n_trees=3)
    answer = ForestAnswer(np.tile([0.2, 0.8], (len(data.X_test), 1)), np.array([0, 1]), 3)
    view = flow.forest_view(answer, data, AnchorModel(forest=forest), "demo")
    assert view.description == "Random forest of 3 trees" and view.column_classes == data.class_names
    assert view.accuracy == pytest.approx(np.mean(data.y_test == 1))
    row = int(data.test_rows[5])
    request = flow.explain_request(view, row, AnchorSearch(threshold=0.9), seed=3)
    assert request.position == 5 and request.seed == 3 and request.search.threshold == 0.9
    with pytest.raises(DataError):
        flow.explain_request(view, int(data.train_rows[0]), AnchorSearch(), seed=0)
    assert flow.explain_label(row) == f"Explain row {row:,}" and flow.json_name(104) == "anchor_row_104.json"


def test_too_many_features_is_a_data_error():
    frame = pd.DataFrame({f"f{i}": np.arange(20.0) for i in range(flow.MAX_FEATURES + 1)} | {"label": ["a"] * 20})
    with pytest.raises(DataError, match="at most"):
        flow.prepare(table_from_frame(frame, "wide"), [f"f{i}" for i in range(flow.MAX_FEATURES + 1)], "label",
                     None, 0.25, 1000, 0)


def test_every_search_setting_has_plain_words_help():
    for name in ("threshold", "beam_size", "coverage_samples", "max_rules", "seed", "trees", "depth"):
        assert len(flow.HELP[name].split()) >= 8, name
