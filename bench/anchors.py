"""Benchmark of AnchorTabular on Adult and iris: speed, reported precision/coverage, held-out precision.

Adult: the bundled UCI Adult data with its original train/test split (``split`` column), the 12
features of the reference example (categoricals ordinal-coded, unknown answers as their own
category), and the reference example's model: one-hot encoding of the categoricals, scaling of
the numbers and a scikit-learn random forest with 50 trees. Iris and wine (scikit-learn's copies
of the UCI data): small training sets, a stratified 1/2 - 1/2 split (75 iris training rows,
89 wine rows) and a random forest with 50 trees; ``disc_perc=(25, 50, 75)``.

For each data set the explainer is fitted on the training split and explains 20 fixed test rows
at threshold 0.95. Reported: seconds per explanation (``cold``: a fresh prediction cache for
every row, as the reference works; ``warm``: the 20 rows in one ``explain`` call sharing the
cache), the anchors' length, precision and coverage as reported, and their precision and coverage
on the whole held-out test split.

Run: ``.venv/bin/python bench/anchors.py`` (``--quick`` for 5 rows and one seed,
``--seeds 0 1 2`` for the explainer seeds, ``--sampling auto rows perturb`` for the sampling modes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.datasets import load_dataset  # noqa: E402
from engine.explainers import AnchorTabular  # noqa: E402
from machine_info import cpu_model  # noqa: E402

REFERENCE = {
    "adult": {"seconds_per_explanation": 1.1, "anchor_length": 3.95, "coverage": 0.10, "heldout_precision": 0.97,
              "heldout_share_095": 0.90},
    "iris": {"seconds_per_explanation": 0.34},
    "wine": {"seconds_per_explanation": float("nan")},
}
TARGETS = {"adult_heldout_precision": 0.93, "speedup": 5.0}

ADULT_COLUMNS = [
    ("age", "Age", False),
    ("workclass", "Workclass", True),
    ("education", "Education", True),
    ("marital_status", "Marital Status", True),
    ("occupation", "Occupation", True),
    ("relationship", "Relationship", True),
    ("race", "Race", True),
    ("sex", "Sex", True),
    ("capital_gain", "Capital Gain", False),
    ("capital_loss", "Capital Loss", False),
    ("hours_per_week", "Hours per week", False),
    ("native_country", "Country", True),
]


def load_adult():
    df = load_dataset("adult")
    names, categorical_names, columns = [], {}, []
    for j, (col, name, is_cat) in enumerate(ADULT_COLUMNS):
        names.append(name)
        if is_cat:
            values = df[col].fillna("Unknown").astype(str)
            cats = sorted(values.unique())
            categorical_names[j] = cats
            columns.append(values.map({c: i for i, c in enumerate(cats)}).to_numpy(dtype=np.float64))
        else:
            columns.append(df[col].to_numpy(dtype=np.float64))
    X = np.stack(columns, axis=1)
    y = (df["income"].astype(str).str.contains(">")).to_numpy().astype(int)
    train = (df["split"] == "train").to_numpy()
    return X[train], y[train], X[~train], y[~train], names, categorical_names


def load_iris(seed: int = 0):
    from sklearn.model_selection import train_test_split

    df = load_dataset("iris")
    X = df.drop(columns="species").to_numpy(dtype=np.float64)
    y = df["species"].astype("category").cat.codes.to_numpy()
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.5, stratify=y, random_state=seed)
    return X_tr, y_tr, X_te, y_te, list(df.columns[:-1]), {}


def load_wine(seed: int = 0):
    from sklearn.datasets import load_wine as sklearn_wine
    from sklearn.model_selection import train_test_split

    data = sklearn_wine()
    X_tr, X_te, y_tr, y_te = train_test_split(data.data, data.target, test_size=0.5, stratify=data.target,
                                              random_state=seed)
    return X_tr, y_tr, X_te, y_te, list(data.feature_names), {}


def adult_model(X, y, categorical):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numerical = [j for j in range(X.shape[1]) if j not in categorical]
    pre = ColumnTransformer([
        ("num", StandardScaler(), numerical),
        ("cat", OneHotEncoder(handle_unknown="ignore"), sorted(categorical)),
    ])
    model = Pipeline([("pre", pre), ("rf", RandomForestClassifier(n_estimators=50, random_state=0))])
    return model.fit(X, y)


def iris_model(X, y):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=50, random_state=0).fit(X, y)


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def run_case(name, X_tr, X_te, y_te, model, feature_names, categorical_names, rows, seed, sampling):
    predictor = model.predict_proba
    explainer = AnchorTabular(predictor, feature_names, categorical_names, seed=seed, sampling=sampling)
    explainer.fit(X_tr, disc_perc=(25, 50, 75))
    test_pred = predictor(X_te)
    X_rows = X_te[rows]

    # Cold: the prediction cache is emptied before every row, as if each were explained alone.
    # Wall-clock and CPU time of this process (the latter is what a loaded machine inflates least).
    cold_times, cold_cpu, explanations = [], [], []
    for x in X_rows:
        explainer.reset_predictor(predictor)
        t0, c0 = time.perf_counter(), time.process_time()
        explanations.append(explainer.explain(x, threshold=0.95))
        cold_times.append(time.perf_counter() - t0)
        cold_cpu.append(time.process_time() - c0)
    # Warm: all rows in one call, sharing the cache of training-row predictions ('rows' only:
    # 'perturb' samples are new rows every time, there is nothing to share).
    warm_seconds, same = float("nan"), None
    if sampling != "perturb":
        explainer.reset_predictor(predictor)
        t0 = time.perf_counter()
        warm = explainer.explain(X_rows, threshold=0.95)
        warm_seconds = (time.perf_counter() - t0) / len(rows)
        same = all(a.anchor == b.anchor for a, b in zip(explanations, warm))

    held = explainer.anchor_precision_on(X_te, explanations, predictions=test_pred)
    held_prec = np.array([h["precision"] for h in held])
    return {
        "dataset": name,
        "sampling": sampling,
        "seed": seed,
        "n_rows": len(rows),
        "cold_seconds_per_explanation": float(np.mean(cold_times)),
        "cold_cpu_seconds_per_explanation": float(np.mean(cold_cpu)),
        "warm_seconds_per_explanation": float(warm_seconds),
        "warm_equals_cold": same,
        "anchor_length": float(np.mean([len(e.raw["feature"]) for e in explanations])),
        "found": int(sum(e.raw["success"] for e in explanations)),
        "precision": float(np.mean([e.precision for e in explanations])),
        "coverage": float(np.mean([e.coverage for e in explanations])),
        "heldout_precision": float(np.nanmean(held_prec)) if np.isfinite(held_prec).any() else float("nan"),
        "heldout_precision_found": _nanmean(held_prec[[e.raw["success"] for e in explanations]]),
        "heldout_share_095": float(np.mean(np.nan_to_num(held_prec, nan=0.0) >= 0.95)),
        "heldout_precision_min": float(np.nanmin(held_prec)) if np.isfinite(held_prec).any() else float("nan"),
        "heldout_coverage": float(np.mean([h["coverage"] for h in held])),
        "heldout_uncovered": int(np.sum(~np.isfinite(held_prec))),
        "predictor_rows_per_explanation": float(np.mean([e.raw["search"]["n_predicted_rows"] for e in explanations])),
        "predictor_calls_per_explanation": float(np.mean([e.raw["search"]["n_predictor_calls"] for e in explanations])),
        "examples": [" AND ".join(e.anchor) for e in explanations[:3]],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="explainer seeds")
    parser.add_argument("--perturb-seeds", type=int, default=1,
                        help="how many of the seeds to run with 'perturb' sampling (it is ~10x slower)")
    parser.add_argument("--rows", type=int, default=20, help="test rows explained per data set")
    parser.add_argument("--sampling", nargs="+", default=["auto", "rows", "perturb"],
                        choices=["auto", "rows", "perturb"])
    parser.add_argument("--datasets", nargs="+", default=["adult", "iris", "wine"], choices=["adult", "iris", "wine"])
    parser.add_argument("--quick", action="store_true", help="5 rows, seed 0 only")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "anchors.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.seeds = 5, [0]

    load_before = os.getloadavg()
    started = time.perf_counter()
    results = []
    for name in args.datasets:
        if name == "adult":
            X_tr, y_tr, X_te, y_te, names, cats = load_adult()
            model = adult_model(X_tr, y_tr, cats)
        else:
            X_tr, y_tr, X_te, y_te, names, cats = load_iris() if name == "iris" else load_wine()
            model = iris_model(X_tr, y_tr)
        accuracy = float((model.predict(X_te) == y_te).mean())
        rows = np.sort(np.random.default_rng(12345).choice(len(X_te), size=min(args.rows, len(X_te)), replace=False))
        for sampling in args.sampling:
            for seed in (args.seeds if sampling != "perturb" else args.seeds[: args.perturb_seeds]):
                r = run_case(name, X_tr, X_te, y_te, model, names, cats, rows, seed, sampling)
                r["model_test_accuracy"] = accuracy
                results.append(r)
                print(f"{name:5s} {sampling:7s} seed={seed}: cold {r['cold_seconds_per_explanation']:.3f} s "
                      f"(cpu {r['cold_cpu_seconds_per_explanation']:.3f} s), "
                      f"warm {r['warm_seconds_per_explanation']:.3f} s, len {r['anchor_length']:.2f}, "
                      f"prec {r['precision']:.3f}, cov {r['coverage']:.3f}, held-out prec "
                      f"{r['heldout_precision']:.3f} (min {r['heldout_precision_min']:.3f}, "
                      f"share >= 0.95 {r['heldout_share_095']:.2f}), "
                      f"found {r['found']}/{r['n_rows']}", flush=True)
    load_after = os.getloadavg()

    summary = []
    for name in args.datasets:
        for sampling in args.sampling:
            rs = [r for r in results if r["dataset"] == name and r["sampling"] == sampling]
            keys = ["cold_seconds_per_explanation", "cold_cpu_seconds_per_explanation",
                    "warm_seconds_per_explanation", "anchor_length", "precision", "coverage", "heldout_precision",
                    "heldout_precision_found", "heldout_precision_min", "heldout_share_095", "heldout_coverage", "found",
                    "predictor_calls_per_explanation", "predictor_rows_per_explanation"]
            row = {"dataset": name, "sampling": sampling, "seeds": len(rs)}
            for k in keys:
                vals = np.array([r[k] for r in rs], dtype=float)
                row[k] = _nanmean(vals)
                row[k + "_std"] = float(np.nanstd(vals)) if np.isfinite(vals).any() else float("nan")
            ref = REFERENCE[name]["seconds_per_explanation"]
            row["speedup_cold"] = ref / row["cold_seconds_per_explanation"]
            row["speedup_cold_cpu"] = ref / row["cold_cpu_seconds_per_explanation"]
            row["speedup_warm"] = ref / row["warm_seconds_per_explanation"]
            row["model_test_accuracy"] = rs[0]["model_test_accuracy"]
            summary.append(row)

    print()
    print(f"CPU: {cpu_model()} x {os.cpu_count()} cores; load average before {load_before[0]:.2f}, "
          f"after {load_after[0]:.2f}; {args.rows} rows, seeds {args.seeds}")
    print()
    print("| data | sampling | s/expl. cold (CPU s) | s/expl. warm | speed-up cold / CPU / warm | anchor length "
          "| precision | coverage | held-out precision all (certified) [min] | held-out >= 0.95 | held-out coverage "
          "| certified |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['dataset']} | {s['sampling']} | {s['cold_seconds_per_explanation']:.3f} "
              f"({s['cold_cpu_seconds_per_explanation']:.3f}) | {s['warm_seconds_per_explanation']:.3f} | "
              f"{s['speedup_cold']:.1f}x / {s['speedup_cold_cpu']:.1f}x / {s['speedup_warm']:.1f}x | "
              f"{s['anchor_length']:.2f} | {s['precision']:.3f} | {s['coverage']:.3f} | "
              f"{s['heldout_precision']:.3f} ({s['heldout_precision_found']:.3f}) [{s['heldout_precision_min']:.3f}] "
              f"| {s['heldout_share_095']:.2f} | {s['heldout_coverage']:.3f} | {s['found']:.1f}/{args.rows} |")
    for name in args.datasets:
        ref = REFERENCE[name]
        print(f"| {name} | reference (published) | {ref['seconds_per_explanation']} | | | "
              f"{ref.get('anchor_length', '')} | | {ref.get('coverage', '')} | "
              f"{ref.get('heldout_precision', '')} | {ref.get('heldout_share_095', '')} | | |")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": "python bench/anchors.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "total_seconds": time.perf_counter() - started,
        "reference": REFERENCE,
        "targets": TARGETS,
        "summary": summary,
        "runs": results,
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
