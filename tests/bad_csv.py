"""The corpus of bad (and awkward) CSV uploads, shared by the unit, app and end-to-end tests.

:func:`bad_csv_corpus` returns ``name → bytes``. :data:`EXPECTED` says what each upload must
produce: ``('error', words)`` — a :class:`~engine.errors.DataError` whose message contains every
word — or ``('warning', words)`` — an accepted table with a warning containing every word — or
``('ok', ())`` — accepted without a warning about the problem (e.g. a Latin-1 file).
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

# A 200 MB (MiB, as the messages count) upload, far over the 50 MB limit, built by repetition (~0.1 s).
HUGE_ROWS = 200 * 2**20 // 4


def _png_header() -> bytes:
    # The real PNG signature and IHDR chunk start of a 1x1 image, then some pixel-ish bytes.
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00" + bytes(
        range(256)
    )


def _zip_of_csv() -> bytes:
    # Someone uploading their zipped CSV instead of the CSV itself.
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.csv", "a,b\n" + "1,2\n" * 100)
    return out.getvalue()


def bad_csv_corpus(include_huge: bool = True) -> dict[str, bytes]:
    """Every bad upload by name; ``include_huge=False`` leaves out the 200 MB file."""
    rng = np.random.default_rng(7)
    wide_header = ",".join(f"c{i}" for i in range(10_000))
    wide_row = ",".join(str(i % 10) for i in range(10_000))
    corpus = {
        "empty": b"",
        "whitespace_only": b"\n \n\t\n",
        "header_only": b"sensor_a,sensor_b,label\n",
        "binary_random": rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes(),
        "binary_png": _png_header(),
        "binary_zip": _zip_of_csv(),
        "binary_control_chars": bytes(range(1, 32)) * 64,  # ASCII control bytes: valid UTF-8, not text
        "latin1": "name,city,score\nJos\xe9,K\xf6ln,1.5\nAna,M\xfcnchen,2.5\nZo\xeb,Z\xfcrich,3.5\n".encode("latin-1"),
        "wide_10000_columns": (wide_header + "\n" + wide_row + "\n" + wide_row + "\n").encode(),
        "ragged_rows": b"a,b,c\n1,2,3\n4,5,6,7\n8,9,10\n",
        "all_nan_column": b"a,empty,b\n1,,2\n3,,4\n5,,6\n",
        "inf_values": b"a,b\n1,inf\n2,-inf\n3,4.5\n",
        "duplicate_columns": b"x,x,y\n1,2,3\n4,5,6\n",
        "single_row": b"a,b,c\n1,2,3\n",
        "mac_cr_line_endings": b"a,b,c\r1,2,3\r4,5,6\r7,8,9\r",
    }
    if include_huge:
        corpus["huge_200mb"] = b"a,b\n" + b"1,2\n" * HUGE_ROWS
    return corpus


EXPECTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "empty": ("error", ("empty",)),
    "whitespace_only": ("error", ("whitespace",)),
    "header_only": ("error", ("header", "no data rows")),
    "binary_random": ("error", ("binary",)),
    "binary_png": ("error", ("binary",)),
    "binary_zip": ("error", ("binary",)),
    "binary_control_chars": ("error", ("control characters",)),
    "latin1": ("ok", ()),
    "wide_10000_columns": ("error", ("10,000 columns", "limit")),
    "ragged_rows": ("error", ("line 3", "4 fields", "header has 3")),
    "all_nan_column": ("warning", ("'empty'", "entirely empty")),
    "inf_values": ("warning", ("'b'", "infinite")),
    "duplicate_columns": ("warning", ("duplicate", "'x'")),
    "single_row": ("warning", ("single data row",)),
    "mac_cr_line_endings": ("ok", ()),
    "huge_200mb": ("error", ("200.0 MB", "limit is 50 MB")),
}

ERRORS = [name for name, (outcome, _) in EXPECTED.items() if outcome == "error"]
WARNINGS = [name for name, (outcome, _) in EXPECTED.items() if outcome == "warning"]
