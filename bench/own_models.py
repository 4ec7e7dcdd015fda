"""Own models (engine.predictors): what loading a model file costs the explainers, against the model itself.

Three measurements, each of the same model native and through ``engine.predictors.load_predictor``:

* **per-call overhead**: milliseconds per call at batch 1, 100 and 10,000 rows (median of repeated calls after
  two warm-up calls) for
  - the Adult random forest of ``bench/anchors.py`` (one-hot + scaling + 50 trees): native ``predict_proba`` vs
    ONNX with a probability tensor and with a ZipMap output;
  - the same preprocessing with a logistic regression: native vs skops (``.skops``) vs ONNX;
  - the iris softmax regression of ``bench/cem.py`` (Keras): ``model.predict``, ``model(x)`` vs the ``.keras``
    predictor and an ONNX graph of the same weights;
* **anchors on Adult** (``bench/anchors.py``'s protocol and ``run_case``: threshold 0.95, ``'rows'`` sampling,
  fixed test rows, cold cache per row): the random forest native vs as ONNX;
* **CEM on iris** (``bench/cem.py``'s iris setup and ``run_case``, ``c_steps=5, max_iterations=1000``): white box
  (the ``.keras`` file's ``keras_model``, autodiff gradients) vs black box (the ONNX graph of the same weights,
  numerical gradients).

How the ONNX files are made: skl2onnx converts the Adult pipeline's preprocessing with a float64 input, a
``Cast`` to float32 follows, then the forest converted on its own (``onnx.compose.merge_models``). This mirrors
scikit-learn, which scales in float64 and casts to float32 before the trees; converting the whole pipeline in
float32 (or in float64) instead changes 14 % (11 %) of the Adult test rows' probabilities (up to 0.54), because
scaled values within 1e-7 of a split threshold fall on the other side. tf2onnx is not installed (and does not
support Keras 3 / TensorFlow 2.21), so the iris Keras model's ONNX twin is written with ``onnx.helper``
(MatMul + Add + Softmax of the same weights).

Run::

    .venv/bin/python bench/own_models.py            # about 2-4 min on a loaded 2-core machine
    .venv/bin/python bench/own_models.py --rows 5   # fewer anchor rows

Results: markdown tables on stdout and ``bench/results/own_models.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from _common import results_path  # first: sets up the environment and sys.path

import numpy as np  # noqa: E402

import anchors as anchor_bench  # noqa: E402
import cem as cem_bench  # noqa: E402
from engine.predictors import load_predictor  # noqa: E402
from machine_info import cpu_model, load_average  # noqa: E402

RESULTS = results_path("own_models")
BATCHES = (1, 100, 10_000)
OPSETS = {"": 17, "ai.onnx.ml": 3}


# -- making the model files ------------------------------------------------------------------------------
def forest_onnx(pipeline, X_train: np.ndarray, zipmap: bool) -> bytes:
    """The Adult pipeline as ONNX: preprocessing in float64, a cast to float32, then the forest (as scikit-learn)."""
    from onnx import TensorProto, compose, helper
    from skl2onnx import to_onnx

    pre, forest = pipeline.named_steps["pre"], pipeline.named_steps["rf"]
    pre_onnx = to_onnx(pre, X_train[:1].astype(np.float64), target_opset=OPSETS)
    z = pre.transform(X_train[:1])
    z = z.toarray() if hasattr(z, "toarray") else z
    options = None if zipmap else {id(forest): {"zipmap": False}}
    forest_model = to_onnx(forest, z.astype(np.float32), options=options, target_opset=OPSETS)
    width = z.shape[1]
    cast = helper.make_model(
        helper.make_graph([helper.make_node("Cast", ["z64"], ["z32"], to=TensorProto.FLOAT)], "cast",
                          [helper.make_tensor_value_info("z64", TensorProto.DOUBLE, [None, width])],
                          [helper.make_tensor_value_info("z32", TensorProto.FLOAT, [None, width])]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=pre_onnx.ir_version)
    pre_cast = compose.merge_models(pre_onnx, cast, io_map=[(pre_onnx.graph.output[0].name, "z64")])
    merged = compose.merge_models(pre_cast, forest_model, io_map=[("z32", forest_model.graph.input[0].name)],
                                  prefix2="rf_")
    return merged.SerializeToString()


def logistic_pipeline(X, y, categorical):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numerical = [j for j in range(X.shape[1]) if j not in categorical]
    pre = ColumnTransformer([("num", StandardScaler(), numerical),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), sorted(categorical))])
    return Pipeline([("pre", pre), ("lr", LogisticRegression(max_iter=1000))]).fit(X, y)


def softmax_regression_onnx(model) -> bytes:
    """An ONNX graph computing the same softmax regression as the one-Dense-layer Keras ``model``."""
    from onnx import TensorProto, helper, numpy_helper

    weights, bias = (w.astype(np.float32) for w in model.layers[-1].get_weights())
    n_in, n_out = weights.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z0"]), helper.make_node("Add", ["z0", "b"], ["z"]),
         helper.make_node("Softmax", ["z"], ["probabilities"], axis=1)],
        "softmax_regression", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n_in])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_out])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


# -- measurements ----------------------------------------------------------------------------------------
def ms_per_call(fn, X: np.ndarray, min_seconds: float = 0.4, max_calls: int = 2000) -> float:
    """Median milliseconds of ``fn(X)`` over repeated calls (at least 5, about ``min_seconds`` in all)."""
    fn(X)
    fn(X)
    times, started = [], time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - started < min_seconds and len(times) < max_calls):
        t0 = time.perf_counter()
        fn(X)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def overhead_rows(name: str, native: dict, predictors: dict, X_pool: np.ndarray) -> list[dict]:
    """Per-call milliseconds of each native way and each predictor at every batch size; the first native way is
    the baseline (``vs_native``) and the reference of ``max_abs_diff`` (probabilities)."""
    rng = np.random.default_rng(0)
    reference = next(iter(native.values()))
    rows = []
    for batch in BATCHES:
        X = X_pool[rng.choice(len(X_pool), size=batch, replace=len(X_pool) < batch)]
        expected = np.asarray(reference(X), dtype=np.float64)
        baseline = None
        for label, fn in {**native, **predictors}.items():
            ms = ms_per_call(fn, X)
            baseline = baseline or ms
            rows.append({"model": name, "way": label, "batch": batch, "ms_per_call": ms, "vs_native": ms / baseline,
                         "max_abs_diff": float(np.abs(np.asarray(fn(X), dtype=np.float64) - expected).max())})
        print(f"  {name} batch {batch}: " + ", ".join(f"{r['way']} {r['ms_per_call']:.3f} ms" for r in rows
                                                     if r["batch"] == batch), flush=True)
    return rows


def measure_overhead(adult: dict, iris: dict) -> list[dict]:
    import skops.io as sio

    X_tr, X_te = adult["X_train"], adult["X_test"]
    forest = adult["forest"]
    rows = overhead_rows("Adult random forest (50 trees)", {"native predict_proba": forest.predict_proba},
                         {"ONNX (probability tensor)": adult["forest_onnx"],
                          "ONNX (ZipMap output)": load_predictor(forest_onnx(forest, X_tr, zipmap=True))}, X_te)
    logistic = logistic_pipeline(X_tr, adult["y_train"], adult["categorical"])
    from skl2onnx import to_onnx

    logistic_onnx = to_onnx(logistic, X_tr[:1].astype(np.float64), options={id(logistic.named_steps["lr"]): {
        "zipmap": False}}, target_opset=OPSETS).SerializeToString()
    rows += overhead_rows("Adult logistic regression", {"native predict_proba": logistic.predict_proba},
                          {"skops (.skops)": load_predictor(sio.dumps(logistic), trusted=True),
                           "ONNX (probability tensor)": load_predictor(logistic_onnx)}, X_te)
    model = iris["model"]
    rows += overhead_rows("iris softmax regression (Keras)",
                          {"model(x) eager": lambda x: model(x, training=False).numpy(),
                           "model.predict": lambda x: model.predict(x, verbose=0)},
                          {"Keras (.keras)": iris["keras_predictor"],
                           "ONNX of the same weights": iris["onnx_predictor"]},
                          np.concatenate([iris["x_train"], iris["x_test"]]))
    return rows


def measure_anchors(adult: dict, n_rows: int, seed: int) -> list[dict]:
    X_tr, X_te, y_te = adult["X_train"], adult["X_test"], adult["y_test"]
    rows = np.sort(np.random.default_rng(12345).choice(len(X_te), size=n_rows, replace=False))
    out = []
    for label, model in (("native scikit-learn", adult["forest"]),
                         ("ONNX", SimpleNamespace(predict_proba=adult["forest_onnx"]))):
        result = anchor_bench.run_case("adult", X_tr, X_te, y_te, model, adult["names"], adult["categorical_names"],
                                       rows, seed, "rows")
        result["way"] = label
        out.append(result)
        print(f"  anchors {label}: {result['cold_seconds_per_explanation']:.3f} s/expl., precision "
              f"{result['precision']:.3f}, held-out {result['heldout_precision']:.3f}, found {result['found']}/"
              f"{result['n_rows']}", flush=True)
    same = sum(a == b for a, b in zip(out[0]["examples"], out[1]["examples"]))
    out[1]["same_first_anchors_as_native"] = f"{same}/{len(out[0]['examples'])}"
    native, onnx = adult["forest"].predict_proba(X_te), adult["forest_onnx"](X_te)
    out[1]["test_label_agreement"] = float((native.argmax(1) == onnx.argmax(1)).mean())
    out[1]["test_rows_with_a_tie"] = int((native[:, 0] == native[:, 1]).sum())
    out[1]["test_max_abs_diff"] = float(np.abs(native - onnx).max())
    print(f"  labels agree on {out[1]['test_label_agreement']:.4%} of the test rows ({out[1]['test_rows_with_a_tie']} "
          f"rows tie at 0.5/0.5), max abs diff {out[1]['test_max_abs_diff']:.1e}", flush=True)
    return out


def measure_cem(iris: dict, n_single: int) -> list[dict]:
    out = []
    for mode in ("PN", "PP"):
        for label, predictor in (("white box: .keras keras_model (autodiff)", iris["keras_predictor"].keras_model),
                                 ("black box: ONNX of the same weights (numerical)", iris["onnx_predictor"])):
            result = cem_bench.run_case("iris", iris, mode, predictor, n_single, extra={"c_steps": 5})
            result["way"] = label
            out.append(result)
            q = result["quality"]
            print(f"  CEM {mode} {label}: one {result['single_s_per_explanation']:.3f} s, batched "
                  f"{result['batched_s_per_explanation']:.4f} s, found {q['found_share']:.2f}, L1 {q['l1_change']}",
                  flush=True)
    return out


# -- report ----------------------------------------------------------------------------------------------
def fmt(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 1e-3 else f"{value:.{digits}f}"


def print_tables(report: dict) -> None:
    print("\n| model | way | batch 1: ms (× native) | batch 100: ms (×) | batch 10,000: ms (×) | max abs diff |")
    print("|---|---|---|---|---|---|")
    rows = report["overhead"]
    keys = list(dict.fromkeys((r["model"], r["way"]) for r in rows))
    for model, way in keys:
        cells, diff = [], []
        for batch in BATCHES:
            r = next(r for r in rows if r["model"] == model and r["way"] == way and r["batch"] == batch)
            cells.append(f"{r['ms_per_call']:.3f} ({r['vs_native']:.2f}×)")
            diff.append(r["max_abs_diff"])
        print(f"| {model} | {way} | {' | '.join(cells)} | {max(diff):.1g} |")
    print("\n| Adult anchors | s/expl. cold (CPU s) | anchor length | precision | coverage | held-out precision "
          "| found | predictor calls / rows per expl. |")
    print("|---|---|---|---|---|---|---|---|")
    for r in report["anchors"]:
        print(f"| {r['way']} | {r['cold_seconds_per_explanation']:.3f} ({r['cold_cpu_seconds_per_explanation']:.3f}) "
              f"| {r['anchor_length']:.2f} | {r['precision']:.3f} | {r['coverage']:.3f} | {r['heldout_precision']:.3f} "
              f"| {r['found']}/{r['n_rows']} | {r['predictor_calls_per_explanation']:.1f} / "
              f"{r['predictor_rows_per_explanation']:.0f} |")
    print("\n| iris CEM | mode | s/expl. one at a time (first call) | s/expl. batched (first call) | found | "
          "L1 / L0 change |")
    print("|---|---|---|---|---|---|")
    for r in report["cem"]:
        q = r["quality"]
        print(f"| {r['way']} | {r['mode']} | {r['single_s_per_explanation']:.3f} ({r['single_first_call_s']:.1f}) | "
              f"{r['batched_s_per_explanation']:.4f} ({r['batched_first_call_s']:.1f}) | {q['found_share']:.2f} | "
              f"{fmt(q['l1_change'])} / {fmt(q['l0_change'], 2)} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10, help="Adult test rows explained by anchors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-single", type=int, default=5, help="iris rows explained one at a time by CEM")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_before, started = load_average(), time.perf_counter()

    print("preparing the models …", flush=True)
    X_tr, y_tr, X_te, y_te, names, categorical_names = anchor_bench.load_adult()
    forest = anchor_bench.adult_model(X_tr, y_tr, categorical_names)
    adult = {"X_train": X_tr, "y_train": y_tr, "X_test": X_te, "y_test": y_te, "names": names,
             "categorical_names": categorical_names, "categorical": categorical_names, "forest": forest,
             "forest_onnx": load_predictor(forest_onnx(forest, X_tr, zipmap=False))}
    iris = cem_bench.iris_setup(args.seed, epochs=500)
    with tempfile.TemporaryDirectory() as tmp:
        iris["model"].save(Path(tmp) / "iris.keras")
        iris["keras_predictor"] = load_predictor(Path(tmp) / "iris.keras", trusted=True)
        iris["onnx_predictor"] = load_predictor(softmax_regression_onnx(iris["model"]))
        print("per-call overhead …", flush=True)
        overhead = measure_overhead(adult, iris)
    print("anchors on Adult …", flush=True)
    anchors = measure_anchors(adult, args.rows, args.seed)
    print("CEM on iris …", flush=True)
    cem = measure_cem(iris, args.n_single)

    report = {
        "command": "bench/own_models.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpu": cpu_model(), "cores": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": load_average(), "total_seconds": time.perf_counter() - started,
        "adult_forest_onnx_size_bytes": adult["forest_onnx"].size_bytes,
        "overhead": overhead, "anchors": anchors, "cem": cem,
    }
    print(f"\n{report['cpu']} × {report['cores']} cores; load average before {load_before}, after "
          f"{report['load_average_after']}; {report['total_seconds']:.0f} s in all")
    print_tables(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
