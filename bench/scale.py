"""Benchmark of `lantern score` at scale: a generated file of millions of rows through an AEGMM archive,
in the process and on a local Ray runtime with 1 and 2 workers.

Protocol:

- data: ``--rows`` rows (10,000,000 by default) of 18 KDD-like continuous features (lognormal byte
  counts, rates in [0, 1], small counts; 1 % of rows shifted far away) plus an ``id`` column, written
  as Parquet (row groups of 1,048,576 rows, snappy) in chunks, so making it needs little memory;
- detector: an OutlierAEGMM (default networks, standardised) trained for 3 epochs on 20,000 rows of
  the same distribution, threshold at the 95th percentile, saved with its feature names;
- runs: ``python -m engine score --detector A --input F --output O.parquet --keep id`` in a fresh
  interpreter, each mode once: in the process; ``--ray local --workers 1``; ``--ray local --workers 2``;
  default batch size (65,536 rows);
- figures: rows/s end to end (wall clock of the whole command, start-up included) and as the command
  reports it (from its first batch read to the last row written); the peak RSS of every process of
  the run (sampled every 0.25 s from /proc: ``VmHWM`` while a process lives), the largest one and
  the largest sum over the run's processes at one time; outputs compared with the in-process one;
- the machine's load average before each run, and how many CPUs it has, since other jobs may share it.

Run: ``.venv/bin/python bench/scale.py [--rows 10000000] [--workers 1 2] [--keep-files]``;
writes bench/results/scale.json and prints a markdown table. Files go to artifacts/scale/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine_info import cpu_model, load_average  # noqa: E402

FEATURES = [
    "duration", "src_bytes", "dst_bytes", "wrong_fragment", "urgent", "hot", "num_failed_logins",
    "num_compromised", "count", "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate",
    "srv_rerror_rate", "same_srv_rate", "diff_srv_rate", "dst_host_count", "dst_host_srv_count",
]
CHUNK_ROWS = 500_000


def generate(n_rows: int, seed: int) -> "pd.DataFrame":  # noqa: F821
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns = {
        "duration": rng.exponential(2.0, n_rows),
        "src_bytes": rng.lognormal(6, 1.5, n_rows),
        "dst_bytes": rng.lognormal(7, 2.0, n_rows),
        "wrong_fragment": rng.poisson(0.01, n_rows).astype(float),
        "urgent": rng.poisson(0.001, n_rows).astype(float),
        "hot": rng.poisson(0.2, n_rows).astype(float),
        "num_failed_logins": rng.poisson(0.01, n_rows).astype(float),
        "num_compromised": rng.poisson(0.02, n_rows).astype(float),
        "count": rng.integers(1, 512, n_rows).astype(float),
        "srv_count": rng.integers(1, 512, n_rows).astype(float),
    }
    for name in FEATURES[10:16]:
        columns[name] = rng.beta(0.5, 2.0, n_rows)
    columns["dst_host_count"] = rng.integers(0, 256, n_rows).astype(float)
    columns["dst_host_srv_count"] = rng.integers(0, 256, n_rows).astype(float)
    frame = pd.DataFrame(columns)[FEATURES]
    outliers = rng.random(n_rows) < 0.01
    frame.loc[outliers, "src_bytes"] *= 1000.0
    frame.loc[outliers, "serror_rate"] = 1.0
    return frame


def write_input(path: Path, n_rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for start in range(0, n_rows, CHUNK_ROWS):
        size = min(CHUNK_ROWS, n_rows - start)
        frame = generate(size, seed=start)
        frame.insert(0, "id", np.arange(start, start + size, dtype=np.int64))
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=1_048_576)
    writer.close()


def train_archive(path: Path) -> float:
    from engine.od import OutlierAEGMM
    from engine.saving import save_detector

    X = generate(20_000, seed=12345).to_numpy(np.float32)
    started = time.perf_counter()
    detector = OutlierAEGMM().fit(X, epochs=3, batch_size=1024, verbose=False, seed=0, standardize=True)
    detector.infer_threshold(X, threshold_perc=95)
    save_detector(detector, path, feature_names=FEATURES)
    return time.perf_counter() - started


def _tree(pid: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [pid], [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.append(child)
                frontier.append(child)
    return found


def _status(pid: int) -> tuple[str, int, int] | None:
    """(name, VmRSS KiB, VmHWM KiB) of a live process."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    rss = int(fields.get("VmRSS", "0 kB").split()[0])
    hwm = int(fields.get("VmHWM", "0 kB").split()[0])
    return (cmd[:80] or fields.get("Name", "?").strip()), rss, hwm


def run_measured(command: list[str]) -> dict:
    """Run ``command``, sampling the memory of its whole process tree until it ends."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    peaks: dict[int, tuple[str, int]] = {}
    peak_total = [0]

    def sample() -> None:
        while proc.poll() is None:
            total = 0
            for pid in _tree(proc.pid):
                status = _status(pid)
                if status is None:
                    continue
                name, rss, hwm = status
                total += rss
                if hwm >= peaks.get(pid, ("", 0))[1]:
                    peaks[pid] = (name, hwm)
            peak_total[0] = max(peak_total[0], total)
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{err[-3000:]}")
    summary = out.strip().splitlines()[-1]
    processes = sorted(({"pid": pid, "command": name, "peak_rss_mib": round(hwm / 1024, 1)}
                        for pid, (name, hwm) in peaks.items()), key=lambda p: -p["peak_rss_mib"])
    return {"wall_s": round(wall, 1), "summary": summary, "processes": processes,
            "largest_process_peak_rss_mib": processes[0]["peak_rss_mib"] if processes else None,
            "peak_total_rss_mib": round(peak_total[0] / 1024, 1)}


def _reported(summary: str) -> tuple[float, float, float]:
    """(rows/s, seconds, seconds to the first batch) from the command's summary line:
    "lantern score: 10,000,000 rows, 99,012 flagged, 61.2 s (163,398 rows/s; first batch after 9.1 s) -> ..."."""
    rate = float(summary.split("(")[1].split(" rows/s")[0].replace(",", ""))
    seconds = float(summary.split(" s (")[0].rsplit(", ", 1)[1])
    first = float(summary.split("first batch after ")[1].split(" s)")[0])
    return rate, seconds, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--keep-files", action="store_true", help="keep the generated input and the outputs")
    args = parser.parse_args()
    folder = ROOT / "artifacts" / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"input_{args.rows}.parquet"
    archive = folder / "aegmm.lantern.zip"
    result: dict = {"rows": args.rows, "format": "parquet", "cpus": os.cpu_count(), "cpu": cpu_model(),
                    "python": sys.version.split()[0], "runs": {}}
    if not source.exists():
        started = time.perf_counter()
        write_input(source, args.rows)
        result["generate_s"] = round(time.perf_counter() - started, 1)
    result["input_mib"] = round(source.stat().st_size / 2**20, 1)
    result["train_s"] = round(train_archive(archive), 1)
    modes = [("in-process", [])] + [(f"ray-local-{w}", ["--ray", "local", "--workers", str(w)]) for w in args.workers]
    reference = None
    for name, extra in modes:
        output = folder / f"scores_{name}.parquet"
        command = [sys.executable, "-m", "engine", "score", "--detector", str(archive), "--input", str(source),
                   "--output", str(output), "--keep", "id", *extra]
        load = load_average()
        run = run_measured(command)
        run["load_average_before"] = load
        run["load_average_after"] = load_average()
        run["rows_per_s_end_to_end"] = round(args.rows / run["wall_s"])
        rate, seconds, first = _reported(run["summary"])
        run["rows_per_s_reported"] = rate
        run["first_batch_s"] = first
        # After start-up (the first batch back): the pipeline's steady rate.
        run["rows_per_s_after_first_batch"] = round(args.rows / max(seconds - first, 1e-9))
        run["command"] = " ".join(["lantern", *command[3:]]).replace(str(ROOT) + "/", "")
        import pyarrow.parquet as pq

        scores = pq.read_table(output, columns=["row", "instance_score", "is_outlier"])
        if reference is None:
            reference = scores
        else:
            run["same_output_as_in_process"] = bool(scores.equals(reference))
        del scores
        result["runs"][name] = run
        print(f"{name}: {run['summary']} | wall {run['wall_s']} s | largest process "
              f"{run['largest_process_peak_rss_mib']} MiB | sum {run['peak_total_rss_mib']} MiB | load {load}",
              flush=True)
        if not args.keep_files:
            output.unlink()
    base = result["runs"]["in-process"]
    for name, run in result["runs"].items():
        run["ratio_to_in_process_end_to_end"] = round(run["rows_per_s_end_to_end"] / base["rows_per_s_end_to_end"], 3)
        run["ratio_to_in_process_reported"] = round(run["rows_per_s_reported"] / base["rows_per_s_reported"], 3)
        run["ratio_to_in_process_after_first_batch"] = round(
            run["rows_per_s_after_first_batch"] / base["rows_per_s_after_first_batch"], 3)
    if not args.keep_files:
        source.unlink()
    out = ROOT / "bench" / "results" / "scale.json"
    out.write_text(json.dumps(result, indent=1))
    print("\n| mode | rows/s end to end | rows/s reported | rows/s after first batch (first batch s) | ratio e2e / "
          "reported / after first | largest process peak RSS | sum of RSS | load before |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in result["runs"].items():
        print(f"| {name} | {run['rows_per_s_end_to_end']:,} | {run['rows_per_s_reported']:,.0f} | "
              f"{run['rows_per_s_after_first_batch']:,} ({run['first_batch_s']}) | "
              f"{run['ratio_to_in_process_end_to_end']} / {run['ratio_to_in_process_reported']} / "
              f"{run['ratio_to_in_process_after_first_batch']} | "
              f"{run['largest_process_peak_rss_mib']} MiB | {run['peak_total_rss_mib']} MiB | "
              f"{run['load_average_before']} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
