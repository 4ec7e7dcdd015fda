"""The `lantern` command in the process (engine.cli): files in, one scored row per input row out, in order;
bad inputs give exit status 2 and one line naming the problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.cli import main
from engine.saving import load_detector
from tests.cli_helpers import (
    FEATURES,
    make_aegmm_archive,
    make_distillation_archive,
    make_seq2seq_archive,
    read_any,
    run_lantern,
    tabular_frame,
)


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archives")
    return {
        "aegmm": make_aegmm_archive(folder / "aegmm.lantern.zip"),
        "unnamed": make_aegmm_archive(folder / "unnamed.lantern.zip", named=False),
        "seq2seq": make_seq2seq_archive(folder / "s2s.lantern.zip"),
        "distillation": make_distillation_archive(folder / "md.lantern.zip"),
    }


@pytest.fixture
def frame():
    return tabular_frame(300, seed=5)


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False) if path.suffix == ".parquet" else frame.to_csv(path, index=False)
    return path


def _score(capsys, *args) -> tuple[int, str, str]:
    code = main(["score", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix_in, suffix_out", [(".csv", ".csv"), (".parquet", ".parquet"), (".csv", ".parquet")])
def test_scores_every_row_in_input_order_and_matches_the_detector(archives, frame, tmp_path, capsys, suffix_in,
                                                                  suffix_out):
    source = _write(frame.iloc[::-1].reset_index(drop=True), tmp_path / f"in{suffix_in}")
    target = tmp_path / f"out{suffix_out}"
    code, out, err = _score(capsys, "--detector", archives["aegmm"], "--input", source, "--output", target,
                            "--batch-size", 64, "--keep", "id")
    assert code == 0, err
    scored = read_any(target)
    assert list(scored.columns) == ["row", "id", "instance_score", "is_outlier", "status"]
    assert scored["row"].tolist() == list(range(300))
    assert scored["id"].tolist() == frame["id"].iloc[::-1].tolist()
    detector = load_detector(archives["aegmm"])
    expected = detector.predict(frame.iloc[::-1][FEATURES].to_numpy(np.float32))["data"]
    np.testing.assert_allclose(scored["instance_score"], expected["instance_score"], rtol=1e-5, atol=1e-5)
    assert scored["is_outlier"].tolist() == expected["is_outlier"].astype(int).tolist()
    assert set(scored["status"]) == {"ok"}
    assert f"300 rows, {int(expected['is_outlier'].sum())} flagged" in out


def test_feature_scores_are_the_per_feature_reconstruction_errors(archives, frame, tmp_path, capsys):
    source = _write(frame, tmp_path / "in.parquet")
    code, _, err = _score(capsys, "--detector", archives["aegmm"], "--input", source, "--output",
                          tmp_path / "out.parquet", "--feature-scores", "--batch-size", 100)
    assert code == 0, err
    scored = pd.read_parquet(tmp_path / "out.parquet")
    expected = load_detector(archives["aegmm"]).feature_reconstruction_error(frame[FEATURES].to_numpy(np.float32))
    np.testing.assert_allclose(scored[[f"feature_score_{c}" for c in FEATURES]], expected, rtol=1e-5, atol=1e-6)


def test_columns_are_picked_by_the_names_the_archive_records_whatever_their_position(archives, frame, tmp_path,
                                                                                       capsys):
    shuffled = frame[["note", "d", "id", "b", "a", "c"]].assign(extra=1.0)
    code, _, err = _score(capsys, "--detector", archives["aegmm"], "--input", _write(shuffled, tmp_path / "s.csv"),
                          "--output", tmp_path / "o.csv")
    assert code == 0, err
    expected = load_detector(archives["aegmm"]).score(frame[FEATURES].to_numpy(np.float32))
    np.testing.assert_allclose(pd.read_csv(tmp_path / "o.csv")["instance_score"], expected, rtol=1e-5, atol=1e-5)


def test_an_archive_without_names_takes_the_numeric_columns_in_order_or_columns(archives, frame, tmp_path, capsys):
    source = _write(frame, tmp_path / "in.csv")
    code, _, err = _score(capsys, "--detector", archives["unnamed"], "--input", source, "--output", tmp_path / "o.csv")
    assert code == 0, err
    wide = _write(frame.assign(e=1.0), tmp_path / "wide.csv")
    code, _, err = _score(capsys, "--detector", archives["unnamed"], "--input", wide, "--output", tmp_path / "o.csv")
    assert code == 2 and "trained on 4 columns" in err and "--columns" in err
    code, _, err = _score(capsys, "--detector", archives["unnamed"], "--input", wide, "--output", tmp_path / "o.csv",
                          "--columns", "a,b,c,d")
    assert code == 0, err


def test_rows_with_a_missing_value_are_kept_with_empty_scores_and_a_status(archives, frame, tmp_path, capsys):
    frame.loc[[3, 10], "b"] = np.nan
    frame.loc[20, "d"] = np.inf
    code, out, err = _score(capsys, "--detector", archives["aegmm"], "--input", _write(frame, tmp_path / "in.csv"),
                            "--output", tmp_path / "o.csv")
    assert code == 0, err
    scored = pd.read_csv(tmp_path / "o.csv")
    assert len(scored) == 300
    assert scored.loc[3, "status"] == "skipped: missing value in 'b'"
    assert scored.loc[20, "status"] == "skipped: infinite or too large value in 'd'"
    assert scored.loc[[3, 10, 20], ["instance_score", "is_outlier"]].isna().all().all()
    assert scored.drop(index=[3, 10, 20])["instance_score"].notna().all()
    assert "3 skipped" in out


def test_seq2seq_streams_the_file_as_one_series_in_whole_windows(archives, tmp_path, capsys):
    t = np.arange(253) * 0.2
    series = pd.DataFrame({"time": np.arange(253), "s": np.sin(t), "c": np.cos(t)})
    series.loc[100, "s"] = 4.0
    source = _write(series, tmp_path / "series.csv")
    code, _, err = _score(capsys, "--detector", archives["seq2seq"], "--input", source, "--output",
                          tmp_path / "o.csv", "--batch-size", 7, "--feature-scores", "--keep", "time")
    assert code == 0, err
    scored = pd.read_csv(tmp_path / "o.csv")
    fscore, iscore = load_detector(archives["seq2seq"]).score(series[["s", "c"]].to_numpy(np.float32))
    assert scored["time"].tolist() == list(range(253))
    np.testing.assert_allclose(scored["instance_score"], iscore, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scored[["feature_score_s", "feature_score_c"]], fscore, rtol=1e-4, atol=1e-5)
    assert scored["is_outlier"].tolist() == (iscore > 0).astype(int).tolist()


def test_seq2seq_refuses_a_gap_in_the_series(archives, tmp_path, capsys):
    series = pd.DataFrame({"s": np.sin(np.arange(50.0)), "c": np.cos(np.arange(50.0))})
    series.loc[30, "c"] = np.nan
    code, _, err = _score(capsys, "--detector", archives["seq2seq"], "--input", _write(series, tmp_path / "s.csv"),
                          "--output", tmp_path / "o.csv")
    assert code == 2 and "row 30" in err and "'c'" in err
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.csv.partial").exists()


def test_model_distillation_flags_are_its_is_adversarial(archives, frame, tmp_path, capsys):
    code, _, err = _score(capsys, "--detector", archives["distillation"], "--input",
                          _write(frame, tmp_path / "in.csv"), "--output", tmp_path / "o.csv")
    assert code == 0, err
    payload = load_detector(archives["distillation"]).predict(frame[FEATURES].to_numpy(np.float32))["data"]
    scored = pd.read_csv(tmp_path / "o.csv")
    np.testing.assert_allclose(scored["instance_score"], payload["instance_score"], rtol=1e-5, atol=1e-6)
    assert scored["is_outlier"].tolist() == payload["is_adversarial"].astype(int).tolist()
    code, _, err = _score(capsys, "--detector", archives["distillation"], "--input", tmp_path / "in.csv",
                          "--output", tmp_path / "o.csv", "--feature-scores")
    assert code == 2 and "no feature-level scores" in err


def test_a_file_with_only_a_header_gives_an_output_with_only_a_header(archives, frame, tmp_path, capsys):
    code, out, err = _score(capsys, "--detector", archives["aegmm"], "--input",
                            _write(frame.iloc[:0], tmp_path / "h.csv"), "--output", tmp_path / "o.parquet")
    assert code == 0, err
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == 0 and "0 rows" in out


# -- bad inputs: exit status 2, one line that names the problem -----------------------------------


def _fails(capsys, archives, tmp_path, *args, detector="aegmm") -> str:
    code, out, err = _score(capsys, "--detector", archives.get(detector, detector), *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lantern: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_a_missing_column_is_refused_by_name(archives, frame, tmp_path, capsys):
    source = _write(frame.drop(columns="c"), tmp_path / "in.csv")
    message = _fails(capsys, archives, tmp_path, "--input", source, "--output", tmp_path / "o.csv")
    assert "has no column 'c'" in message


def test_text_in_a_feature_column_is_refused_by_name(archives, frame, tmp_path, capsys):
    frame["b"] = frame["b"].astype(object)
    frame.loc[2, "b"] = "oops"
    source = _write(frame, tmp_path / "in.csv")
    message = _fails(capsys, archives, tmp_path, "--input", source, "--output", tmp_path / "o.csv")
    assert "column 'b' is not numeric" in message


def test_text_far_down_a_feature_column_is_refused_by_name(archives, frame, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("engine.cli.io.CSV_BLOCK_BYTES", 2048)  # types are inferred from the first block
    frame["c"] = frame["c"].astype(object)
    frame.loc[280, "c"] = "n/a?"
    source = _write(frame, tmp_path / "in.csv")
    message = _fails(capsys, archives, tmp_path, "--input", source, "--output", tmp_path / "o.csv",
                     "--batch-size", 50)
    assert "column 'c' holds text" in message and "n/a?" in message
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.csv.partial").exists()


def test_text_in_a_parquet_feature_column_is_refused_by_name(archives, frame, tmp_path, capsys):
    source = _write(frame.assign(a=frame["a"].astype(str)), tmp_path / "in.parquet")
    message = _fails(capsys, archives, tmp_path, "--input", source, "--output", tmp_path / "o.csv")
    assert "column 'a' is not numeric" in message


def test_an_empty_file_is_refused(archives, tmp_path, capsys):
    (tmp_path / "empty.csv").write_bytes(b"")
    message = _fails(capsys, archives, tmp_path, "--input", tmp_path / "empty.csv", "--output", tmp_path / "o.csv")
    assert "is empty" in message


def test_a_file_that_is_not_an_archive_is_refused(archives, frame, tmp_path, capsys):
    (tmp_path / "fake.zip").write_bytes(b"PK not really")
    message = _fails(capsys, archives, tmp_path, "--input", _write(frame, tmp_path / "in.csv"),
                     "--output", tmp_path / "o.csv", detector=str(tmp_path / "fake.zip"))
    assert "not a Lantern archive" in message and "fake.zip" in message


@pytest.mark.parametrize("which", ["input", "detector"])
def test_a_missing_file_is_refused(archives, frame, tmp_path, capsys, which):
    paths = {"input": _write(frame, tmp_path / "in.csv"), "detector": archives["aegmm"]}
    paths[which] = tmp_path / "nope.csv"
    message = _fails(capsys, archives, tmp_path, "--input", paths["input"], "--output", tmp_path / "o.csv",
                     detector=str(paths["detector"]))
    assert "nope.csv: no such file" in message


def test_an_unknown_extension_is_refused(archives, frame, tmp_path, capsys):
    message = _fails(capsys, archives, tmp_path, "--input", _write(frame, tmp_path / "in.csv"),
                     "--output", tmp_path / "o.xlsx")
    assert "'.xlsx'" in message and ".parquet" in message


# -- the command itself ----------------------------------------------------------------------------


def test_help_explains_every_command_with_an_example():
    lantern = Path(sys.executable).with_name("lantern")
    command = [str(lantern)] if lantern.exists() else [sys.executable, "-m", "engine"]
    for sub in ([], ["score"], ["explain"]):
        done = subprocess.run([*command, *sub, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "examples:" in done.stdout and "lantern " in done.stdout.split("examples:")[1]


def test_no_command_and_bad_options_are_usage_errors(capsys):
    assert main([]) == 2
    with pytest.raises(SystemExit) as stop:
        main(["score", "--input", "x.csv"])
    assert stop.value.code == 2


def test_a_run_in_a_fresh_interpreter_never_imports_ray(archives, frame, tmp_path):
    source = _write(frame, tmp_path / "in.csv")
    code = ("import sys; from engine.cli import main; rc = main(sys.argv[1:]); "
            "print('RAY' if 'ray' in sys.modules else 'NO-RAY'); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, "score", "--detector", str(archives["aegmm"]), "--input",
                           str(source), "--output", str(tmp_path / "o.csv")], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "NO-RAY"
    assert "300 rows" in done.stdout


def test_python_dash_m_engine_exits_2_with_one_line_for_a_bad_input(tmp_path):
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    done = run_lantern("score", "--detector", tmp_path / "missing.zip", "--input", tmp_path / "in.csv",
                       "--output", tmp_path / "o.csv")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"lantern: error: detector {tmp_path / 'missing.zip'}: no such file."]
    assert json is not None


def test_an_archive_exported_by_the_app_pages_is_scored_by_its_column_names(archives, frame, tmp_path, capsys):
    """The Tabular and Time-series outliers pages export ``to_bytes(threshold=..., feature_names_=columns)``."""
    from engine.saving import detector_to_bytes
    from workflows.tabular import DetectorArchive

    held = DetectorArchive(detector_to_bytes(load_detector(archives["unnamed"])))
    exported = tmp_path / "from-the-app.lantern.zip"
    exported.write_bytes(held.to_bytes(threshold=1.5, feature_names_=["d", "c", "b", "a"]))
    assert load_detector(exported).feature_names_ == ["d", "c", "b", "a"]
    code, _, err = _score(capsys, "--detector", exported, "--input", _write(frame.assign(e=0.0), tmp_path / "i.csv"),
                          "--output", tmp_path / "o.csv")
    assert code == 0, err
    expected = load_detector(archives["unnamed"]).score(frame[["d", "c", "b", "a"]].to_numpy(np.float32))
    np.testing.assert_allclose(pd.read_csv(tmp_path / "o.csv")["instance_score"], expected, rtol=1e-5, atol=1e-5)


def test_rows_that_come_back_out_of_order_from_ray_are_put_back_in_order_by_their_numbers():
    import pyarrow as pa

    from engine.cli.ray_backend import ROW_KEY, _contiguous_runs

    table = pa.table({ROW_KEY: [7, 8, 3, 4, 5, 9], "x": ["h", "i", "d", "e", "f", "j"]})
    runs = [(first, run.column("x").to_pylist()) for first, run in _contiguous_runs(table)]
    assert runs == [(3, ["d", "e", "f"]), (7, ["h", "i", "j"])]


def test_seq2seq_on_ray_is_refused_before_ray_starts(archives, tmp_path, capsys):
    series = pd.DataFrame({"s": np.sin(np.arange(50.0)), "c": np.cos(np.arange(50.0))})
    code, _, err = _score(capsys, "--detector", archives["seq2seq"], "--input", _write(series, tmp_path / "s.csv"),
                          "--output", tmp_path / "o.csv", "--ray", "local")
    assert code == 2 and "runs in the process; leave out --ray" in err
    assert "ray" not in sys.modules or not __import__("ray").is_initialized()


@pytest.mark.parametrize("address, message", [("127.0.0.1:9", "no Ray head answers there"),
                                              ("nonsense", "expected 'local', 'auto' or the head node's HOST:PORT")])
def test_a_ray_address_where_no_head_listens_is_refused_at_once(archives, frame, tmp_path, capsys, address, message):
    code, _, err = _score(capsys, "--detector", archives["aegmm"], "--input", _write(frame, tmp_path / "i.csv"),
                          "--output", tmp_path / "o.csv", "--ray", address)
    assert code == 2 and message in err
