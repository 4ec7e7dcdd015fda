"""Benchmark of ModelDistillation: adversarial detection quality and speed, with an ablation of its settings.

For each dataset and seed: split rows into train / validation / test (stratified), train a classifier
(the teacher) on train, distil it on train, and attack the *test* rows with FGSM and PGD (L∞, two
strengths each) computed against the teacher only (the usual non-adaptive setting: the attacker does not
know the detector). The detector never sees validation or test rows while training; its threshold is the
95th percentile of validation scores, and everything is measured on test:

- ROC-AUC of clean test rows vs all attacked test rows ("all"), and vs only the attacked rows whose
  prediction the attack changed ("harmful");
- detection rate (TPR) on attacked rows and false-alarm rate (FPR) on clean rows at that threshold;
- classifier accuracy clean and attacked; fit seconds per epoch; scoring throughput.

Run:  .venv/bin/python bench/distillation.py [--seeds 3] [--mnist-seeds 1] [--quick]
                                            [--datasets digits breast_cancer mnist5k]
Writes bench/results/distillation.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import engine  # noqa: E402,F401
from engine.ad import ModelDistillation, fgsm, harmfulness, pgd  # noqa: E402
from engine.classifiers import LabelEncoder, build_classifier, train_classifier  # noqa: E402
from engine.datasets import get_dataset, load_dataset  # noqa: E402
from engine.preprocessing import Standardizer  # noqa: E402
from machine_info import cpu_model  # noqa: E402

REFERENCE = {
    "setup": "sklearn digits, MLP teacher, smaller MLP student, 50 epochs",
    "roc_auc_pgd": 0.68,
    "roc_auc_fgsm": 0.67,
    "train_seconds": 13.0,
}
FPR_TARGET_PERC = 95.0


# ------------------------------------------------------------------------------------------- data


def load(key: str, seed: int):
    """Train / validation / test splits (60 / 15 / 25 %), features scaled, and the valid data range."""
    ds = get_dataset(key)
    frame = load_dataset(key)
    labels = LabelEncoder().fit_transform(frame.pop(ds.label))
    X = frame[ds.feature_columns()].to_numpy(dtype=np.float64)
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, labels, test_size=0.4, stratify=labels, random_state=seed)
    X_va, X_te, y_va, y_te = train_test_split(X_rest, y_rest, test_size=0.625, stratify=y_rest, random_state=seed)
    if ds.kind == "image":
        scale = 16.0 if key == "digits" else 255.0
        X_tr, X_va, X_te = (x / scale for x in (X_tr, X_va, X_te))
        lo, hi = 0.0, 1.0
    else:  # standardise with training statistics; the valid range is the training range per feature
        scaler = Standardizer().fit(X_tr)
        X_tr, X_va, X_te = (scaler.transform(x) for x in (X_tr, X_va, X_te))
        lo, hi = X_tr.min(axis=0), X_tr.max(axis=0)
    cast = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return {
        "kind": ds.kind, "X_tr": cast(X_tr), "y_tr": y_tr, "X_va": cast(X_va), "y_va": y_va, "X_te": cast(X_te),
        "y_te": y_te, "lo": lo if np.isscalar(lo) else cast(lo), "hi": hi if np.isscalar(hi) else cast(hi),
        "n_classes": int(labels.max()) + 1,
    }


SETUPS = {
    # teacher hidden widths, teacher epochs, attack strengths (L∞ epsilon), PGD steps
    "digits": {"teacher": (128, 64), "teacher_epochs": 40, "eps": (0.1, 0.2), "steps": 20},
    "mnist5k": {"teacher": (256, 128), "teacher_epochs": 20, "eps": (0.05, 0.1), "steps": 20},
    "breast_cancer": {"teacher": (64, 32), "teacher_epochs": 60, "eps": (0.25, 0.5), "steps": 20},
}


# ------------------------------------------------------------------------------------------- configs


def mlp_student(n_features, n_classes, hidden, seed):
    return build_classifier(n_features, n_classes, hidden=hidden, seed=seed)


# name -> (student hidden widths or None for the built-in default, temperature, epochs). Every student is
# trained with loss_type='kld'. Training with 'xent' gives the *same* student under the same seed (the two losses
# differ by the teacher's entropy, a constant for the student; tests/unit/test_model_distillation.py checks it),
# so the 'xent' score is computed from the same predictions as kld + H(teacher), not from a second fit.
CONFIGS = {
    "reference-like: MLP(32) student, T=1, 50 ep": ((32,), 1.0, 50),
    "contract defaults: default student, T=1, 20 ep": (None, 1.0, 20),
    "default student, T=2, 50 ep": (None, 2.0, 50),
    "default student, T=3, 50 ep": (None, 3.0, 50),
    "default student, T=5, 50 ep": (None, 5.0, 50),
    "default student, T=10, 50 ep": (None, 10.0, 50),
    "MLP(32) student, T=5, 50 ep": ((32,), 5.0, 50),
    "MLP(128,128) student, T=5, 50 ep": ((128, 128), 5.0, 50),
}
REFERENCE_LIKE = "reference-like: MLP(32) student, T=1, 50 ep"
RECOMMENDED = "default student, T=5, 50 ep"
BALANCED = "default student, T=2, 50 ep"
QUICK_CONFIGS = [REFERENCE_LIKE, "contract defaults: default student, T=1, 20 ep", BALANCED, RECOMMENDED]
SECONDARY_CONFIGS = [REFERENCE_LIKE, "contract defaults: default student, T=1, 20 ep", BALANCED,
                     "default student, T=3, 50 ep", RECOMMENDED]


def auc(clean, adv):
    if len(adv) == 0:
        return float("nan")
    return float(roc_auc_score(np.r_[np.zeros(len(clean)), np.ones(len(adv))], np.r_[clean, adv]))


def _log(p):
    return np.log(np.maximum(p, 1e-30))


def scaled(p, temperature):
    z = _log(p) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def xent_score(p_teacher, p_student, temperature):
    """loss_type='xent': H(p_T, q) = KL(p_T || q) + H(p_T)."""
    return -np.sum(scaled(p_teacher, temperature) * _log(p_student), axis=1)


def unscaled_kl(p_teacher, p_student):
    """The reference's score when T != 1: KL of the *unscaled* teacher from the student trained on scaled targets."""
    return np.sum(p_teacher * (_log(p_teacher) - _log(p_student)), axis=1)


def run_dataset(key: str, seed: int, config_names: list[str]) -> dict:
    setup = SETUPS[key]
    d = load(key, seed)
    n_features, k = d["X_tr"].shape[1], d["n_classes"]
    teacher = build_classifier(n_features, k, hidden=setup["teacher"], seed=seed)
    start = time.perf_counter()
    _, metrics = train_classifier(teacher, d["X_tr"], d["y_tr"], epochs=setup["teacher_epochs"], batch_size=64,
                                  seed=seed, validation=(d["X_te"], d["y_te"]))
    out = {"dataset": key, "seed": seed, "n_train": len(d["X_tr"]), "n_val": len(d["X_va"]), "n_test": len(d["X_te"]),
           "teacher_seconds": time.perf_counter() - start, "classifier_accuracy": metrics["val_accuracy"],
           "attacks": {}, "configs": {}}

    attacks = {}
    for eps in setup["eps"]:
        attacks[f"FGSM-Linf eps={eps}"] = fgsm(teacher, d["X_te"], epsilon=eps, clip_min=d["lo"], clip_max=d["hi"])
        attacks[f"PGD-Linf eps={eps}"] = pgd(teacher, d["X_te"], epsilon=eps, steps=setup["steps"], seed=seed,
                                             clip_min=d["lo"], clip_max=d["hi"])
    harmful = {}
    for name, X_adv in attacks.items():
        res = harmfulness(teacher, d["X_te"], X_adv, d["y_te"])
        harmful[name] = res.harmful
        out["attacks"][name] = {"accuracy_adv": res.accuracy_adv, "harmful_rate": res.harmful_rate}

    for cname in config_names:
        hidden, temperature, epochs = CONFIGS[cname]
        student = None if hidden is None else mlp_student(n_features, k, hidden, seed + 100)
        ad = ModelDistillation(model=teacher, distilled_model=student, loss_type="kld", temperature=temperature,
                               data_type=d["kind"])
        start = time.perf_counter()
        ad.fit(d["X_tr"], epochs=epochs, verbose=False, seed=seed)
        fit_seconds = time.perf_counter() - start
        ad.infer_threshold(d["X_va"], threshold_perc=FPR_TARGET_PERC)
        s_clean, pt_clean, ps_clean = ad.score(d["X_te"], return_predictions=True)
        pt_clean = scaled(pt_clean, 1.0 / temperature)  # score() returns the tempered teacher; undo it
        row = {"fit_seconds": fit_seconds, "seconds_per_epoch": fit_seconds / epochs, "epochs": epochs,
               "student_params": int(ad.distilled_model_.count_params()),
               "agreement_clean": float(np.mean(pt_clean.argmax(1) == ps_clean.argmax(1))),
               "fpr_clean": float(np.mean(s_clean > ad.threshold)), "attacks": {}}
        for name, X_adv in attacks.items():
            s_adv, pt_adv, ps_adv = ad.score(X_adv, return_predictions=True)
            pt_adv = scaled(pt_adv, 1.0 / temperature)
            h = harmful[name]
            x_clean, x_adv = xent_score(pt_clean, ps_clean, temperature), xent_score(pt_adv, ps_adv, temperature)
            entry = {"auc_all": auc(s_clean, s_adv), "auc_harmful": auc(s_clean, s_adv[h]),
                     "tpr_all": float(np.mean(s_adv > ad.threshold)),
                     "tpr_harmful": float(np.mean(s_adv[h] > ad.threshold)) if h.any() else float("nan"),
                     "auc_all_xent": auc(x_clean, x_adv), "auc_harmful_xent": auc(x_clean, x_adv[h])}
            if temperature != 1.0:
                entry["auc_all_unscaled_score"] = auc(unscaled_kl(pt_clean, ps_clean), unscaled_kl(pt_adv, ps_adv))
            row["attacks"][name] = entry
        out["configs"][cname] = row
        print(f"  [{key} seed {seed}] {cname}: fit {fit_seconds:.1f}s, "
              + ", ".join(f"{n} {e['auc_all']:.3f}" for n, e in row["attacks"].items()), flush=True)

    # Scoring throughput of the last (recommended) detector on 20k rows.
    X_big = np.resize(d["X_te"], (20_000, n_features))
    ad.score(X_big[:100])
    start = time.perf_counter()
    ad.score(X_big)
    out["score_rows_per_second"] = 20_000 / (time.perf_counter() - start)
    return out


# ------------------------------------------------------------------------------------------- report


def mean_std(values):
    values = np.asarray([v for v in values if v is not None and not np.isnan(v)], dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std())


def summarise(runs: list[dict]) -> dict:
    summary = {}
    for key in sorted({r["dataset"] for r in runs}):
        rs = [r for r in runs if r["dataset"] == key]
        s = {"seeds": [r["seed"] for r in rs], "classifier_accuracy": mean_std([r["classifier_accuracy"] for r in rs]),
             "teacher_seconds": mean_std([r["teacher_seconds"] for r in rs]),
             "score_rows_per_second": mean_std([r["score_rows_per_second"] for r in rs]), "attacks": {}, "configs": {}}
        for a in rs[0]["attacks"]:
            s["attacks"][a] = {m: mean_std([r["attacks"][a][m] for r in rs]) for m in ("accuracy_adv", "harmful_rate")}
        for c in rs[0]["configs"]:
            cs = [r["configs"][c] for r in rs]
            entry = {m: mean_std([x[m] for x in cs]) for m in
                     ("fit_seconds", "seconds_per_epoch", "agreement_clean", "fpr_clean")}
            entry["student_params"] = cs[0]["student_params"]
            entry["attacks"] = {}
            for a in cs[0]["attacks"]:
                metrics = cs[0]["attacks"][a].keys()
                entry["attacks"][a] = {m: mean_std([x["attacks"][a][m] for x in cs]) for m in metrics}
            s["configs"][c] = entry
        summary[key] = s
    return summary


def fmt(ms, digits=3):
    mean, std = ms
    return "n/a" if np.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _auc_table(lines, s, attacks, metric, title, configs=None):
    lines.append(title + "\n")
    lines.append("| config | " + " | ".join(attacks) + " |")
    lines.append("|---|" + "---|" * len(attacks))
    for c, e in s["configs"].items():
        if configs is not None and c not in configs:
            continue
        lines.append(f"| {c} | " + " | ".join(f"{e['attacks'][a][metric][0]:.3f}" for a in attacks) + " |")
    lines.append("")


def markdown(summary: dict) -> str:
    lines = []
    for key, s in summary.items():
        lines.append(f"### {key} (seeds {s['seeds']})\n")
        lines.append(f"Classifier (teacher) test accuracy: {fmt(s['classifier_accuracy'])}; teacher training "
                     f"{fmt(s['teacher_seconds'], 1)} s; scoring {fmt(s['score_rows_per_second'], 0)} rows/s "
                     f"(teacher + default student, T=5).\n")
        lines.append("| attack (vs teacher) | teacher accuracy attacked | harmful rate |")
        lines.append("|---|---|---|")
        for a, e in s["attacks"].items():
            lines.append(f"| {a} | {fmt(e['accuracy_adv'])} | {fmt(e['harmful_rate'])} |")
        attacks = list(s["attacks"])
        lines.append("")
        if REFERENCE_LIKE in s["configs"]:
            fit = s["configs"][REFERENCE_LIKE]["fit_seconds"]
            lines.append(f"Distillation fit of the reference-like setup (50 epochs): {fmt(fit, 2)} s, "
                         f"{REFERENCE['train_seconds'] / fit[0]:.1f}x faster than the reference's "
                         f"{REFERENCE['train_seconds']:.0f} s.\n")
        lines.append("ROC-AUC with loss_type='kld' (mean over seeds), clean test vs all attacked test rows, "
                     "harmful-only in brackets:\n")
        lines.append("| config | student params | fit s (s/epoch) | FPR@val-p95 | " + " | ".join(attacks) + " |")
        lines.append("|---|---|---|---|" + "---|" * len(attacks))
        for c, e in s["configs"].items():
            cells = [f"{e['attacks'][a]['auc_all'][0]:.3f} ({e['attacks'][a]['auc_harmful'][0]:.3f})" for a in attacks]
            lines.append(f"| {c} | {e['student_params']:,} | {e['fit_seconds'][0]:.1f} "
                         f"({e['seconds_per_epoch'][0]:.3f}) | {e['fpr_clean'][0]:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
        for c in (RECOMMENDED, BALANCED):
            if c not in s["configs"]:
                continue
            e = s["configs"][c]
            rates = "; ".join(f"{a}: {e['attacks'][a]['tpr_all'][0]:.3f} all / {e['attacks'][a]['tpr_harmful'][0]:.3f} "
                              "harmful" for a in attacks)
            lines.append(f"Detection rate of '{c}' at the validation 95th-percentile threshold (FPR on clean test "
                         f"{fmt(e['fpr_clean'])}): {rates}.\n")
        _auc_table(lines, s, attacks, "auc_all_xent", "The same students scored with loss_type='xent', ROC-AUC all:")
        scaled_configs = [c for c, e in s["configs"].items()
                          if "auc_all_unscaled_score" in next(iter(e["attacks"].values()))]
        if scaled_configs:
            _auc_table(lines, s, attacks, "auc_all_unscaled_score",
                       "The same students scored the reference's way (temperature in training only, unscaled "
                       "teacher in the kld score), ROC-AUC all:", scaled_configs)
    return "\n".join(lines)


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": __import__("tensorflow").__version__, "keras": keras.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (splits, teachers, students)")
    parser.add_argument("--quick", action="store_true", help="1 seed, digits only, 4 configs")
    parser.add_argument("--datasets", nargs="+", default=["digits", "breast_cancer", "mnist5k"])
    parser.add_argument("--mnist-seeds", type=int, default=1, help="seeds for mnist5k (the slowest set)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "distillation.json"))
    args = parser.parse_args()
    datasets = ["digits"] if args.quick else args.datasets
    load_before = os.getloadavg()
    started = time.perf_counter()
    runs = []
    for key in datasets:
        n_seeds = 1 if args.quick else (args.mnist_seeds if key == "mnist5k" else args.seeds)
        names = QUICK_CONFIGS if args.quick else (list(CONFIGS) if key == "digits" else SECONDARY_CONFIGS)
        for seed in range(n_seeds):
            runs.append(run_dataset(key, seed, names))
    summary = summarise(runs)
    result = {
        "command": "bench/distillation.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "wall_seconds": time.perf_counter() - started,
        "reference": REFERENCE,
        "recommended_config": RECOMMENDED,
        "balanced_config": BALANCED,
        "summary": summary,
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float))
    print()
    print(f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores; load average before "
          f"{load_before[0]:.2f}, after {result['load_average_after'][0]:.2f}; wall {result['wall_seconds']:.0f} s")
    print(markdown(summary))
    print(f"Results written to {out}")


if __name__ == "__main__":
    main()
