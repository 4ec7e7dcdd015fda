"""Own models: ONNX, Keras .keras and scikit-learn .skops files as class-probability functions, and what is refused."""

import io
import pickle
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import skops.io as sio
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from engine.errors import LanternError, ModelError
from engine.predictors import Predictor, check_predictor, kind_of, load_predictor
from tests.crafted_files import onnx_with_external_weights, zip_members, zipped

SPECIES = np.array(["setosa", "versicolor", "virginica"])


def _double(x):  # a user's own function: skops does not trust it
    return 2 * x


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), SPECIES[y]


@pytest.fixture(scope="module")
def logistic(iris):
    X, y = iris
    return LogisticRegression(max_iter=500).fit(X, y)


@pytest.fixture(scope="module")
def forest(iris):
    X, y = iris
    return RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X, y)


def onnx_bytes(model, X, zipmap=True) -> bytes:
    options = None if zipmap else {id(model): {"zipmap": False}}
    return to_onnx(model, X[:1], options=options).SerializeToString()


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory, iris):
    X, y = iris
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(8, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=0)),
        keras.layers.Dense(3, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(seed=1)),
    ])
    path = tmp_path_factory.mktemp("keras") / "iris.keras"
    model.save(path)
    return path, model


def _saved(tmp_path, model, name) -> bytes:
    model.save(tmp_path / name)
    return (tmp_path / name).read_bytes()


# ------------------------------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("zipmap", [True, False], ids=["zipmap", "probability-tensor"])
@pytest.mark.parametrize("which", ["logistic", "forest"])
def test_onnx_classifier_gives_the_same_probabilities_as_predict_proba(iris, request, which, zipmap):
    X, _ = iris
    model = request.getfixturevalue(which)
    predictor = load_predictor(onnx_bytes(model, X, zipmap))
    proba = predictor(X)
    assert proba.dtype == np.float64 and proba.shape == (150, 3)
    np.testing.assert_allclose(proba, model.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert predictor.kind == "onnx" and predictor.n_features == 4 and predictor.n_classes == 3
    assert predictor.class_names == ["setosa", "versicolor", "virginica"]
    assert predictor.feature_names is None and predictor.keras_model is None and not predictor.white_box
    assert predictor.describe() == "ONNX classifier, 4 inputs, 3 classes (setosa, versicolor, virginica)"


def test_onnx_from_a_path_or_a_file_object_and_integer_classes_named_by_their_labels(tmp_path, iris):
    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, np.searchsorted(SPECIES, y) + 10)
    data = onnx_bytes(model, X, zipmap=False)
    (tmp_path / "m.onnx").write_bytes(data)
    predictor = load_predictor(tmp_path / "m.onnx")
    assert predictor.class_names == ["10", "11", "12"] and predictor.size_bytes == len(data)
    assert load_predictor(io.BytesIO(data)).class_names == ["10", "11", "12"]
    with pytest.raises(ModelError, match=r"the limit is 0\.0001 MB"):
        load_predictor(io.BytesIO(data), max_mb=0.0001)


def test_onnx_with_a_double_input_gets_float64_rows(iris, logistic):
    X, _ = iris
    data = to_onnx(logistic, X[:1].astype(np.float64), options={id(logistic): {"zipmap": False}}).SerializeToString()
    predictor = load_predictor(data)
    X64 = X.astype(np.float64) + 1e-9  # not representable in float32: must reach the model as it is
    np.testing.assert_allclose(predictor(X64), logistic.predict_proba(X64), atol=1e-9)


def test_onnx_model_that_refuses_made_up_rows_loads_and_is_checked_on_real_rows():
    """A model may fail on values it never saw (here a lookup of a category code); the loader then takes the
    classes from the graph, and check() on the user's rows verifies the probabilities."""
    from onnx import TensorProto, helper, numpy_helper

    table = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "ten"], ["x10"]),
         helper.make_node("Cast", ["x10"], ["code"], to=TensorProto.INT64),
         helper.make_node("Squeeze", ["code", "axis"], ["index"]),
         helper.make_node("Gather", ["table", "index"], ["scores"], axis=0),
         helper.make_node("Softmax", ["scores"], ["p"], axis=1)], "lookup",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1], np.int64), "axis"),
         numpy_helper.from_array(np.array(10.0, np.float32), "ten")])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()
    predictor = load_predictor(data)
    assert predictor.n_classes == 3
    rows = np.array([[0.0], [0.1], [0.1]])  # codes 0, 1, 1; made-up rows give codes far outside the table
    expected = np.exp(table[[0, 1, 1]]) / np.exp(table[[0, 1, 1]]).sum(1, keepdims=True)
    np.testing.assert_allclose(predictor.check(rows), expected, atol=1e-6)
    with pytest.raises(ModelError, match="failed on the first rows"):
        predictor.check(np.array([[7.0]]))


def test_onnx_single_probability_output_from_a_softmax_graph(iris):
    """A model with one output, a softmax tensor (as Keras/MLP exports make), without ai.onnx.ml nodes."""
    from onnx import TensorProto, helper, numpy_helper

    X, _ = iris
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z0"]), helper.make_node("Add", ["z0", "b"], ["z"]),
         helper.make_node("Softmax", ["z"], ["probs"], axis=1)],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    predictor = load_predictor(model.SerializeToString())
    z = X.astype(np.float64) @ w + b
    expected = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(predictor(X), expected / expected.sum(1, keepdims=True), atol=1e-5)
    assert predictor.class_names == ["0", "1", "2"]


def _single_output_graph(op: str, units: int):
    from onnx import TensorProto, helper, numpy_helper

    w = np.linspace(-1, 1, 4 * units, dtype=np.float32).reshape(4, units)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["z"])]
    if op:
        nodes.append(helper.make_node(op, ["z"], ["out"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("out" if op else "z", TensorProto.FLOAT, [None, units])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


def test_onnx_single_sigmoid_column_becomes_two_classes(iris):
    X, _ = iris
    predictor = load_predictor(_single_output_graph("Sigmoid", 1))
    proba = predictor(X)
    p = 1 / (1 + np.exp(-(X.astype(np.float64) @ np.linspace(-1, 1, 4).reshape(4, 1))))
    np.testing.assert_allclose(proba, np.hstack([1 - p, p]), atol=1e-5)
    assert predictor.n_classes == 2


def test_onnx_logits_are_refused_as_not_probabilities():
    with pytest.raises(ModelError, match="not class probabilities.*logits.*softmax"):
        load_predictor(_single_output_graph("", 3))


def test_onnx_regressor_is_refused_saying_there_is_no_probability(iris):
    X, _ = iris
    regressor = LinearRegression().fit(X, np.arange(len(X), dtype=float))
    with pytest.raises(ModelError, match="not class probabilities|none of the ONNX model's outputs"):
        load_predictor(to_onnx(regressor, X[:1]).SerializeToString())


def test_onnx_with_one_input_per_column_is_refused_with_how_to_export(logistic):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Concat", ["a", "b"], ["x"], axis=1),
                               helper.make_node("Softmax", ["x"], ["p"], axis=1)], "g",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1]) for n in "ab"],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 2])])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()
    with pytest.raises(ModelError, match="2 inputs.*single input"):
        load_predictor(data)


def test_onnx_weights_in_external_files_are_never_read(tmp_path, monkeypatch):
    """An ONNX file may name a file holding its weights; loaded from bytes, onnxruntime would read it from the
    working directory, so a visitor could make the model read server files. Refused, whatever the path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(bytes(range(48)))
    data = onnx_with_external_weights("secret.bin")
    with pytest.raises(ModelError, match="external data"):
        load_predictor(data)
    from engine.predictors.onnx_model import _session

    with pytest.raises(ModelError, match="cannot load"):  # the second line of defence, on its own
        _session(data)


def test_truncated_and_garbage_files_are_refused(iris, logistic):
    X, _ = iris
    data = onnx_bytes(logistic, X)
    with pytest.raises(ModelError, match="truncated|cannot load"):
        load_predictor(data[: len(data) // 2], kind="onnx")
    with pytest.raises(ModelError, match="not a model Lantern reads"):
        load_predictor(b"\x00garbage" * 100)
    with pytest.raises(ModelError, match="empty"):
        load_predictor(b"")
    with pytest.raises(ModelError, match="extension"):
        load_predictor("model.pkl")
    with pytest.raises(ModelError, match="kind must be one of"):
        load_predictor(data, kind="pickle")


# ------------------------------------------------------------------------------------------- Keras
def test_keras_model_gives_the_same_probabilities_and_is_white_box(keras_file, iris):
    X, _ = iris
    path, model = keras_file
    for source in (path, path.read_bytes(), str(path)):
        predictor = load_predictor(source, trusted=True)
        np.testing.assert_allclose(predictor(X), model.predict(X, verbose=0), atol=1e-5)
    assert predictor.kind == "keras" and predictor.white_box and predictor.keras_model is not None
    np.testing.assert_allclose(predictor.keras_model(X).numpy(), model.predict(X, verbose=0), atol=1e-5)
    assert predictor.describe() == "Keras classifier, white-box, 4 inputs, 3 classes (0, 1, 2)"


def test_keras_single_sigmoid_unit_becomes_two_classes(tmp_path, iris):
    X, _ = iris
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    predictor = load_predictor(_saved(tmp_path, model, "s.keras"), trusted=True)
    p = model.predict(X, verbose=0)
    np.testing.assert_allclose(predictor(X), np.hstack([1 - p, p]), atol=1e-5)
    assert predictor.n_classes == 2 and predictor.keras_model.outputs[0].shape[1] == 2


def test_keras_model_without_probability_output_is_refused(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ModelError, match="not class probabilities.*softmax"):
        load_predictor(_saved(tmp_path, model, "linear.keras"), trusted=True)


def test_keras_lambda_layer_is_refused_before_keras_loads_it(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2),
                              keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ModelError, match="Lambda"):
        load_predictor(_saved(tmp_path, model, "lambda.keras"), trusted=True)


def test_keras_custom_object_is_refused_listing_it(tmp_path, keras_file):
    path, _ = keras_file
    members = zip_members(path)
    members["config.json"] = members["config.json"].replace(b'"module": "keras.layers", "class_name": "Dense"',
                                                            b'"module": "evil.layers", "class_name": "Dense"', 1)
    with pytest.raises(ModelError, match="evil.layers.Dense"):
        load_predictor(zipped(members), trusted=True)


def test_keras_weights_read_from_another_file_are_refused(tmp_path, keras_file):
    """HDF5 can keep a dataset's bytes in any file of the server; Keras refuses such weights, and so does Lantern."""
    import h5py

    members = zip_members(keras_file[0])
    (tmp_path / "secret.bin").write_bytes(np.arange(32, dtype=np.float32).tobytes())
    weights = io.BytesIO()
    with h5py.File(weights, "w") as h5:
        for name, shape in (("dense", (4, 8)), ("dense_1", (8, 3))):
            group = h5.create_group(f"layers/{name}/vars")
            group.create_dataset("0", shape=shape, dtype="<f4",
                                 external=[(str(tmp_path / "secret.bin"), 0, 4 * shape[0] * shape[1])])
            group.create_dataset("1", data=np.zeros(shape[1], np.float32))
        h5.create_group("vars")
    members["model.weights.h5"] = weights.getvalue()
    with pytest.raises(ModelError, match="safe mode.*external"):
        load_predictor(zipped(members), trusted=True)


def test_keras_and_skops_need_trusted_mode(keras_file, logistic, monkeypatch):
    path, _ = keras_file
    monkeypatch.delenv("LANTERN_TRUSTED", raising=False)
    with pytest.raises(ModelError, match="trusted mode.*ONNX"):
        load_predictor(path)
    with pytest.raises(ModelError, match="trusted mode"):
        load_predictor(sio.dumps(logistic))
    with pytest.raises(ModelError, match="trusted mode"):
        load_predictor(path, trusted=False)
    monkeypatch.setenv("LANTERN_TRUSTED", "1")
    assert load_predictor(path).kind == "keras"
    with pytest.raises(ModelError, match="trusted mode"):
        load_predictor(path, trusted=False)


def test_zip_bomb_named_keras_is_refused(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", b"{}")
        zf.writestr("metadata.json", b"{}")
        zf.writestr("model.weights.h5", b"\0" * (64 * 2**20))
    (tmp_path / "bomb.keras").write_bytes(out.getvalue())
    with pytest.raises(ModelError, match="zip bomb"):
        load_predictor(tmp_path / "bomb.keras", trusted=True)


# ------------------------------------------------------------------------------------------- scikit-learn
def test_skops_model_gives_predict_proba_with_its_classes(iris, logistic):
    X, _ = iris
    predictor = load_predictor(sio.dumps(logistic), trusted=True)
    np.testing.assert_allclose(predictor(X), logistic.predict_proba(X), atol=1e-12)
    assert predictor.kind == "sklearn" and predictor.class_names == list(SPECIES) and not predictor.white_box
    assert predictor.describe() == "scikit-learn classifier, 4 inputs, 3 classes (setosa, versicolor, virginica)"


def test_skops_forest_is_refused_since_skops_does_not_trust_tree_objects_by_default(forest):
    """skops 0.16 leaves ``sklearn.tree._tree.Tree`` out of its default trusted types; Lantern adds none."""
    with pytest.raises(ModelError, match=r"not trusted by default: sklearn\.tree\._tree\.Tree.*ONNX"):
        load_predictor(sio.dumps(forest), trusted=True)


def test_skops_keeps_feature_names_of_a_frame(iris):
    import pandas as pd

    X, y = iris
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    predictor = load_predictor(sio.dumps(LogisticRegression(max_iter=500).fit(frame, y)), trusted=True)
    assert predictor.feature_names == ["sl", "sw", "pl", "pw"]
    with pytest.raises(ModelError, match=r"4 inputs \(sl, sw, pl, pw\) but 3 columns"):
        predictor.check(X[:, :3])


def test_skops_with_an_untrusted_type_is_refused_listing_it(iris):
    X, y = iris
    model = make_pipeline(FunctionTransformer(_double), LogisticRegression(max_iter=500)).fit(X, y)
    with pytest.raises(ModelError, match=r"not trusted by default: .*_double"):
        load_predictor(sio.dumps(model), trusted=True)


def test_skops_without_predict_proba_is_refused(iris):
    X, _ = iris
    with pytest.raises(ModelError, match="no predict_proba"):
        load_predictor(sio.dumps(LinearRegression().fit(X, X[:, 0])), trusted=True)


# ------------------------------------------------------------------------------------------- limits and checks
def test_files_over_the_size_limit_are_refused_before_parsing(tmp_path, monkeypatch):
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:
        f.truncate(3 * 2**20)  # sparse, and not a model at all: the size alone refuses it
    with pytest.raises(ModelError, match=r"3\.0 MB; the limit is 2 MB"):
        load_predictor(big, max_mb=2)
    monkeypatch.setenv("LANTERN_MAX_MODEL_MB", "1")
    with pytest.raises(ModelError, match="the limit is 1 MB"):
        load_predictor(b"\x08" * (2 * 2**20))


def test_check_refuses_a_width_mismatch_and_non_probabilities(iris, logistic):
    X, _ = iris
    predictor = load_predictor(onnx_bytes(logistic, X, zipmap=False))
    assert predictor.check(X).shape == (32, 3)
    with pytest.raises(ModelError, match="takes 4 inputs but 5 columns are chosen"):
        check_predictor(predictor, np.hstack([X, X[:, :1]]))
    with pytest.raises(ModelError, match="rows of 4 values"):
        predictor(X[:, :3])
    nan_model = Predictor("onnx", lambda x: np.full((len(x), 2), np.nan), n_features=4, class_names=["a", "b"],
                          size_bytes=1)
    with pytest.raises(ModelError, match="NaN"):
        nan_model.check(X)
    negative = Predictor("onnx", lambda x: np.tile([1.5, -0.5], (len(x), 1)), n_features=4,
                         class_names=["a", "b"], size_bytes=1)
    with pytest.raises(ModelError, match=r"outside \[0, 1\]"):
        negative.check(X)
    halves = Predictor("onnx", lambda x: np.full((len(x), 2), 0.3), n_features=4, class_names=["a", "b"],
                       size_bytes=1)
    with pytest.raises(ModelError, match="do not sum to 1"):
        halves.check(X)
    assert issubclass(ModelError, LanternError) and issubclass(ModelError, ValueError)


def test_large_inputs_run_in_chunks_with_the_same_answer(iris, logistic):
    X, _ = iris
    predictor = load_predictor(onnx_bytes(logistic, X))
    big = np.tile(X, (60, 1))  # 9,000 rows: two chunks
    np.testing.assert_allclose(predictor(big), np.tile(predictor(X), (60, 1)), atol=1e-7)


def test_predictors_copy_to_another_process_by_reloading_the_file(iris, logistic, keras_file):
    X, _ = iris
    for predictor in (load_predictor(onnx_bytes(logistic, X)), load_predictor(keras_file[0], trusted=True)):
        copy = pickle.loads(pickle.dumps(predictor))
        np.testing.assert_allclose(copy(X), predictor(X))
        assert copy.describe() == predictor.describe()


def test_kind_is_inferred_from_extension_or_content(keras_file, logistic, iris):
    X, _ = iris
    assert kind_of(keras_file[0]) == "keras" and kind_of("m.skops") == "sklearn" and kind_of("M.ONNX") == "onnx"
    assert kind_of(keras_file[0].read_bytes()) == "keras"
    assert kind_of(sio.dumps(logistic)) == "sklearn"
    assert kind_of(onnx_bytes(logistic, X)) == "onnx"


def test_zip_ratio_limit_is_the_one_of_lantern_archives():
    from engine.predictors.base import MAX_COMPRESSION_RATIO
    from engine.saving import MAX_COMPRESSION_RATIO as ARCHIVE_RATIO

    assert MAX_COMPRESSION_RATIO == ARCHIVE_RATIO


def test_zip_checks_load_without_keras():
    # ONNX models are checked and loaded without Keras and TensorFlow being imported.
    code = ("import sys, engine.predictors.base, engine.archive_checks; "
            "sys.exit(int('keras' in sys.modules or 'tensorflow' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


# ------------------------------------------------------------------------------------------- explainers on own models
def test_anchors_and_black_box_cem_run_on_an_onnx_model(iris, logistic):
    from engine.explainers import CEM, AnchorTabular

    X, _ = iris
    predictor = load_predictor(onnx_bytes(logistic, X))
    explainer = AnchorTabular(predictor, ["sl", "sw", "pl", "pw"], seed=0).fit(X)
    exp = explainer.explain(X[60], threshold=0.9)
    assert exp.raw["success"] and exp.precision >= 0.9
    cem = CEM(predictor, mode="PN", shape=(1, 4), feature_range=(X.min(0), X.max(0)), kappa=0.1, c_steps=2,
              max_iterations=100).fit(X)
    exp = cem.explain(X[60])
    assert not cem.is_white_box
    assert exp.found[0] and exp.PN_pred != exp.X_pred
    assert logistic.predict(exp.PN)[0] == SPECIES[exp.PN_pred]


def test_white_box_cem_runs_on_the_keras_model_of_a_loaded_file(keras_file, iris):
    from engine.explainers import CEM

    X, _ = iris
    predictor = load_predictor(keras_file[0], trusted=True)
    cem = CEM(predictor.keras_model, mode="PN", shape=(1, 4), feature_range=(X.min(0), X.max(0)), kappa=0.0,
              c_steps=2, max_iterations=100).fit(X)
    exp = cem.explain(X[60])
    assert cem.is_white_box
    assert exp.found[0] and exp.PN_pred != exp.X_pred
    assert predictor(exp.PN).argmax(1)[0] == exp.PN_pred  # the file's model agrees with the explanation
