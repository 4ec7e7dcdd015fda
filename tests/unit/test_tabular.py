"""engine.tabular: ordinal coding with category names, labels and splits, a forest with progress and cancel."""

import numpy as np
import pandas as pd
import pytest

from engine.datasets import load_dataset
from engine.errors import DataError, TrainingCancelled
from engine.explainers import AnchorTabular
from engine.tabular import MISSING_CATEGORY, OrdinalEncoder, classification_data, find_split_column, train_forest
from engine.training import CancelToken


def _frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(18, 80, n).astype(float),
        "city": rng.choice(["Paris", "Lyon", "Nice"], n),
        "rooms": rng.integers(1, 4, n),
        "y": rng.choice(["no", "yes"], n),
        "split": np.where(np.arange(n) < n * 2 // 3, "train", "test"),
    })


def test_encoder_codes_text_columns_by_sorted_name_and_keeps_numbers():
    frame = _frame()
    encoder = OrdinalEncoder().fit(frame, ["age", "city"])
    X = encoder.transform(frame)
    assert encoder.categorical_names == {1: ["Lyon", "Nice", "Paris"]}
    assert X[:, 0].tolist() == frame["age"].tolist()
    assert [encoder.categories_["city"][int(c)] for c in X[:, 1]] == frame["city"].tolist()


def test_encoder_numeric_column_marked_categorical_gets_integer_names():
    encoder = OrdinalEncoder(categorical=["rooms"]).fit(_frame(), ["rooms"])
    assert encoder.categorical_names == {0: ["1", "2", "3"]}


def test_missing_category_is_its_own_last_category_and_missing_numbers_stay_nan():
    frame = pd.DataFrame({"job": ["b", None, "a"], "x": [1.0, np.nan, 3.0]})
    encoder = OrdinalEncoder().fit(frame, ["job", "x"])
    assert encoder.categories_["job"] == ["a", "b", MISSING_CATEGORY]
    X = encoder.transform(frame)
    assert X[:, 0].tolist() == [1.0, 2.0, 0.0]
    assert np.isnan(X[1, 1])


def test_encoder_unseen_category_becomes_nan():
    encoder = OrdinalEncoder().fit(pd.DataFrame({"c": ["a", "b"]}), ["c"])
    assert np.isnan(encoder.transform(pd.DataFrame({"c": ["z"]}))[0, 0])


@pytest.mark.parametrize("frame, columns, message", [
    (pd.DataFrame({"x": [1.0]}), [], "no feature columns"),
    (pd.DataFrame({"x": [1.0]}), ["nope"], "not in the data"),
    (pd.DataFrame({"x": [1.0, np.inf]}), ["x"], "infinite"),
    (pd.DataFrame({"x": [np.nan, np.nan]}), ["x"], "no values"),
    (pd.DataFrame({"id": [f"r{i}" for i in range(500)]}), ["id"], "too many for a categorical"),
])
def test_encoder_bad_columns_raise_data_error_saying_what_to_do(frame, columns, message):
    with pytest.raises(DataError, match=message):
        OrdinalEncoder().fit(frame, columns)


def test_split_column_gives_the_split_and_labels_are_coded_by_sorted_class_name():
    frame = _frame()
    data = classification_data(frame, ["age", "city"], "y", split_column="split")
    assert data.class_names == ["no", "yes"]
    assert data.train_rows.tolist() == list(range(40)) and data.test_rows.tolist() == list(range(40, 60))
    assert [data.class_names[c] for c in data.y_test] == frame["y"].iloc[40:].tolist()
    assert data.X_train.shape == (40, 2) and data.X_test.shape == (20, 2)


def test_find_split_column_needs_both_train_and_test_values():
    assert find_split_column(_frame()) == "split"
    assert find_split_column(load_dataset("adult")) == "split"
    assert find_split_column(_frame().assign(split="train")) is None
    assert find_split_column(_frame().assign(split="holdout")) is None
    assert find_split_column(load_dataset("iris")) is None


def test_random_split_is_stratified_seeded_and_disjoint():
    frame = load_dataset("iris")
    features = [c for c in frame.columns if c != "species"]
    a = classification_data(frame, features, "species", test_size=1 / 3, seed=3)
    b = classification_data(frame, features, "species", test_size=1 / 3, seed=3)
    assert np.array_equal(a.test_rows, b.test_rows)
    assert not set(a.train_rows) & set(a.test_rows)
    assert np.bincount(a.y_test).tolist() == [17, 17, 17]


def test_max_train_rows_samples_training_rows_and_says_so():
    data = classification_data(_frame(200), ["age"], "y", split_column="split", max_train_rows=50)
    assert len(data.train_rows) == 50
    assert any("random sample of 50" in note for note in data.notes)


def test_rows_without_label_are_dropped_with_a_note():
    frame = _frame()
    frame.loc[[0, 1], "y"] = None
    data = classification_data(frame, ["age"], "y", split_column="split")
    assert 0 not in data.train_rows and 1 not in data.train_rows
    assert any("2 row(s) without a value" in note for note in data.notes)


@pytest.mark.parametrize("features, label, split, message", [
    (["age", "y"], "y", None, "also selected as a feature"),
    (["age", "split"], "y", "split", "split column 'split' is selected"),
    (["city"], "age", None, "distinct values; choose a column of class labels"),
    (["age"], "missing", None, "not in the data"),
    (["age"], "city", "y", "must hold only 'train' and 'test'"),
])
def test_bad_choices_raise_data_error(features, label, split, message):
    with pytest.raises(DataError, match=message):
        classification_data(_frame(300), features, label, split_column=split)


def test_single_class_label_is_refused():
    frame = _frame().assign(y="yes")
    with pytest.raises(DataError, match="single class"):
        classification_data(frame, ["age"], "y")


def test_forest_reports_progress_per_group_of_trees_and_is_reproducible():
    data = classification_data(load_dataset("iris"), ["sepal_length", "petal_length"], "species", seed=0)
    events = []
    forest = train_forest(data.X_train, data.y_train, n_trees=25, seed=1, progress=events.append)
    assert len(forest.estimators_) == 25
    assert [e["trees_built"] for e in events] == [5, 10, 15, 20, 25] and events[-1]["fraction"] == 1.0
    again = train_forest(data.X_train, data.y_train, n_trees=25, seed=1)
    assert np.array_equal(forest.predict_proba(data.X_test), again.predict_proba(data.X_test))
    assert (forest.predict(data.X_test) == data.y_test).mean() > 0.85


def test_forest_stops_when_cancelled_and_at_the_time_budget():
    X = np.random.default_rng(0).normal(size=(100, 2))
    y = (X[:, 0] > 0).astype(int)
    token = CancelToken()
    with pytest.raises(TrainingCancelled):
        train_forest(X, y, n_trees=50, progress=lambda e: token.cancel(), cancel=token)
    assert len(train_forest(X, y, n_trees=50, time_budget=0.0).estimators_) == 10


def test_forest_handles_missing_values_and_feeds_anchor_tabular():
    frame = _frame(300, seed=1)
    frame.loc[::7, "age"] = np.nan
    frame["y"] = np.where(frame["city"] == "Paris", "yes", "no")
    data = classification_data(frame, ["age", "city", "rooms"], "y", split_column="split")
    forest = train_forest(data.X_train, data.y_train, n_trees=10, seed=0)
    explainer = AnchorTabular(forest.predict_proba, data.feature_names, data.categorical_names, seed=0)
    explanation = explainer.fit(data.X_train).explain(data.X_test[0])
    city = data.categorical_names[1][int(data.X_test[0, 1])]
    assert explanation.anchor == [f"city = {city}"]
    assert explanation.precision >= 0.95
