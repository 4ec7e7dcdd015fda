"""Which distillation temperature should the Adversarial detection page default to? (issue #19, part 4)

Protocol: the bundled 8x8 digits scaled to [0, 1], the stratified 60 / 15 / 25 % train / validation / test split
of ``bench/distillation.py`` (per seed); a teacher trained on train (an MLP 128-64, 40 epochs, or the page's small
CNN, ``build_classifier(kind='cnn', hidden=(64,))``, 30 epochs); FGSM and PGD (L-inf, 20 steps, random start)
made once per seed and teacher against the teacher, on the test rows, at several strengths; for every temperature
``ModelDistillation(model=teacher, temperature=T)`` with the engine's default student (MLP 512-512),
``loss_type='kld'``, 50 epochs, batch 128; detection ROC-AUC of clean test rows against every attacked test row.

Run: ``.venv/bin/python bench/temperature.py [--seeds 0 1 2] [--temperatures 1 2 5 10] [--epochs 50]``;
writes bench/results/temperature.json and prints a markdown table (mean +- std over seeds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

from distillation import auc, load  # noqa: E402
from engine.ad import ModelDistillation, fgsm, pgd  # noqa: E402
from engine.classifiers import build_classifier, train_classifier  # noqa: E402
from machine_info import cpu_model, load_average  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "temperature.json"
TEACHERS = {
    "MLP 128-64": (dict(kind="mlp", hidden=(128, 64)), 40),
    "CNN": (dict(kind="cnn", hidden=(64,), image_shape=(8, 8)), 30),
}
EPSILONS = (0.1, 0.15, 0.2)
PGD_STEPS = 20


def run_seed(seed: int, temperatures, epochs: int) -> list[dict]:
    d = load("digits", seed)
    n_features, k = d["X_tr"].shape[1], d["n_classes"]
    rows = []
    for teacher_name, (spec, teacher_epochs) in TEACHERS.items():
        teacher = build_classifier(n_features, k, seed=seed, **spec)
        _, metrics = train_classifier(teacher, d["X_tr"], d["y_tr"], epochs=teacher_epochs, batch_size=64,
                                      seed=seed, validation=(d["X_te"], d["y_te"]))
        attacks = {}
        for eps in EPSILONS:
            attacks[f"FGSM eps={eps}"] = fgsm(teacher, d["X_te"], epsilon=eps, clip_min=0.0, clip_max=1.0)
            attacks[f"PGD eps={eps}"] = pgd(teacher, d["X_te"], epsilon=eps, steps=PGD_STEPS, seed=seed,
                                            clip_min=0.0, clip_max=1.0)
        accuracy_adv = {name: float(np.mean(teacher.predict(x, verbose=0).argmax(1) == d["y_te"]))
                        for name, x in attacks.items()}
        for temperature in temperatures:
            ad = ModelDistillation(model=teacher, temperature=float(temperature), loss_type="kld")
            start = time.perf_counter()
            ad.fit(d["X_tr"], epochs=epochs, batch_size=128, verbose=False, seed=seed)
            fit_s = time.perf_counter() - start
            clean = ad.score(d["X_te"])
            aucs = {name: auc(clean, ad.score(x)) for name, x in attacks.items()}
            rows.append({"seed": seed, "teacher": teacher_name, "teacher_accuracy": metrics["val_accuracy"],
                         "temperature": float(temperature), "fit_seconds": fit_s, "auc": aucs,
                         "accuracy_attacked": accuracy_adv})
            print(f"seed {seed} {teacher_name} T={temperature:g}: fit {fit_s:.1f}s "
                  + " ".join(f"{n} {v:.3f}" for n, v in aucs.items()), flush=True)
    return rows


def table(rows: list[dict], temperatures) -> str:
    attacks = list(rows[0]["auc"])
    lines = ["| teacher | T | " + " | ".join(attacks) + " | mean |", "|---|---|" + "---|" * (len(attacks) + 1)]
    overall = {}
    for teacher in TEACHERS:
        for t in temperatures:
            sel = [r for r in rows if r["teacher"] == teacher and r["temperature"] == float(t)]
            cells = []
            for a in attacks:
                v = np.array([r["auc"][a] for r in sel])
                cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
            per_seed_mean = np.array([np.mean(list(r["auc"].values())) for r in sel])
            overall.setdefault(float(t), []).extend(per_seed_mean.tolist())
            lines.append(f"| {teacher} | {t:g} | " + " | ".join(cells)
                         + f" | {per_seed_mean.mean():.3f} ± {per_seed_mean.std():.3f} |")
    lines.append("")
    lines.append("| T | mean ROC-AUC over teachers, attacks and seeds |")
    lines.append("|---|---|")
    for t, v in overall.items():
        lines.append(f"| {t:g} | {np.mean(v):.3f} ± {np.std(v):.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 5.0, 10.0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    env = {"cpu": cpu_model(), "load_avg_before": load_average(),
           "command": "python bench/temperature.py " + " ".join(sys.argv[1:])}
    started = time.perf_counter()
    rows = [r for seed in args.seeds for r in run_seed(seed, args.temperatures, args.epochs)]
    env["load_avg_after"] = load_average()
    env["total_seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"env": env, "epochs": args.epochs, "rows": rows}, indent=2))
    print(table(rows, args.temperatures))
    print(f"\nload average before {env['load_avg_before']}, after {env['load_avg_after']}; "
          f"total {env['total_seconds']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
