"""Zip-bomb checks shared by Lantern's archives and uploaded model files.

A zip container says, before anything is unpacked, how large each member will be and how much it
is compressed. :func:`zip_problem` reads those figures and names the first one over its limits,
so a caller refuses the file with its own error type and message before reading any member.
This module imports nothing heavy (no Keras, no TensorFlow): loading an ONNX model uses it too.

Examples
--------
>>> import io, zipfile
>>> buffer = io.BytesIO()
>>> with zipfile.ZipFile(buffer, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
...     zf.writestr('zeros.bin', bytes(8 * 2**20))
>>> zip_problem(zipfile.ZipFile(buffer).infolist(), max_total_bytes=2**30).kind
'ratio'
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from typing import Callable, Sequence

__all__ = ["MAX_COMPRESSION_RATIO", "LARGE_MEMBER_BYTES", "ZipProblem", "zip_problem"]

#: Largest ratio of unpacked to packed size accepted for a member (larger ones are zip bombs).
MAX_COMPRESSION_RATIO = 200
#: Members up to this size may compress better than the ratio (zero biases legitimately do).
LARGE_MEMBER_BYTES = 2**20


@dataclass(frozen=True)
class ZipProblem:
    """The first figure of a zip container over its limits.

    ``kind`` is ``'members'`` (too many members; ``value`` is their number), ``'member_size'``
    (one member unpacks to more than its limit; ``value`` its size), ``'ratio'`` (one member is
    compressed more than :data:`MAX_COMPRESSION_RATIO`; ``value`` the ratio) or ``'total'`` (all
    members so far unpack to more than the total limit; ``value`` that total). ``member`` is the
    member's name (None for ``'members'``).
    """

    kind: str
    member: str | None
    value: float


def zip_problem(
    infos: Sequence[zipfile.ZipInfo],
    *,
    max_total_bytes: int,
    member_limit: Callable[[zipfile.ZipInfo], int] | int | None = None,
    max_members: int | None = None,
    ratio_above_bytes: int = LARGE_MEMBER_BYTES,
    max_ratio: float = MAX_COMPRESSION_RATIO,
) -> ZipProblem | None:
    """The first problem of a zip container's members (from ``ZipFile.infolist()``), or None.

    Checked in order: the number of members (``max_members``); then, member by member, its
    unpacked size (``member_limit``: a number, or a function of the member), its compression ratio
    (only for members larger than ``ratio_above_bytes``) and the running total
    (``max_total_bytes``).

    Examples
    --------
    >>> info = zipfile.ZipInfo('a'); info.file_size, info.compress_size = 10, 10
    >>> zip_problem([info], max_total_bytes=5)
    ZipProblem(kind='total', member='a', value=10)
    >>> zip_problem([info], max_total_bytes=100) is None
    True
    """
    if max_members is not None and len(infos) > max_members:
        return ZipProblem("members", None, len(infos))
    total = 0
    for info in infos:
        total += info.file_size
        limit = member_limit(info) if callable(member_limit) else member_limit
        if limit is not None and info.file_size > limit:
            return ZipProblem("member_size", info.filename, info.file_size)
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > ratio_above_bytes and ratio > max_ratio:
            return ZipProblem("ratio", info.filename, ratio)
        if total > max_total_bytes:
            return ZipProblem("total", info.filename, total)
    return None
