"""How long the first explanation / scoring call takes compared with the next ones (issue: the first answer).

On the pages (through Streamlit's AppTest, the page's own jobs, so everything the page does is counted):

- Contrastive explanations on iris and on digits: train the classifier with the page's defaults, then explain
  test row 0 and then rows 1 and 2 (PN and PP, the page's default settings); the time is the explanation job's
  own duration (``Job.seconds``), i.e. what the user waits after pressing the button.
- Anchors on Adult: train the page's forest (on 5,000 rows, to keep the run short), explain test row 0, then
  rows 1 and 2.

In the engine (the scoring call after training that every page makes): ``OutlierAEGMM`` on 50,000 training
rows then ``score`` of 100,000 rows; ``OutlierSeq2Seq`` on the synthetic sine protocol then ``score`` of 20,000
steps; ``ModelDistillation`` of a small dense teacher then ``score`` of 2,000 rows; each timed for the first
call after ``fit`` and for the median of five more.

Run: ``.venv/bin/python bench/first_call.py``; writes ``bench/results/first_call.json`` and prints a table.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

from machine_info import cpu_model, load_average  # noqa: E402
from tests.app.helpers import page, run_until_job_done  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "first_call.json"


def _job_seconds(at, key: str) -> float:
    job = at.session_state[f"job::{key}"]
    assert job.state == "done", job.error
    return float(job.seconds)


def page_first_and_next(name: str, setup) -> dict:
    """Train on page ``name`` (after ``setup(at)`` set its inputs), then explain test rows 0, 1 and 2."""
    at = page(name, timeout=300)
    at.run()
    setup(at)
    at.button(key=f"{name}:train").click()
    at.run()
    run_until_job_done(at, f"{name}-model", timeout=600)
    train = _job_seconds(at, f"{name}-model")
    times = []
    for row in (0, 1, 2):
        at.number_input(key=f"{name}:row").set_value(row)
        at.button(key=f"{name}:explain").click()
        at.run()
        run_until_job_done(at, f"{name}-explain", timeout=600)
        times.append(_job_seconds(at, f"{name}-explain"))
    return {"train_job_s": train, "first_s": times[0], "next_s": times[1:]}


def cem_page(dataset: str | None) -> dict:
    def setup(at):
        if dataset is not None:
            at.selectbox(key="cem:dataset").set_value(dataset).run()

    return page_first_and_next("cem", setup)


def anchors_page() -> dict:
    return page_first_and_next("anchors", lambda at: at.number_input(key="anchors:max_train").set_value(5000))


def _first_and_steady(score) -> dict:
    t0 = time.perf_counter()
    score()
    first = time.perf_counter() - t0
    steady = []
    for _ in range(5):
        t0 = time.perf_counter()
        score()
        steady.append(time.perf_counter() - t0)
    return {"first_s": first, "next_s": steady, "steady_median_s": statistics.median(steady)}


def engine_scoring() -> dict:
    from aegmm_kdd import reference_networks
    from seq2seq import SEQ_LEN, synthetic_series

    from engine.od import OutlierAEGMM, OutlierSeq2Seq

    rng = np.random.default_rng(0)
    X = (rng.normal(size=(50_000, 18)) * 3 + 1).astype(np.float32)
    aegmm = OutlierAEGMM(n_gmm=2, **reference_networks(0)).fit(X, epochs=1, batch_size=1024, verbose=False, seed=0)
    rows = (rng.normal(size=(100_000, 18)) * 3 + 1).astype(np.float32)
    out = {"aegmm_100k": _first_and_steady(lambda: aegmm.score(rows))}
    out["aegmm_100k"]["rows_per_s_steady"] = 100_000 / out["aegmm_100k"]["steady_median_s"]
    s2s = OutlierSeq2Seq(n_features=2, seq_len=SEQ_LEN, latent_dim=100)
    s2s.fit(synthetic_series(20_000, rng), epochs=1, batch_size=64, verbose=False, seed=0)
    series = synthetic_series(20_000, rng)
    out["seq2seq_20k_steps"] = _first_and_steady(lambda: s2s.score(series))

    import keras

    from engine.ad import ModelDistillation

    digits = rng.random((2000, 64)).astype(np.float32)
    teacher = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                                keras.layers.Dense(10, activation="softmax")])
    ad = ModelDistillation(model=teacher)
    ad.fit(digits, epochs=1, batch_size=128, verbose=False, seed=0)
    out["distillation_2k"] = _first_and_steady(lambda: ad.score(digits))
    return out


def main() -> None:
    load_before = load_average()
    report = {"command": "bench/first_call.py", "cpu": cpu_model(), "cores": os.cpu_count(),
              "load_average_before": load_before}
    report["cem_iris"] = cem_page(None)
    print("CEM iris", report["cem_iris"], flush=True)
    report["cem_digits"] = cem_page("bundled:digits")
    print("CEM digits", report["cem_digits"], flush=True)
    report["anchors_adult"] = anchors_page()
    print("Anchors Adult", report["anchors_adult"], flush=True)
    report["engine"] = engine_scoring()
    print("engine", json.dumps(report["engine"], default=float), flush=True)
    report["load_average_after"] = load_average()
    RESULTS.write_text(json.dumps(report, indent=2, default=float))
    print(f"\nCPU: {report['cpu']} x {report['cores']}; load average before {load_before}, after "
          f"{report['load_average_after']}\n")
    print("| what | first | next (median) |")
    print("|---|---|---|")
    for name in ("cem_iris", "cem_digits", "anchors_adult"):
        r = report[name]
        print(f"| {name} explanation (job seconds) | {r['first_s']:.2f} s | {statistics.median(r['next_s']):.2f} s |")
    for name, r in report["engine"].items():
        print(f"| {name} score | {r['first_s'] * 1e3:.0f} ms | {r['steady_median_s'] * 1e3:.0f} ms |")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
