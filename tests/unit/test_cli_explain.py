"""`lantern explain anchors|cem` in the process: one JSON line per input row, in input order, each the
explanation the explainer gives for that row alone; bad inputs exit with status 2 and one line.

The model file is read by engine.predictors.load_predictor; here a scikit-learn classifier stands in for it
(engine.cli.explain.load_model is replaced), so these tests do not depend on any model file format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine.cli import main

FEATURES = ["f0", "f1", "f2", "f3"]


class SklearnPredictor:
    """What load_predictor returns, built from a fitted scikit-learn classifier."""

    kind = "sklearn"
    white_box = False
    keras_model = None

    def __init__(self, model, feature_names=None):
        self.model = model
        self.n_features = model.n_features_in_
        self.n_classes = len(model.classes_)
        self.class_names = [str(c) for c in model.classes_]
        self.feature_names = feature_names

    def __call__(self, X):
        return self.model.predict_proba(np.asarray(X, dtype=np.float64))


@pytest.fixture(scope="module")
def data():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    frame = pd.DataFrame(X, columns=FEATURES)
    return frame, LogisticRegression(max_iter=500).fit(X, y)


@pytest.fixture
def files(data, tmp_path, monkeypatch):
    frame, model = data
    frame.iloc[:300].to_csv(tmp_path / "train.csv", index=False)
    rows = frame.iloc[300:306].reset_index(drop=True).assign(id=[f"q{i}" for i in range(6)])
    rows.loc[2, "f1"] = np.nan
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    (tmp_path / "model.skops").write_bytes(b"stand-in")
    monkeypatch.setattr("engine.cli.explain.load_model", lambda source, kind=None: SklearnPredictor(model))
    return tmp_path


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_anchors_writes_one_line_per_row_in_order_equal_to_explaining_each_row_alone(data, files, capsys):
    from engine.explainers import AnchorTabular

    code = main(["explain", "anchors", "--model", str(files / "model.skops"), "--train", str(files / "train.csv"),
                 "--input", str(files / "rows.parquet"), "--output", str(files / "anchors.jsonl"),
                 "--batch-size", "4", "--columns", ",".join(FEATURES)])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = _lines(files / "anchors.jsonl")
    assert [line["row"] for line in lines] == list(range(6))
    assert lines[2] == {"row": 2, "error": "missing or infinite value in 'f1'"}
    frame, model = data
    explainer = AnchorTabular(SklearnPredictor(model), FEATURES, seed=0).fit(
        frame.iloc[:300][FEATURES].to_numpy(np.float32))
    for i in (0, 5):  # explained alone, in a fresh order: the same anchor, precision and coverage
        alone = json.loads(explainer.explain(frame.iloc[300 + i][FEATURES].to_numpy(np.float32)).to_json())
        assert lines[i]["explanation"]["data"]["anchor"] == alone["data"]["anchor"]
        assert lines[i]["explanation"] == alone
    assert "6 rows, 5 explained, 1 errors" in out


def test_cem_explains_every_row_with_the_training_rows_feature_range(files, capsys):
    code = main(["explain", "cem", "--model", str(files / "model.skops"), "--train", str(files / "train.csv"),
                 "--input", str(files / "rows.parquet"), "--output", str(files / "cem.jsonl"), "--mode", "PN",
                 "--columns", ",".join(FEATURES)])
    _, err = capsys.readouterr()
    assert code == 0, err
    lines = _lines(files / "cem.jsonl")
    assert [line["row"] for line in lines] == list(range(6)) and "error" in lines[2]
    assert all(line["explanation"]["meta"]["name"] == "CEM" for i, line in enumerate(lines) if i != 2)


def test_the_models_width_is_checked_against_the_chosen_columns(files, capsys):
    code = main(["explain", "anchors", "--model", str(files / "model.skops"), "--train", str(files / "train.csv"),
                 "--input", str(files / "rows.parquet"), "--output", str(files / "a.jsonl")])
    _, err = capsys.readouterr()  # without --columns: every numeric column of the training file, here 4 = ok
    assert code == 0, err
    code = main(["explain", "anchors", "--model", str(files / "model.skops"), "--train", str(files / "train.csv"),
                 "--input", str(files / "rows.parquet"), "--output", str(files / "a.jsonl"), "--columns", "f0,f1"])
    _, err = capsys.readouterr()
    assert code == 2 and "the model takes 4 features but 2 columns" in err


@pytest.mark.parametrize("change, message", [
    ({"--output": "out.csv"}, "name the file .jsonl"),
    ({"--model": "missing.onnx"}, "missing.onnx: no such file"),
    ({"--train": "missing.csv"}, "missing.csv: no such file"),
])
def test_bad_arguments_exit_2_with_one_line(files, capsys, change, message):
    args = {"--model": "model.skops", "--train": "train.csv", "--input": "rows.parquet", "--output": "o.jsonl"}
    args.update(change)
    argv = ["explain", "anchors"] + [x for k, v in args.items() for x in (k, str(files / v))]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_real_onnx_model_file_is_explained_and_a_file_that_is_no_model_is_refused(data, tmp_path, capsys):
    from skl2onnx import to_onnx

    frame, model = data
    X = frame[FEATURES].to_numpy(np.float32)
    (tmp_path / "model.onnx").write_bytes(
        to_onnx(model, X[:1], options={id(model): {"zipmap": False}}).SerializeToString())
    frame.iloc[:200].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[200:203].to_csv(tmp_path / "rows.csv", index=False)
    common = ["explain", "anchors", "--train", str(tmp_path / "train.csv"), "--input", str(tmp_path / "rows.csv"),
              "--output", str(tmp_path / "a.jsonl")]
    assert main([*common, "--model", str(tmp_path / "model.onnx")]) == 0, capsys.readouterr().err
    lines = _lines(tmp_path / "a.jsonl")
    assert [line["row"] for line in lines] == [0, 1, 2] and all("explanation" in line for line in lines)
    (tmp_path / "junk.onnx").write_bytes(b"\x08not a model at all")
    capsys.readouterr()
    assert main([*common, "--model", str(tmp_path / "junk.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lantern: error: model {tmp_path / 'junk.onnx'}: ")
