"""Streaming CSV / Parquet for the ``lantern`` command: read in bounded batches, write incrementally.

Files are chosen by extension (``.csv``, ``.parquet`` / ``.pq``). CSV goes through Arrow's streaming
reader (the same parser Ray Data uses, so both paths see the same numbers); Parquet through
``ParquetFile.iter_batches``. Only the columns a command needs are read, and never more than one
batch of rows (plus one reader block) is held at a time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.errors import DataError

CSV_BLOCK_BYTES = 8 * 1024 * 1024
_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class UsageError(Exception):
    """A bad command line or input file: the command prints the message and exits with status 2."""


def file_format(path: str | Path, what: str) -> str:
    """``'csv'`` or ``'parquet'`` from the extension of ``path``; a :class:`UsageError` otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise UsageError(f"{what} {path}: unknown extension {suffix or '(none)'!r}; use .csv or .parquet.")
    return _EXTENSIONS[suffix]


def check_readable(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} {path}: no such file.")
    return path


def schema(path: str | Path) -> pa.Schema:
    """Column names and types of a CSV (types inferred from its first block) or a Parquet file."""
    path = Path(path)
    if file_format(path, "input") == "parquet":
        try:
            return pq.ParquetFile(path).schema_arrow
        except (pa.ArrowInvalid, OSError) as exc:
            raise UsageError(f"input {path} is not a readable Parquet file ({exc}).") from exc
    if path.stat().st_size == 0:
        raise UsageError(f"input {path} is empty.")
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES))
        return reader.schema
    except pa.ArrowInvalid as exc:
        raise UsageError(f"input {path} is not a readable CSV file ({_first_line(exc)}).") from exc


def count_rows(path: str | Path) -> int | None:
    """Rows in the file, cheaply: Parquet metadata, or newlines of a CSV (minus the header); None if unknown."""
    path = Path(path)
    if file_format(path, "input") == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    newlines, last = 0, b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(16 * 1024 * 1024):
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    lines = newlines + (last != b"\n")
    return max(lines - 1, 0)


def csv_convert_options(columns: list[str], numeric: list[str]) -> pacsv.ConvertOptions:
    """Read only ``columns``; ``numeric`` ones as float64 (blank, NA, nan → null; text → an error naming it)."""
    return pacsv.ConvertOptions(
        include_columns=columns,
        column_types={name: pa.float64() for name in numeric},
        strings_can_be_null=False,
    )


def read_batches(path: str | Path, columns: list[str], numeric: list[str], batch_size: int,
                 row_group: int | None = None) -> Iterator[pa.Table]:
    """Tables of ``batch_size`` rows (the last one shorter) holding ``columns``, in file order.

    ``row_group`` reads only that row group of a Parquet file (see :func:`read_units`).
    """
    path = Path(path)
    if file_format(path, "input") == "parquet":
        # Without pre-buffering, a row group is read a few MiB at a time instead of all at once.
        reader = pq.ParquetFile(path, pre_buffer=False, buffer_size=4 * 1024 * 1024)
        groups = None if row_group is None else [row_group]
        source = (b for b in reader.iter_batches(batch_size=batch_size, columns=columns, row_groups=groups))
    else:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            convert_options=csv_convert_options(columns, numeric),
        )
        source = _csv_batches(reader, path, schema(path).names)
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in source:
        while batch.num_rows:
            take = min(batch.num_rows, batch_size - held)
            pending.append(batch.slice(0, take))
            held += take
            batch = batch.slice(take)
            if held == batch_size:
                yield pa.Table.from_batches(pending).select(columns)
                pending, held = [], 0
    if held:
        yield pa.Table.from_batches(pending).select(columns)


def read_units(path: str | Path) -> list[dict]:
    """Pieces of the file that can be read apart, each with the number of its first row.

    A Parquet file's row groups (numbered from its metadata), or a CSV file as one piece (its rows
    can only be counted by reading them).
    """
    path = Path(path)
    if file_format(path, "input") != "parquet":
        return [{"path": str(path), "row_group": -1, "first_row": 0}]
    metadata = pq.ParquetFile(path).metadata
    units, first = [], 0
    for group in range(metadata.num_row_groups):
        units.append({"path": str(path), "row_group": group, "first_row": first})
        first += metadata.row_group(group).num_rows
    return units


def _csv_batches(reader, path: Path, names: list[str]) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            message = _first_line(exc)
            found = re.search(r"CSV column #(\d+)", message)
            if found and int(found.group(1)) < len(names):
                column = names[int(found.group(1))]
                raise DataError(
                    f"input {path}: column {column!r} holds text where a number is expected ({message}); "
                    "every feature column must hold numbers (blank cells are allowed)."
                ) from exc
            raise DataError(f"input {path}: {message}.") from exc
        yield batch


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class TableWriter:
    """Append Arrow tables to a CSV or Parquet file; the file appears under its name only on :meth:`close`.

    Rows go to ``<name>.partial`` first, so a run that fails leaves no half-written output behind.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.format = file_format(self.path, "output")
        if not self.path.parent.is_dir():
            raise UsageError(f"output {self.path}: the folder {self.path.parent} does not exist.")
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._writer = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            if self.format == "parquet":
                self._writer = pq.ParquetWriter(self._partial, table.schema)
            else:
                self._writer = pacsv.CSVWriter(self._partial, table.schema)
        self._writer.write_table(table)

    def close(self, schema: pa.Schema | None = None) -> None:
        """Finish the file (an empty one with ``schema``'s header when nothing was written)."""
        if self._writer is None:
            if schema is None:
                raise ValueError("nothing was written and no schema was given")
            self.write(schema.empty_table())
        self._writer.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the run already failed; removing the partial file is what matters
                pass
        self._partial.unlink(missing_ok=True)
