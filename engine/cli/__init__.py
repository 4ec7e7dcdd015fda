"""The ``lantern`` command: score and explain files far larger than a browser upload.

``lantern score`` streams a CSV / Parquet file through a detector archive exported by the app;
``lantern explain anchors|cem`` writes one explanation per row of a file as JSON lines. Both run in
this process by default and on Ray with ``--ray local`` (a runtime started for the run) or
``--ray ADDRESS`` (an existing cluster). Without ``--ray``, Ray is not even imported.

Exit status: 0 on success, 2 for a bad command line or a bad input (one line on stderr, no
traceback), 1 for anything unexpected.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import textwrap

from engine.cli.io import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_MAIN_EXAMPLE = """\
examples:
  lantern score --detector aegmm.lantern.zip --input march.parquet --output march-scores.parquet
  lantern score --detector aegmm.lantern.zip --input march.csv --output scores.csv --ray local
  lantern explain anchors --model model.onnx --train train.csv --input rows.csv --output anchors.jsonl

Run `lantern COMMAND --help` for each command's options."""

_SCORE_EXAMPLE = """\
output: one row per input row, in input order: row, [--keep columns], instance_score,
is_outlier (0/1), status ('ok' or why the row was skipped: its scores are then empty), and
feature_score_<column> with --feature-scores. Feature columns are taken by the names the archive
records; for an archive without names, --columns, or else the input's numeric columns in order.

examples:
  lantern score --detector aegmm.lantern.zip --input march.csv --output scores.csv
  lantern score --detector aegmm.lantern.zip --input big.parquet --output scores.parquet \\
      --feature-scores --keep id --ray local --workers 2
  lantern score --detector s2s.lantern.zip --input sensor.csv --output flagged.csv --columns temp,pressure"""

_EXPLAIN_EXAMPLE = """\
output: one JSON line per row of --input, in input order: {"row": i, "explanation": <the
explanation JSON the app exports>} (or {"row": i, "error": "..."} for a row that could not be explained).
The model file is trusted: you run the command on your own files (Keras .keras and scikit-learn .skops
load too, not only ONNX).

examples:
  lantern explain anchors --model model.onnx --train train.csv --input rows.csv --output anchors.jsonl
  lantern explain cem --model model.keras --train train.parquet --input rows.parquet --output cem.jsonl \\
      --ray local --workers 2"""


def _ray_help() -> str:
    return ("run on Ray: 'local' starts a runtime for this run (no dashboard, bounded object store) and stops it "
            "at the end; an ADDRESS (host:port of a head node, or 'auto') joins a running cluster")


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="lantern", formatter_class=formatter,
        description="Score and explain CSV / Parquet files with Lantern detectors and explainers.",
        epilog=_MAIN_EXAMPLE)
    from engine.version import __version__

    parser.add_argument("--version", action="version", version=f"lantern {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    score = commands.add_parser(
        "score", formatter_class=formatter, epilog=_SCORE_EXAMPLE,
        help="score every row of a file with a detector archive",
        description="Score every row of a CSV / Parquet file with a detector archive exported by the app "
                    "(OutlierAEGMM, OutlierSeq2Seq, ModelDistillation), streaming it in batches.")
    score.add_argument("--detector", required=True, metavar="ARCHIVE", help="detector archive (.lantern.zip)")
    score.add_argument("--input", required=True, metavar="FILE", help="rows to score: .csv or .parquet")
    score.add_argument("--output", required=True, metavar="FILE", help="scores to write: .csv or .parquet")
    score.add_argument("--columns", metavar="A,B,C", help="feature columns, in the detector's order "
                       "(default: the names the archive records, else every numeric column)")
    score.add_argument("--keep", metavar="A,B", help="input columns to copy into the output (e.g. an id)")
    score.add_argument("--feature-scores", action="store_true", help="add feature_score_<column> columns")
    score.add_argument("--batch-size", type=int, default=65_536, metavar="N", help="rows per batch (default 65536)")
    _add_ray_arguments(score)
    score.set_defaults(run=_run_score)

    explain = commands.add_parser(
        "explain", formatter_class=formatter, epilog=_EXPLAIN_EXAMPLE,
        help="explain a classifier's prediction for every row of a file",
        description="Explain a classifier's prediction for every row of a file with AnchorTabular (anchors) or "
                    "CEM (cem); one JSON line per row.")
    explain.add_argument("method", choices=("anchors", "cem"), help="the explainer")
    explain.add_argument("--model", required=True, metavar="MODEL",
                         help="classifier file: .onnx, .keras or .skops (trusted: your own file)")
    explain.add_argument("--train", required=True, metavar="FILE",
                         help="training rows (.csv/.parquet) the explainer is fitted on (the first 100,000 "
                              "complete rows)")
    explain.add_argument("--input", required=True, metavar="FILE", help="rows to explain: .csv or .parquet")
    explain.add_argument("--output", required=True, metavar="FILE.jsonl", help="explanations, one JSON per line")
    explain.add_argument("--columns", metavar="A,B,C", help="feature columns (default: the model's feature "
                         "names, else every numeric column)")
    explain.add_argument("--threshold", type=float, default=0.95, help="anchors: precision threshold (default 0.95)")
    explain.add_argument("--mode", choices=("PN", "PP"), default="PN", help="cem: pertinent negative or positive")
    explain.add_argument("--seed", type=int, default=0, help="random seed of every explanation (default 0)")
    explain.add_argument("--batch-size", type=int, default=16, metavar="N", help="rows per task on Ray (default 16)")
    _add_ray_arguments(explain)
    explain.set_defaults(run=_run_explain)
    return parser


def _add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", metavar="local|ADDRESS", help=_ray_help())
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="Ray workers (actors) to use (default: 1 per CPU of the local runtime, 2 on a cluster)")
    parser.add_argument("--node-column", action="store_true", help=argparse.SUPPRESS)


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("an empty list of column names was given.")
    return names


def _progress(total: int | None, unit: str = "rows"):
    from tqdm import tqdm

    # disable=None: a bar only on a terminal; scripts and CI logs get just the summary line.
    return tqdm(total=total, unit=f" {unit}", unit_scale=True, dynamic_ncols=True, disable=None, file=sys.stderr,
                smoothing=0.1)


@contextlib.contextmanager
def _native_stderr_held():
    """Hold back what native libraries write to stderr (TensorFlow's start-up log lines) while importing them.

    The lines are shown after all if the import fails; a command-line user otherwise sees only the
    progress bar, the summary and, on failure, one line saying what was wrong.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_engine() -> None:
    """Import TensorFlow and the algorithm modules."""
    import engine.ad  # noqa: F401
    import engine.explainers  # noqa: F401
    import engine.od  # noqa: F401


def _run_score(args: argparse.Namespace) -> int:
    from engine.cli import io

    input_path = io.check_readable(args.input, "input")
    io.file_format(args.input, "input")
    writer = io.TableWriter(args.output)
    archive_path = io.check_readable(args.detector, "detector")
    archive = archive_path.read_bytes()
    from engine.errors import ArchiveError

    try:
        with _native_stderr_held():  # TensorFlow's start-up lines (imports, first network built)
            import_engine()
            from engine.saving import load_detector

            detector = load_detector(archive)
    except ArchiveError as exc:
        raise UsageError(f"detector {archive_path}: {exc}") from exc
    from engine.cli import score

    schema = io.schema(input_path)
    plan = score.plan_score(detector, input_path, schema, columns=_names(args.columns), keep=_names(args.keep),
                            feature_scores=args.feature_scores, batch_size=args.batch_size)
    out_schema = plan.output_schema(schema)
    if args.node_column and not args.ray:
        raise UsageError("--node-column needs --ray.")
    try:
        with _progress(io.count_rows(input_path)) as bar:
            if args.ray:
                from engine.cli import ray_backend

                summary = ray_backend.score_on_ray(archive, plan, input_path, writer, bar, address=args.ray,
                                                   workers=args.workers, node_column=args.node_column)
            else:
                summary = score.score_in_process(detector, plan, input_path, writer, bar)
        writer.close(out_schema)
    except BaseException:
        writer.abort()
        raise
    print(summary.line(args.output))
    return EXIT_OK


def _run_explain(args: argparse.Namespace) -> int:
    from engine.cli import explain

    return explain.run(args, _names, _progress)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lantern`` console script (and ``python -m engine``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from engine.errors import ArchiveError, DataError, LanternError

    try:
        return args.run(args)
    except (UsageError, DataError, ArchiveError) as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _fail("interrupted; no output file was written.")
        return 130
    except LanternError as exc:
        _fail(str(exc))
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback, is what a command-line user needs
        _fail(f"failed: {type(exc).__name__}: {_one_line(exc)}")
        return EXIT_FAILED


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return textwrap.shorten(text, 400, placeholder=" …") if text else type(exc).__name__


def _fail(message: str) -> None:
    print(f"lantern: error: {_one_line(Exception(message))}", file=sys.stderr)


__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_USAGE", "EXIT_FAILED"]
