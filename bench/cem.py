"""Benchmark of engine.explainers.CEM: speed and quality against the reference (alibi's CEM).

Protocol (docs/BENCHMARKS.md, section "CEM"):

- iris (the protocol of the reference's iris CEM example): the bundled iris standardised with the mean and std of
  the whole data set, as there; softmax regression (one Dense layer, softmax) trained with plain SGD (learning
  rate 0.01), batch size 16, 500 epochs, cross-entropy, as there (with the engine's loop); CEM with ``kappa=0.2,
  beta=0.1, c_init=10, c_steps=10, max_iterations=1000, learning_rate_init=0.01, clip=(-1000, 1000)``,
  ``no_info_val`` = training medians (``fit``), ``feature_range`` = training min - 0.1 / max + 0.1, as there.
  One deviation: the example trains on rows 0-144 and explains one of the 4 rows after them; found rates need more
  rows, so this uses a random 100/50 train/test split (``--seed``) and explains every test row as a PN and as a PP.
  The speed comparison with the reference's 5.4 s per explanation also runs the setting the reference was timed
  with (``c_steps=5``, 1,000 iterations). Extra iris rows: the engine's default gradient clip (+-100) with
  ``feature_range`` = training min / max, where one gradient step cannot carry a feature across the
  no-information value; and, for PNs, the engine with the reference's rule for a PN feature that lands closer to
  the no-information value than the original (reset to the original value; emulated by swapping the engine's
  projection, see ``reference_gap_rule``) as a stand-in for the reference's PN sizes, which cannot be run here.
- digits (the image setup): the bundled 8x8 digits scaled to [0, 1], a random 1,400 / 397 split; a small CNN
  (Conv 8 -> pool -> Conv 16 -> pool -> Dense 10) and a dense autoencoder (64 -> 32 -> 64); CEM with
  ``kappa=0, beta=0.1, gamma=100, c_init=1, c_steps=5, max_iterations=500``, ``feature_range=(0, 1)``,
  ``no_info_val=0`` (the background) — the reference's 6.2 s per explanation was timed with c_steps 5 and
  500 iterations with an autoencoder.

Reported per setup and mode: seconds per explanation (wall clock, and CPU time of this process, which is less
sensitive to other jobs on a shared machine) one at a time (the mean over ``--n-single`` rows after a
first call that compiles; the first call is reported separately) and batched (all test rows in one call,
after a warm-up call of the same shape, plus the first call with compilation), the share of rows with a PN / PP
found, mean L1 and L0 of the change (explanation - X) over found rows, for PPs also of the evidence kept
(PP - no_info_val), PN_pred != X_pred and PP_pred == X_pred, and how closely batched results match one-at-a-time
results. Extra rows: the early stop (``early_stop=100``) and a black-box predictor (numerical gradients).

Run: ``.venv/bin/python bench/cem.py [--quick] [--seed 0] [--n-single 10]``; writes bench/results/cem.json
and prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from _common import results_path  # first: sets up the environment and sys.path

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from engine.autoencoders import build_autoencoder, train_autoencoder  # noqa: E402
from engine.datasets import load_dataset  # noqa: E402
from engine.explainers import CEM  # noqa: E402
from engine.explainers import cem as cem_module  # noqa: E402
from engine.training import train  # noqa: E402
from machine_info import cpu_model, load_average  # noqa: E402

RESULTS = results_path("cem")
REFERENCE_SECONDS = {"iris": 5.4, "digits": 6.2}


def glorot(seed: int):
    return keras.initializers.GlorotUniform(seed=seed)


@contextlib.contextmanager
def reference_gap_rule():
    """Emulate the reference's PN rule inside the engine: a feature that ends closer to the no-information value
    than the original (``|z - n| < |x0 - n|``) is reset to its original value, at once (no lazy state).

    Everything else (objective, steps, c search, choice of the best solution) stays the engine's. Only for CEM
    objects created and first called inside the ``with`` block (the compiled loop captures the projection).
    """
    engine_project = cem_module._project

    def project(v, feasible, xp, lazy=False):
        clip = np.clip if xp is np else tf.clip_by_value
        v = clip(v, feasible["lo"], feasible["hi"])
        in_gap = (v > feasible["gap_lo"]) & (v < feasible["gap_hi"])
        return xp.where(in_gap, feasible["home"], v)

    cem_module._project = project
    try:
        yield
    finally:
        cem_module._project = engine_project


def iris_setup(seed: int, epochs: int) -> dict:
    frame = load_dataset("iris")
    X = frame.drop(columns="species").to_numpy(np.float32)
    y = frame["species"].astype("category").cat.codes.to_numpy(np.int64)
    X = (X - X.mean(0)) / X.std(0)  # the reference's example standardises with the whole data set
    order = np.random.default_rng(seed).permutation(len(X))
    tr, te = order[:100], order[100:]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax",
                                                                     kernel_initializer=glorot(seed))])
    train(model, keras.losses.sparse_categorical_crossentropy, X[tr], y[tr], epochs=epochs, batch_size=16,
          seed=seed, optimizer=keras.optimizers.SGD(0.01))
    proba = model.predict(X[te], verbose=0)
    accuracy = float((proba.argmax(1) == y[te]).mean())
    weights, bias = (w.astype(np.float64) for w in model.layers[0].get_weights())

    def black_box(x):
        logits = np.asarray(x, np.float64) @ weights + bias
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    settings = dict(shape=(1, 4), kappa=0.2, beta=0.1, feature_range=(X[tr].min(0) - 0.1, X[tr].max(0) + 0.1),
                    c_init=10.0, c_steps=10, max_iterations=1000, learning_rate_init=0.01, clip=(-1000.0, 1000.0))
    engine_defaults = dict(feature_range=(X[tr].min(0), X[tr].max(0)), clip=(-100.0, 100.0))
    return {"model": model, "black_box": black_box, "x_train": X[tr], "x_test": X[te], "accuracy": accuracy,
            "test_max_proba_quantiles": {q: float(v) for q, v in zip(
                ("min", "q10", "median", "q90", "max"), np.quantile(proba.max(1), [0, 0.1, 0.5, 0.9, 1]))},
            "settings": settings, "engine_defaults": engine_defaults,
            "classifier": f"softmax regression (Dense 4 -> 3, softmax), SGD lr 0.01, batch 16, {epochs} epochs"}


def digits_setup(seed: int, epochs: int) -> dict:
    frame = load_dataset("digits")
    X = (frame.drop(columns="label").to_numpy(np.float32) / 16.0).reshape(-1, 8, 8, 1)
    y = frame["label"].to_numpy(np.int64)
    order = np.random.default_rng(seed).permutation(len(X))
    tr, te = order[:1400], order[1400:]
    cnn = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", kernel_initializer=glorot(seed)),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", kernel_initializer=glorot(seed + 1)),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax", kernel_initializer=glorot(seed + 2)),
    ])
    train(cnn, keras.losses.sparse_categorical_crossentropy, X[tr], y[tr], epochs=epochs, batch_size=32, seed=seed)
    accuracy = float((cnn.predict(X[te], verbose=0).argmax(1) == y[te]).mean())
    ae = build_autoencoder(64, latent=32, output_activation="sigmoid", input_shape=(8, 8, 1), seed=seed + 3)
    train_autoencoder(ae, X[tr], epochs=2 * epochs, batch_size=32, seed=seed)
    ae_mse = float(np.mean((ae.predict(X[te], verbose=0) - X[te]) ** 2))
    settings = dict(shape=(1, 8, 8, 1), kappa=0.0, beta=0.1, gamma=100.0, ae_model=ae, feature_range=(0.0, 1.0),
                    c_init=1.0, c_steps=5, max_iterations=500, no_info_val=0.0)
    return {"model": cnn, "x_train": X[tr], "x_test": X[te], "accuracy": accuracy, "ae_mse": ae_mse,
            "settings": settings, "classifier": "CNN conv8-pool-conv16-pool-dense10; AE dense 64-32-64"}


def quality(exp, mode: str) -> dict:
    found = exp.found
    n = len(found)
    axes = tuple(range(1, exp.delta.ndim))
    delta = exp.delta[found]
    pred = np.atleast_1d(np.asarray(exp.data[f"{mode}_pred"] if n > 1 else [exp.data[f"{mode}_pred"]]))
    x_pred = np.atleast_1d(exp.X_pred)
    out = {
        "n": int(n),
        "found_share": float(found.mean()),
        "l1_change": float(np.abs(delta).sum(axes).mean()) if found.any() else None,
        "l0_change": float((np.abs(delta) > 1e-6).sum(axes).mean()) if found.any() else None,
    }
    if mode == "PN":
        out["pn_pred_differs_share"] = float((pred[found] != x_pred[found]).mean()) if found.any() else None
    else:
        out["pp_pred_same_share"] = float((pred[found] == x_pred[found]).mean()) if found.any() else None
        kept = (exp.PP[found] - exp.no_info_val)
        out["l1_evidence_kept"] = float(np.abs(kept).sum(axes).mean()) if found.any() else None
        out["l0_evidence_kept"] = float((np.abs(kept) > 1e-6).sum(axes).mean()) if found.any() else None
        out["l1_evidence_of_x"] = float(np.abs(exp.X[found] - exp.no_info_val).sum(axes).mean())
    return out


def run_case(name: str, setup: dict, mode: str, predictor, n_single: int, extra: dict | None = None,
             batched_only: bool = False, gap_rule: str = "engine") -> dict:
    with reference_gap_rule() if gap_rule == "reference" else contextlib.nullcontext():
        return _run_case(name, setup, mode, predictor, n_single, extra, batched_only, gap_rule)


def _run_case(name, setup, mode, predictor, n_single, extra, batched_only, gap_rule) -> dict:
    settings = {**setup["settings"], **(extra or {})}
    cem = CEM(predictor, mode=mode, **settings)
    if settings.get("no_info_val") is None:
        cem.fit(setup["x_train"])
    x = setup["x_test"]
    result = {"case": name, "mode": mode, "c_steps": settings["c_steps"],
              "max_iterations": settings["max_iterations"], "early_stop": settings.get("early_stop"),
              "gradients": "autodiff" if cem.is_white_box else "numerical", "clip": list(settings.get("clip", cem.clip)),
              "gap_rule": gap_rule}
    t0 = time.perf_counter()
    cem.explain(x)
    result["batched_first_call_s"] = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    batched = cem.explain(x)
    result["batched_s_per_explanation"] = (time.perf_counter() - t0) / len(x)
    result["batched_cpu_s_per_explanation"] = (time.process_time() - c0) / len(x)
    result["quality"] = quality(batched, mode)
    result["found_rows"] = np.flatnonzero(batched.found).tolist()
    l1_rows = np.abs(np.nan_to_num(batched.delta)).reshape(len(x), -1).sum(1)
    result["l1_change_per_row"] = [float(v) if f else None for v, f in zip(l1_rows, batched.found)]
    if batched_only:
        return result
    t0 = time.perf_counter()
    first = cem.explain(x[:1])
    result["single_first_call_s"] = time.perf_counter() - t0
    singles = [first]
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(1, n_single + 1):
        singles.append(cem.explain(x[i:i + 1]))
    result["single_s_per_explanation"] = (time.perf_counter() - t0) / n_single
    result["single_cpu_s_per_explanation"] = (time.process_time() - c0) / n_single
    # batched vs one at a time on the same rows
    same_found = np.array([s.found[0] == batched.found[i] for i, s in enumerate(singles)])
    both = np.array([s.found[0] and batched.found[i] for i, s in enumerate(singles)])
    diffs = [float(np.nanmax(np.abs(s.delta[0] - batched.delta[i]))) for i, s in enumerate(singles) if both[i]]
    l1_single = [float(np.abs(s.delta[0]).sum()) for i, s in enumerate(singles) if both[i]]
    l1_batch = [float(np.abs(batched.delta[i]).sum()) for i, s in enumerate(singles) if both[i]]
    result["batched_vs_single"] = {
        "rows": len(singles),
        "same_found_share": float(same_found.mean()),
        "max_abs_diff_median": float(np.median(diffs)) if diffs else None,
        "max_abs_diff_max": float(np.max(diffs)) if diffs else None,
        "l1_single_mean": float(np.mean(l1_single)) if l1_single else None,
        "l1_batched_mean": float(np.mean(l1_batch)) if l1_batch else None,
    }
    return result


def compare_with_reference_rule(results: list[dict]) -> list[dict]:
    """Iris PN: found rows and mean L1 of the engine against the emulated reference rule, on the rows both found."""
    by_case = {r["case"]: r for r in results if r["setup"] == "iris" and r["mode"] == "PN"}
    out = []
    for engine_case, ref_case in (("main", "reference gap rule"),
                                  ("clip 100, range min/max", "reference gap rule, clip 100")):
        if engine_case not in by_case or ref_case not in by_case:
            continue
        eng, ref = by_case[engine_case], by_case[ref_case]
        both = [i for i in eng["found_rows"] if i in set(ref["found_rows"])]
        l1_eng = float(np.mean([eng["l1_change_per_row"][i] for i in both])) if both else None
        l1_ref = float(np.mean([ref["l1_change_per_row"][i] for i in both])) if both else None
        out.append({"engine_case": engine_case, "reference_rule_case": ref_case,
                    "found_engine": len(eng["found_rows"]), "found_reference_rule": len(ref["found_rows"]),
                    "rows_both": len(both), "l1_engine_on_both": l1_eng, "l1_reference_rule_on_both": l1_ref,
                    "ratio": l1_eng / l1_ref if both else None})
    return out


def fmt(v, digits=3):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def print_tables(results: list[dict]) -> None:
    print("\n| setup | mode | c_steps × iters | gradients | s/expl one at a time (first call) | s/expl batched "
          "(first call) | CPU s/expl one / batched | speed-up vs ref (one / batched) | found | L1 change | "
          "L0 change | pred check | L1 / L0 evidence kept (PP) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        q = r["quality"]
        ref = REFERENCE_SECONDS.get(r["setup"])
        single = r.get("single_s_per_explanation")
        speed = "–"
        if ref and r["c_steps"] == 5 and r["early_stop"] is None and r["gradients"] == "autodiff":
            speed = f"{ref / single:.0f}× / {ref / r['batched_s_per_explanation']:.0f}×" if single else \
                f"– / {ref / r['batched_s_per_explanation']:.0f}×"
        check = q.get("pn_pred_differs_share", q.get("pp_pred_same_share"))
        kept = f"{fmt(q.get('l1_evidence_kept'))} / {fmt(q.get('l0_evidence_kept'), 1)}" if r["mode"] == "PP" else "–"
        name = r["setup"] + (f" ({r['case']})" if r["case"] != "main" else "")
        one = f"{fmt(single, 4)} ({fmt(r.get('single_first_call_s'), 1)})" if single else "–"
        print(f"| {name} | {r['mode']} | {r['c_steps']} × {r['max_iterations']} | {r['gradients']} | {one} | "
              f"{fmt(r['batched_s_per_explanation'], 4)} ({fmt(r['batched_first_call_s'], 1)}) | "
              f"{fmt(r.get('single_cpu_s_per_explanation'), 4)} / {fmt(r['batched_cpu_s_per_explanation'], 4)} | "
              f"{speed} | "
              f"{q['found_share']:.2f} ({q['n']}) | {fmt(q['l1_change'])} | {fmt(q['l0_change'], 2)} | "
              f"{fmt(check, 2)} | {kept} |")
    print("\n| setup | mode | rows | same found | max |Δ| median / max | mean L1 one at a time / batched |")
    print("|---|---|---|---|---|---|")
    for r in results:
        b = r.get("batched_vs_single")
        if b:
            print(f"| {r['setup']} ({r['case']}) | {r['mode']} | {b['rows']} | {b['same_found_share']:.2f} | "
                  f"{fmt(b['max_abs_diff_median'], 4)} / {fmt(b['max_abs_diff_max'], 4)} | "
                  f"{fmt(b['l1_single_mean'])} / {fmt(b['l1_batched_mean'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-single", type=int, default=10, help="rows explained one at a time per case")
    parser.add_argument("--n-digits", type=int, default=50, help="digits test rows explained (batched)")
    parser.add_argument("--quick", action="store_true", help="fewer rows and epochs, skip extra rows")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    n_single = 3 if args.quick else args.n_single
    started = time.perf_counter()
    env = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_before": load_average(),
           "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
           "command": "python bench/cem.py " + " ".join(sys.argv[1:])}
    print(f"CPU: {env['cpu']} x {env['cores']} cores; load average {env['load_avg_before']}", flush=True)

    iris = iris_setup(args.seed, epochs=200 if args.quick else 500)
    print(f"iris: {iris['classifier']}, test accuracy {iris['accuracy']:.3f}", flush=True)
    digits = digits_setup(args.seed, epochs=5 if args.quick else 15)
    print(f"digits: {digits['classifier']}, test accuracy {digits['accuracy']:.3f}, AE mse {digits['ae_mse']:.4f}",
          flush=True)
    if args.quick:
        iris["x_test"] = iris["x_test"][:20]
    digits["x_test"] = digits["x_test"][: (10 if args.quick else args.n_digits)]

    results = []

    def record(setup_name, res):
        res["setup"] = setup_name
        results.append(res)
        q = res["quality"]
        print(f"  {setup_name:7s} {res['case']:16s} {res['mode']}: found {q['found_share']:.2f}, "
              f"L1 {fmt(q['l1_change'])}, one {fmt(res.get('single_s_per_explanation'), 4)} s, "
              f"batched {res['batched_s_per_explanation']:.4f} s", flush=True)

    for mode in ("PN", "PP"):
        record("iris", run_case("main", iris, mode, iris["model"], n_single))
        record("iris", run_case("timing c_steps 5", iris, mode, iris["model"], n_single, {"c_steps": 5}))
        record("iris", run_case("clip 100, range min/max", iris, mode, iris["model"], n_single,
                                iris["engine_defaults"]))
        if mode == "PN":
            record("iris", run_case("reference gap rule", iris, mode, iris["model"], n_single, batched_only=True,
                                    gap_rule="reference"))
            record("iris", run_case("reference gap rule, clip 100", iris, mode, iris["model"], n_single,
                                    iris["engine_defaults"], batched_only=True, gap_rule="reference"))
        if not args.quick:
            record("iris", run_case("early_stop 100", iris, mode, iris["model"], n_single, {"early_stop": 100}))
            record("iris", run_case("black box", iris, mode, iris["black_box"], 3, {"c_steps": 5}))
        record("digits", run_case("main", digits, mode, digits["model"], n_single))
        if not args.quick:
            record("digits", run_case("early_stop 50", digits, mode, digits["model"], n_single,
                                      {"early_stop": 50}, batched_only=True))

    comparisons = compare_with_reference_rule(results)
    env["load_avg_after"] = load_average()
    env["total_seconds"] = time.perf_counter() - started
    payload = {
        "env": env,
        "reference": {"iris_seconds_per_explanation": 5.4, "iris_setting": "c_steps 5, 1000 iterations",
                      "digits_seconds_per_explanation": 6.2,
                      "digits_setting": "c_steps 5, 500 iterations, with autoencoder",
                      "found_share": 1.0},
        "setups": {
            "iris": {"classifier": iris["classifier"], "test_accuracy": iris["accuracy"],
                     "test_max_proba_quantiles": iris["test_max_proba_quantiles"],
                     "test_rows": len(iris["x_test"]),
                     "settings": {k: v for k, v in iris["settings"].items() if k != "feature_range"}},
            "digits": {"classifier": digits["classifier"], "test_accuracy": digits["accuracy"],
                       "ae_mse": digits["ae_mse"], "test_rows": len(digits["x_test"]),
                       "settings": {k: v for k, v in digits["settings"].items() if k != "ae_model"}},
        },
        "results": results,
        "pn_l1_engine_vs_reference_rule": comparisons,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    print_tables(results)
    print("\n| iris PN, setting | found engine / reference rule | rows both | mean L1 on both: engine / reference rule |")
    print("|---|---|---|---|")
    for c in comparisons:
        print(f"| {c['engine_case']} | {c['found_engine']} / {c['found_reference_rule']} | {c['rows_both']} | "
              f"{fmt(c['l1_engine_on_both'])} / {fmt(c['l1_reference_rule_on_both'])} ({fmt(c['ratio'], 2)}×) |")
    print(f"\nload average before {env['load_avg_before']}, after {env['load_avg_after']}; "
          f"total {env['total_seconds']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
