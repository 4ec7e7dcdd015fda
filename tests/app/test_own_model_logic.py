"""The plain logic behind "Use my own model" (ui/own_model.py): accepted files, input columns, classes, accuracy."""

import numpy as np
import pytest

from engine.errors import ModelError
from tests.app import own_models
import jobs.models as models_jobs
from ui import own_model
from ui.own_model import ClassMap


def test_the_demo_accepts_onnx_only_and_trusted_mode_adds_keras_and_skops():
    assert own_model.accepted_extensions(trusted=False) == ["onnx"]
    assert own_model.accepted_extensions(trusted=True) == ["onnx", "keras", "skops"]
    assert own_model.kind_of("Model.ONNX", trusted=False) == "onnx"
    assert own_model.kind_of("m.skops", trusted=True) == "sklearn"
    with pytest.raises(ModelError, match="accepts ONNX models only.*LANTERN_TRUSTED=1"):
        own_model.kind_of("m.keras", trusted=False)
    with pytest.raises(ModelError, match=r"\.pkl is not a model format Lantern reads; upload \.onnx\."):
        own_model.kind_of("m.pkl", trusted=False)


def test_load_reads_an_onnx_file_and_refuses_garbage_and_files_over_the_limit():
    model = own_model.load(own_models.iris_logistic_onnx(), "iris.onnx", trusted=False, max_mb=5)
    assert model.kind == "onnx" and model.class_names == ["setosa", "versicolor", "virginica"]
    assert not model.white_box and model.as_array().dtype == np.uint8
    assert own_model.describe(model).startswith("iris.onnx: ONNX classifier, 4 inputs, 3 classes")
    with pytest.raises(ModelError):
        own_model.load(b"garbage", "x.onnx", trusted=False, max_mb=5)
    with pytest.raises(ModelError, match="models of up to 1 MB are accepted"):
        own_model.load(b"0" * (2 * 2**20), "big.onnx", trusted=False, max_mb=1)


def test_inputs_follow_the_chosen_columns_in_order_and_their_number_must_be_the_models():
    table = ["a", "b", "c", "label"]
    assert own_model.input_columns(None, 2, ["c", "a"], table, "label") == ["c", "a"]
    assert own_model.input_columns(None, 2, ["c", "label", "a"], table, "label") == ["c", "a"]
    with pytest.raises(ModelError, match="reads 3 input\\(s\\) and 2 feature column\\(s\\) are chosen"):
        own_model.input_columns(None, 3, ["a", "b"], table, "label")


def test_a_model_that_names_its_features_reads_those_columns_by_name():
    table = ["a", "b", "c", "label"]
    assert own_model.input_columns(["c", "b"], 2, ["a"], table, "label") == ["c", "b"]
    with pytest.raises(ModelError, match="reads columns named `zz`, which this table does not have"):
        own_model.input_columns(["a", "zz"], 2, [], table, "label")
    with pytest.raises(ModelError, match="reads the label column `label` as a feature"):
        own_model.input_columns(["a", "label"], 2, [], table, "label")


def test_classes_match_by_name_as_text_or_number():
    names = ClassMap.between(["<=50K", ">50K"], [">50K", "<=50K"])
    assert names.to_model.tolist() == [1, 0] and names.message() is None
    numbers = ClassMap.between(["1", "2"], ["1.0", "2.0"])
    assert numbers.to_model.tolist() == [0, 1]
    assert numbers.labels_for_model(np.array([1, 0, 1])).tolist() == [1, 0, 1]


def test_classes_that_do_not_match_are_said_and_left_out_of_the_accuracy():
    none = ClassMap.between(["cat", "dog"], ["a", "b", "c"])
    assert none.matched == [] and "are not values of the label column" in none.message()
    partial = ClassMap.between(["a", "b"], ["a", "b", "c"])
    assert partial.unmatched == ["c"] and "`c` are not classes of the model" in partial.message()
    y = partial.labels_for_model(np.array([0, 1, 2, 2]))
    assert y.tolist() == [0, 1, -1, -1]
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.5, 0.5], [0.1, 0.9]])
    assert models_jobs.accuracy(proba, y) == 0.5  # rows 0 (right) and 1 (wrong); rows of "c" not counted
    assert models_jobs.accuracy(proba, np.full(4, -1)) is None


def test_a_model_without_class_names_is_matched_by_position_with_a_note():
    unnamed = ClassMap.between(["0", "1", "2"], ["setosa", "versicolor", "virginica"])
    assert unnamed.by_position and unnamed.to_model.tolist() == [0, 1, 2]
    assert unnamed.shown_names == ["setosa", "versicolor", "virginica"]
    assert "stores no class names" in unnamed.message()
    # Numbered classes that are the label's values match by name, not by position.
    digits = ClassMap.between([str(i) for i in range(10)], [str(i) for i in range(10)])
    assert not digits.by_position and digits.message() is None
    # A different number of classes cannot be matched by position.
    assert not ClassMap.between(["0", "1"], ["a", "b", "c"]).by_position


def test_predictions_run_in_bounded_batches():
    calls = []

    def predict(X):
        calls.append(len(X))
        return np.tile([0.25, 0.75], (len(X), 1))

    proba = models_jobs.predict_in_batches(predict, np.zeros((10, 3)), batch_rows=4)
    assert proba.shape == (10, 2) and calls == [4, 4, 2]
