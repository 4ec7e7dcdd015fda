"""Benchmark of engine.od.OutlierAEGMM on KDD Cup 99: quality and speed against the reference (alibi-detect).

Protocol (the reference's AEGMM example; see docs/BENCHMARKS.md, section "OutlierAEGMM (KDD Cup 99)"):

- data: ../shared/benchdata/kddcup.data_10_percent.gz (494,021 rows), read in place; the 18
  continuous features below; every attack (label other than ``normal.``) is an outlier;
- per seed, disjoint random draws: ``--train-rows`` normal rows for training (standardised with
  their own statistics by the detector's stored scaler); a 1,000-row threshold batch with 5 %
  outliers (threshold = 95th percentile of its scores); a 1,000-row F1 batch with 10 % outliers;
  a 20,000-row ROC-AUC batch with 20 % outliers; held-out normal rows never overlap the training rows;
- networks: encoder 18 → 60 → 30 → 10 (tanh) → 1, decoder mirrored 1 → 10 → 30 → 60 (tanh) → 18,
  GMM membership network 3 → 10 (tanh) → 2 (softmax); Adam 1e-3, loss weights 0.1 / 0.005.

Robustness (not part of the reference protocol, reported next to it): one 1,000-row threshold batch and
one 1,000-row F1 batch are a small sample, so after training each seed is also scored on 300 fresh draws
of both batches (same sizes and outlier shares) from a held-out pool: every normal row not used for
training and 40,000 attack rows. The share of draws with F1 >= 0.93 says whether a seed's F1 is robust
or a lucky draw. Per seed the script also records where the ``smurf`` attacks (71 % of the attacks,
mostly identical rows, hence one energy value) land: their median energy, the share of held-out
normal rows scoring at or above it, and the relative-distance feature of smurfs against the normal
rows' (including how many rows hit the feature's cap ``max_eucl``). ``--extra-seeds`` runs further
seeds reported apart from the protocol's; ``--baselines`` scores the same redraws with simple
density scores (squared norm, Mahalanobis distance, mean distance to the 10 nearest training rows)
on the standardised features, for comparison.

Speed: seconds per training epoch on 50,000 rows at batch 1,024 (the median of the epochs after the
first, plus the first epoch, which includes tracing), and scoring throughput in rows/s on 100,000 rows
(the median of repeated ``score`` calls, validation and standardisation included).

Run: ``.venv/bin/python bench/aegmm_kdd.py [--seeds 5] [--extra-seeds 5] [--epochs 15] [--baselines] [--quick]``;
writes bench/results/aegmm_kdd.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

from _common import ROOT, results_path  # first: sets up the environment and sys.path

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score  # noqa: E402

from engine.nets import mlp  # noqa: E402
from engine.od import OutlierAEGMM  # noqa: E402
from engine.od.aegmm import eucl_cosim_features  # noqa: E402
from machine_info import benchdata_dir, cpu_model, load_average  # noqa: E402

KDD = benchdata_dir() / "kddcup.data_10_percent.gz"
RESULTS = results_path("aegmm_kdd")

COLUMNS = [
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land", "wrong_fragment", "urgent",
    "hot", "num_failed_logins", "logged_in", "num_compromised", "root_shell", "su_attempted", "num_root",
    "num_file_creations", "num_shells", "num_access_files", "num_outbound_cmds", "is_host_login",
    "is_guest_login", "count", "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate",
    "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate", "dst_host_count", "dst_host_srv_count",
    "dst_host_same_srv_rate", "dst_host_diff_srv_rate", "dst_host_same_src_port_rate",
    "dst_host_srv_diff_host_rate", "dst_host_serror_rate", "dst_host_srv_serror_rate", "dst_host_rerror_rate",
    "dst_host_srv_rerror_rate", "label",
]
FEATURES = [
    "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate", "same_srv_rate",
    "diff_srv_rate", "srv_diff_host_rate", "dst_host_count", "dst_host_srv_count", "dst_host_same_srv_rate",
    "dst_host_diff_srv_rate", "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate",
    "dst_host_serror_rate", "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
]
REFERENCE = {"f1": 0.889, "seconds_per_epoch": 6.0, "score_rows_per_second": 550_000.0}
TARGETS = {"f1": 0.93, "roc_auc": 0.985, "nan_scores": 0, "train_speedup": 5.0, "score_speedup": 2.0}

THRESHOLD_BATCH = (1_000, 0.05)
F1_BATCH = (1_000, 0.10)
AUC_BATCH = (20_000, 0.20)
REDRAWS = 300
REDRAW_ATTACKS = 40_000
MAX_EUCL = 1e2  # eucl_cosim_features' default cap of the relative distance


# ---------------------------------------------------------------------- data
def load_kdd() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 18 continuous features (float32), the outlier label (1 = attack) and the attack names."""
    frame = pd.read_csv(KDD, header=None, names=COLUMNS, usecols=FEATURES + ["label"])
    names = frame["label"].to_numpy()
    return frame[FEATURES].to_numpy(np.float32), (names != "normal.").astype(np.int64), names


def draw_batches(labels: np.ndarray, n_train: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Disjoint row indices: training (normal only), threshold, F1 and ROC-AUC batches."""
    normal = rng.permutation(np.flatnonzero(labels == 0))
    attack = rng.permutation(np.flatnonzero(labels == 1))
    batches = {"train": normal[:n_train]}
    n_used, a_used = n_train, 0
    for name, (size, share) in (("threshold", THRESHOLD_BATCH), ("f1", F1_BATCH), ("auc", AUC_BATCH)):
        n_out = int(round(size * share))
        n_in = size - n_out
        if n_used + n_in > len(normal):
            raise SystemExit(f"not enough normal rows for --train-rows {n_train}; lower it.")
        batches[name] = rng.permutation(np.r_[normal[n_used:n_used + n_in], attack[a_used:a_used + n_out]])
        n_used += n_in
        a_used += n_out
    return batches


# ---------------------------------------------------------------------- model
def reference_networks(seed: int) -> dict[str, keras.Sequential]:
    """The reference example's networks, initialised from ``seed``."""
    base = seed * 1000
    return {
        "encoder_net": mlp(18, [60, 30, 10], 1, activation="tanh", seed=base, name="encoder"),
        "decoder_net": mlp(1, [10, 30, 60], 18, activation="tanh", seed=base + 100, name="decoder"),
        "gmm_density_net": mlp(3, [10], 2, activation="tanh", output_activation="softmax", seed=base + 200,
                               name="gmm_density"),
    }


def heldout_pool(y: np.ndarray, train_idx: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every normal row not used for training and ``REDRAW_ATTACKS`` attack rows (seeded)."""
    rng = np.random.default_rng(10_000 + seed)
    normal = np.setdiff1d(np.flatnonzero(y == 0), train_idx)
    attack = rng.choice(np.flatnonzero(y == 1), REDRAW_ATTACKS, replace=False)
    return normal, attack


def redraw_f1(normal_scores: np.ndarray, attack_scores: np.ndarray, seed: int) -> np.ndarray:
    """F1 of ``REDRAWS`` fresh (threshold batch, F1 batch) pairs drawn from held-out scores."""
    rng = np.random.default_rng(20_000 + seed)
    (t_rows, t_share), (f_rows, f_share) = THRESHOLD_BATCH, F1_BATCH
    t_out, f_out = int(round(t_rows * t_share)), int(round(f_rows * f_share))
    t_in, f_in = t_rows - t_out, f_rows - f_out
    f1s = np.empty(REDRAWS)
    for i in range(REDRAWS):
        n = rng.choice(len(normal_scores), t_in + f_in, replace=False)
        a = rng.choice(len(attack_scores), t_out + f_out, replace=False)
        threshold = np.percentile(np.r_[normal_scores[n[:t_in]], attack_scores[a[:t_out]]], 95.0)
        tp = int((attack_scores[a[t_out:]] > threshold).sum())
        fp = int((normal_scores[n[t_in:]] > threshold).sum())
        f1s[i] = 2 * tp / (2 * tp + fp + (f_out - tp))
    return f1s


def relative_distance(od: OutlierAEGMM, rows: np.ndarray) -> np.ndarray:
    """The relative-distance reconstruction feature the mixture sees, per row."""
    x = od.scaler_.transform(rows).astype(np.float32)
    out = []
    for i in range(0, len(x), 65_536):
        x_recon, _ = od.aegmm_.reconstruct_and_latent(x[i:i + 65_536])
        out.append(eucl_cosim_features(x[i:i + 65_536], x_recon, max_eucl=np.inf).numpy()[:, 0])
    return np.concatenate(out)


def robustness(od: OutlierAEGMM, X: np.ndarray, y: np.ndarray, names: np.ndarray, train_idx: np.ndarray,
               seed: int) -> dict:
    """Redrawn F1 and where the smurf attacks land against held-out normal rows."""
    normal, attack = heldout_pool(y, train_idx, seed)
    e_normal, e_attack = od.score(X[normal]), od.score(X[attack])
    f1s = redraw_f1(e_normal, e_attack, seed)
    smurf = names[attack] == "smurf."
    smurf_energy = float(np.median(e_attack[smurf]))
    d_normal, d_attack = relative_distance(od, X[normal]), relative_distance(od, X[attack])
    return {
        "redraws": {
            "n": REDRAWS, "share_f1_ge_target": float(np.mean(f1s >= TARGETS["f1"])),
            "f1_p05": float(np.percentile(f1s, 5)), "f1_median": float(np.median(f1s)), "f1_mean": float(f1s.mean()),
        },
        "smurf": {
            "share_of_attacks": float(smurf.mean()),
            "median_energy": smurf_energy,
            "share_of_heldout_normal_at_or_above_median_energy": float(np.mean(e_normal >= smurf_energy)),
            "normal_energy_p99_5": float(np.percentile(e_normal, 99.5)),
            "normal_energy_p99_9": float(np.percentile(e_normal, 99.9)),
            "relative_distance_median": float(np.median(d_attack[smurf])),
            "normal_relative_distance_p99": float(np.percentile(d_normal, 99)),
            "normal_relative_distance_p99_9": float(np.percentile(d_normal, 99.9)),
            "relative_distance_max_all_rows": float(max(d_normal.max(), d_attack.max())),
            "rows_at_or_above_max_eucl": int((d_normal >= MAX_EUCL).sum() + (d_attack >= MAX_EUCL).sum()),
            "rows_checked": int(len(d_normal) + len(d_attack)),
        },
    }


def baselines(X: np.ndarray, y: np.ndarray, seed: int, n_train: int) -> dict:
    """Redrawn F1 of simple density scores on the same standardised features and held-out pool."""
    from sklearn.covariance import EmpiricalCovariance
    from sklearn.neighbors import NearestNeighbors

    idx = draw_batches(y, n_train, np.random.default_rng(seed))
    train = X[idx["train"]].astype(np.float64)
    mean, std = train.mean(0), train.std(0)
    std[std == 0] = 1.0

    def z(rows: np.ndarray) -> np.ndarray:
        return (rows.astype(np.float64) - mean) / std

    normal, attack = heldout_pool(y, idx["train"], seed)
    cov = EmpiricalCovariance().fit(z(train))
    knn = NearestNeighbors(n_neighbors=10).fit(z(train))
    scores = {
        "squared_norm": lambda r: (z(r) ** 2).sum(1),
        "mahalanobis": lambda r: cov.mahalanobis(z(r)),
        "knn10_mean_distance": lambda r: knn.kneighbors(z(r))[0].mean(1),
    }
    out = {}
    for name, fn in scores.items():
        f1s = redraw_f1(fn(X[normal]), fn(X[attack]), seed)
        out[name] = {"share_f1_ge_target": float(np.mean(f1s >= TARGETS["f1"])), "f1_median": float(np.median(f1s))}
    return out


def run_seed(X: np.ndarray, y: np.ndarray, names: np.ndarray, seed: int, args) -> dict:
    rng = np.random.default_rng(seed)
    idx = draw_batches(y, args.train_rows, rng)
    epoch_ends: list[float] = []
    start = time.perf_counter()

    def progress(event):
        if event.kind == "epoch":
            epoch_ends.append(time.perf_counter() - start)

    od = OutlierAEGMM(n_gmm=2, data_type="tabular", **reference_networks(seed))
    od.fit(X[idx["train"]], epochs=args.epochs, batch_size=args.batch_size, optimizer=keras.optimizers.Adam(1e-3),
           verbose=False, seed=seed, progress=progress)
    fit_seconds = time.perf_counter() - start
    epoch_seconds = np.diff(np.r_[0.0, epoch_ends])

    od.infer_threshold(X[idx["threshold"]], threshold_perc=95.0)
    f1_pred = od.predict(X[idx["f1"]])
    auc_scores = od.score(X[idx["auc"]])
    y_f1 = y[idx["f1"]]
    is_outlier = f1_pred["data"]["is_outlier"]
    all_scores = np.r_[f1_pred["data"]["instance_score"], auc_scores]
    return {
        "seed": seed,
        "f1": float(f1_score(y_f1, is_outlier)),
        "precision": float(precision_score(y_f1, is_outlier)),
        "recall": float(recall_score(y_f1, is_outlier)),
        "roc_auc": float(roc_auc_score(y[idx["auc"]], auc_scores)),
        "nan_scores": int((~np.isfinite(all_scores)).sum()),
        "threshold": float(od.threshold),
        "final_loss": float(od.history_.loss[-1]),
        "fit_seconds": fit_seconds,
        "first_epoch_seconds": float(epoch_seconds[0]),
        "median_later_epoch_seconds": float(np.median(epoch_seconds[1:])) if len(epoch_seconds) > 1 else None,
        **robustness(od, X, y, names, idx["train"], seed),
    }


def measure_speed(X: np.ndarray, y: np.ndarray, args) -> dict:
    """Seconds per epoch on 50,000 normal rows at batch 1,024, and scoring rows/s on 100,000 rows."""
    rng = np.random.default_rng(1234)
    train_rows = X[rng.choice(np.flatnonzero(y == 0), 50_000, replace=False)]
    epoch_ends: list[float] = []
    start = time.perf_counter()

    def progress(event):
        if event.kind == "epoch":
            epoch_ends.append(time.perf_counter() - start)

    od = OutlierAEGMM(n_gmm=2, **reference_networks(0))
    od.fit(train_rows, epochs=args.speed_epochs, batch_size=1024, verbose=False, seed=0, progress=progress)
    epochs = np.diff(np.r_[0.0, epoch_ends])

    score_rows = X[rng.choice(len(X), 100_000, replace=False)]
    od.score(score_rows)  # warm-up: the energy function was traced in fit; this warms memory and caches
    timings = []
    for _ in range(args.score_repeats):
        t0 = time.perf_counter()
        od.score(score_rows)
        timings.append(time.perf_counter() - t0)
    steady = float(np.median(epochs[1:]))
    score_seconds = float(np.median(timings))
    return {
        "epoch_seconds_all": [float(e) for e in epochs],
        "first_epoch_seconds_incl_tracing": float(epochs[0]),
        "seconds_per_epoch_median_after_first": steady,
        "seconds_per_epoch_mean_incl_first": float(epochs.mean()),
        "score_seconds_100k_median": score_seconds,
        "score_seconds_100k_best": float(min(timings)),
        "score_rows_per_second_median": 100_000 / score_seconds,
        "score_rows_per_second_best": 100_000 / float(min(timings)),
        "train_speedup_vs_reference": REFERENCE["seconds_per_epoch"] / steady,
        "score_speedup_vs_reference": (100_000 / score_seconds) / REFERENCE["score_rows_per_second"],
    }


# ---------------------------------------------------------------------- reporting
def machine() -> dict:
    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__}


def summarise(rows: list[dict]) -> dict:
    f1s = [r["f1"] for r in rows]
    aucs = [r["roc_auc"] for r in rows]
    shares = [r["redraws"]["share_f1_ge_target"] for r in rows]
    return {
        "seeds": [r["seed"] for r in rows],
        "f1_mean": statistics.mean(f1s), "f1_min": min(f1s), "f1_max": max(f1s),
        "seeds_f1_below_target": sum(f < TARGETS["f1"] for f in f1s),
        "roc_auc_mean": statistics.mean(aucs), "roc_auc_min": min(aucs), "roc_auc_max": max(aucs),
        "nan_scores_total": sum(r["nan_scores"] for r in rows),
        "redraw_share_f1_ge_target_mean": statistics.mean(shares),
        "redraw_share_f1_ge_target_min": min(shares),
        "rows_at_or_above_max_eucl": sum(r["smurf"]["rows_at_or_above_max_eucl"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="protocol seeds (0 … n-1); the targets are judged on these")
    parser.add_argument("--extra-seeds", type=int, default=5,
                        help="further seeds (n … n+k-1), reported apart from the protocol's")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs per seed")
    parser.add_argument("--train-rows", type=int, default=50_000, help="normal training rows per seed")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--speed-epochs", type=int, default=6, help="epochs of the speed measurement")
    parser.add_argument("--score-repeats", type=int, default=7, help="repeats of the 100,000-row scoring")
    parser.add_argument("--baselines", action="store_true",
                        help="also redraw F1 for squared-norm, Mahalanobis and 10-NN scores on the protocol seeds")
    parser.add_argument("--quick", action="store_true", help="1 seed, 3 epochs, short speed runs (smoke test)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/aegmm_kdd.json")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.extra_seeds, args.epochs, args.speed_epochs, args.score_repeats = 1, 0, 3, 3, 3

    load_before = load_average()
    t0 = time.perf_counter()
    X, y, names = load_kdd()
    print(f"KDD Cup 99 10 %: {len(X):,} rows, {int(y.sum()):,} attacks ({time.perf_counter() - t0:.1f} s to read)")

    per_seed = []
    for seed in range(args.seeds + args.extra_seeds):
        result = run_seed(X, y, names, seed, args)
        result["protocol_seed"] = seed < args.seeds
        per_seed.append(result)
        print(f"seed {seed}: F1 {result['f1']:.4f}  ROC-AUC {result['roc_auc']:.4f}  NaN {result['nan_scores']}  "
              f"redrawn F1 >= {TARGETS['f1']}: {result['redraws']['share_f1_ge_target']:.0%}  "
              f"fit {result['fit_seconds']:.1f} s", flush=True)
    baseline = {seed: baselines(X, y, seed, args.train_rows) for seed in range(args.seeds)} if args.baselines else None
    speed = measure_speed(X, y, args)
    load_after = load_average()

    protocol_rows = [r for r in per_seed if r["protocol_seed"]]
    summary = summarise(protocol_rows)
    summary_all = summarise(per_seed)
    met = {
        "f1_every_seed": summary["f1_min"] >= TARGETS["f1"],
        "roc_auc_every_seed": summary["roc_auc_min"] >= TARGETS["roc_auc"],
        "zero_nan": summary["nan_scores_total"] == 0,
        "train_speedup": speed["train_speedup_vs_reference"] >= TARGETS["train_speedup"],
        "score_speedup": speed["score_speedup_vs_reference"] >= TARGETS["score_speedup"],
    }
    report = {
        "benchmark": "aegmm_kdd",
        "command": ".venv/bin/python " + " ".join(["bench/aegmm_kdd.py", *sys.argv[1:]]),
        "protocol": {
            "data": "../shared/benchdata/" + KDD.name, "features": FEATURES, "train_rows": args.train_rows,
            "epochs": args.epochs,
            "batch_size": args.batch_size, "optimizer": "Adam(1e-3)", "w_energy": 0.1, "w_cov_diag": 0.005,
            "networks": "encoder 18-60-30-10(tanh)-1, decoder 1-10-30-60(tanh)-18, gmm 3-10(tanh)-2(softmax)",
            "threshold_batch": {"rows": THRESHOLD_BATCH[0], "outlier_share": THRESHOLD_BATCH[1], "percentile": 95},
            "f1_batch": {"rows": F1_BATCH[0], "outlier_share": F1_BATCH[1]},
            "auc_batch": {"rows": AUC_BATCH[0], "outlier_share": AUC_BATCH[1]},
            "disjoint_batches": True,
            "protocol_seeds": list(range(args.seeds)),
            "extra_seeds": list(range(args.seeds, args.seeds + args.extra_seeds)),
            "redraws": {"per_seed": REDRAWS, "pool": "every normal row not used for training + "
                        f"{REDRAW_ATTACKS:,} attack rows", "batches": "threshold and F1 batches as above"},
        },
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "per_seed": per_seed,
        "summary": summary,
        "summary_all_seeds": summary_all,
        "baselines": baseline,
        "speed": speed,
        "reference": REFERENCE,
        "targets": TARGETS,
        "targets_met": met,
    }

    print()
    print("| seed | F1 | precision | recall | ROC-AUC | NaN | redrawn F1 ≥ 0.93 | redrawn F1 p05 / median | "
          "smurf energy | normals ≥ it | smurf dist / normal p99.9 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in per_seed:
        d, sm = r["redraws"], r["smurf"]
        tag = "" if r["protocol_seed"] else " (extra)"
        print(f"| {r['seed']}{tag} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['roc_auc']:.3f} | "
              f"{r['nan_scores']} | {d['share_f1_ge_target']:.0%} | {d['f1_p05']:.2f} / {d['f1_median']:.3f} | "
              f"{sm['median_energy']:.1f} | {sm['share_of_heldout_normal_at_or_above_median_energy']:.2%} | "
              f"{sm['relative_distance_median']:.2f} / {sm['normal_relative_distance_p99_9']:.2f} |")
    if baseline:
        print()
        print("| seed | " + " | ".join(f"{k}: redrawn F1 ≥ 0.93" for k in next(iter(baseline.values()))) + " |")
        print("|---|" + "---|" * len(next(iter(baseline.values()))))
        for seed, b in baseline.items():
            print(f"| {seed} | " + " | ".join(f"{v['share_f1_ge_target']:.0%}" for v in b.values()) + " |")
    print()
    print("| measure | Lantern | reference | target | met |")
    print("|---|---|---|---|---|")
    print(f"| F1 (min / mean over {args.seeds} seeds) | {summary['f1_min']:.4f} / {summary['f1_mean']:.4f} | "
          f"{REFERENCE['f1']} | ≥ {TARGETS['f1']} every seed | {met['f1_every_seed']} |")
    print(f"| ROC-AUC (min / mean) | {summary['roc_auc_min']:.4f} / {summary['roc_auc_mean']:.4f} | – | "
          f"≥ {TARGETS['roc_auc']} every seed | {met['roc_auc_every_seed']} |")
    print(f"| NaN scores | {summary['nan_scores_total']} | about half the seeds | 0 | {met['zero_nan']} |")
    print(f"| s / epoch, 50k rows, batch 1,024 | {speed['seconds_per_epoch_median_after_first']:.3f} "
          f"(first epoch {speed['first_epoch_seconds_incl_tracing']:.2f}) | {REFERENCE['seconds_per_epoch']} | "
          f"≥ {TARGETS['train_speedup']}× faster ({speed['train_speedup_vs_reference']:.1f}×) | "
          f"{met['train_speedup']} |")
    print(f"| scoring rows/s, 100k rows | {speed['score_rows_per_second_median']:,.0f} "
          f"(best {speed['score_rows_per_second_best']:,.0f}) | {REFERENCE['score_rows_per_second']:,.0f} | "
          f"≥ {TARGETS['score_speedup']}× ({speed['score_speedup_vs_reference']:.2f}×) | {met['score_speedup']} |")
    print(f"\nAll {len(per_seed)} seeds: F1 min {summary_all['f1_min']:.4f}, {summary_all['seeds_f1_below_target']} below "
          f"{TARGETS['f1']}; ROC-AUC min {summary_all['roc_auc_min']:.4f}; NaN {summary_all['nan_scores_total']}; "
          f"redrawn F1 ≥ {TARGETS['f1']} in {summary_all['redraw_share_f1_ge_target_mean']:.0%} of draws on average "
          f"(worst seed {summary_all['redraw_share_f1_ge_target_min']:.0%}); rows at the max_eucl cap: "
          f"{summary_all['rows_at_or_above_max_eucl']}")
    m = report["machine"]
    print(f"\nCPU: {m['cpu_model']}, {m['cores']} cores; load average before {load_before}, after {load_after}")
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=1))
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
