"""CEM pertinent positives on the reference's digits protocol, before and after PP pruning (issue #19, part 1).

Protocol: the bundled 8x8 digits scaled to [0, 1] and the CNN + dense autoencoder of ``bench/cem.py``
(``digits_setup``, seed 0, 15 epochs); CEM with ``mode='PP'``, ``kappa=0, beta=0.1, gamma=10, c_init=1,
c_steps=5, max_iterations=1000, learning_rate_init=1e-2, clip=(-1000, 1000), feature_range=(0, 1)``,
``no_info_val`` = per-pixel training median (``fit(train)``, ``no_info_type='median'``); the first 5 test digits
(``--rows``). Each row is explained with ``prune=False`` (the search's PP, the engine before this change) and
``prune=True`` (the default now).

Per row: pixels kept (``|PP - no_info_val| > 0``), L1 of the kept evidence (``sum |PP - no_info_val|``), whether
the PP keeps the class (the model's prediction of PP equals X's), and the issue's count: non-zero pixels of the PP
image itself and its sum (which include the median image that the PP sits on). The same for PNs (found, class
changed, L1 / pixels changed: PNs are not pruned) and for iris PN / PP (``bench/cem.py``'s iris protocol, 50 rows).
A third digits row set uses ``no_info_val=0`` (a black background, where the reference's PP set and ours agree).

Run: ``.venv/bin/python bench/cem_digits_pp.py [--rows 5] [--seed 0]``; writes bench/results/cem_digits_pp.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import results_path  # first: sets up the environment and sys.path

import numpy as np  # noqa: E402

from cem import digits_setup, iris_setup  # noqa: E402
from engine.explainers import CEM  # noqa: E402
from machine_info import cpu_model, load_average  # noqa: E402

RESULTS = results_path("cem_digits_pp")


def digits_settings(setup: dict) -> dict:
    return dict(shape=(1, 8, 8, 1), kappa=0.0, beta=0.1, gamma=10.0, ae_model=setup["settings"]["ae_model"],
                feature_range=(0.0, 1.0), c_init=1.0, c_steps=5, max_iterations=1000, learning_rate_init=1e-2,
                clip=(-1000.0, 1000.0))


def per_row(exp, model, mode: str) -> list[dict]:
    z = exp.data[mode]
    n = exp.no_info_val
    pred = np.full(len(exp.X), -1)
    if exp.found.any():
        pred[exp.found] = model.predict(z[exp.found], verbose=0).argmax(1)
    rows = []
    for i, found in enumerate(exp.found):
        row = {"found": bool(found)}
        if found:
            kept = np.abs(z[i] - n)
            change = np.abs(z[i] - exp.X[i])
            row.update(kept_features=int((kept > 0).sum()), l1_kept=float(kept.sum()),
                       changed_features=int((change > 1e-6).sum()), l1_change=float(change.sum()),
                       image_nonzero=int((np.abs(z[i]) > 1e-6).sum()), image_sum=float(np.abs(z[i]).sum()),
                       model_pred=int(pred[i]), x_pred=int(np.atleast_1d(exp.X_pred)[i]))
            row["class_kept" if mode == "PP" else "class_changed"] = (
                row["model_pred"] == row["x_pred"] if mode == "PP" else row["model_pred"] != row["x_pred"])
        rows.append(row)
    return rows


def summary(rows: list[dict], mode: str) -> dict:
    found = [r for r in rows if r["found"]]
    out = {"n": len(rows), "found": len(found)}
    if found:
        for key in ("kept_features", "l1_kept", "changed_features", "l1_change", "image_nonzero", "image_sum"):
            out[key] = float(np.mean([r[key] for r in found]))
        key = "class_kept" if mode == "PP" else "class_changed"
        out[key] = float(np.mean([r[key] for r in found]))
    return out


def explain(model, settings, x, train, mode, **extra) -> tuple:
    cem = CEM(model, mode=mode, **settings, **extra)
    if "no_info_val" not in extra:
        cem.fit(train)
    cem.explain(x)  # compile
    start = time.perf_counter()
    exp = cem.explain(x)
    return exp, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    env = {"cpu": cpu_model(), "load_avg_before": load_average(),
           "command": "python bench/cem_digits_pp.py " + " ".join(sys.argv[1:])}
    digits = digits_setup(args.seed, epochs=15)
    iris = iris_setup(args.seed, epochs=500)
    x = digits["x_test"][: args.rows]
    settings = digits_settings(digits)
    cases = {}
    for name, mode, extra in (("digits PP, search only (before)", "PP", {"prune": False}),
                              ("digits PP, pruned (after)", "PP", {"prune": True}),
                              ("digits PP no_info_val=0, search only", "PP", {"prune": False, "no_info_val": 0.0}),
                              ("digits PP no_info_val=0, pruned", "PP", {"prune": True, "no_info_val": 0.0}),
                              ("digits PN", "PN", {})):
        exp, seconds = explain(digits["model"], settings, x, digits["x_train"], mode, **extra)
        rows = per_row(exp, digits["model"], mode)
        cases[name] = {"mode": mode, "seconds": seconds, "rows": rows, "summary": summary(rows, mode)}
    for name, mode, extra in (("iris PP, search only (before)", "PP", {"prune": False}),
                              ("iris PP, pruned (after)", "PP", {"prune": True}),
                              ("iris PN", "PN", {})):
        exp, seconds = explain(iris["model"], iris["settings"], iris["x_test"], iris["x_train"], mode, **extra)
        rows = per_row(exp, iris["model"], mode)
        cases[name] = {"mode": mode, "seconds": seconds, "rows": rows, "summary": summary(rows, mode)}
    env["load_avg_after"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"env": env, "cases": cases}, indent=2))

    print("| case | row | pixels kept | L1 kept | class kept | PP image: non-zero pixels / sum |")
    print("|---|---|---|---|---|---|")
    for name, case in cases.items():
        if not name.startswith("digits PP"):
            continue
        for i, r in enumerate(case["rows"]):
            if r["found"]:
                print(f"| {name} | {i} | {r['kept_features']} | {r['l1_kept']:.2f} | {r['class_kept']} | "
                      f"{r['image_nonzero']} / {r['image_sum']:.2f} |")
            else:
                print(f"| {name} | {i} | not found | | | |")
    print("\n| case | found | features kept / changed | L1 kept / changed | class kept / changed | seconds |")
    print("|---|---|---|---|---|---|")
    for name, case in cases.items():
        s = summary(case["rows"], case["mode"])
        if case["mode"] == "PP":
            print(f"| {name} | {s['found']}/{s['n']} | {s.get('kept_features', 0):.1f} | {s.get('l1_kept', 0):.3f} | "
                  f"{s.get('class_kept', 0):.2f} | {case['seconds']:.2f} |")
        else:
            print(f"| {name} | {s['found']}/{s['n']} | {s.get('changed_features', 0):.2f} | "
                  f"{s.get('l1_change', 0):.3f} | {s.get('class_changed', 0):.2f} | {case['seconds']:.2f} |")
    print(f"\nload average before {env['load_avg_before']}, after {env['load_avg_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
