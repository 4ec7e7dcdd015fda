"""Loading a saved detector archive back into a page: only in trusted mode, on your own machine.

A shared demo accepts no model files from its visitors, so by default this shows a note and no
uploader. With ``LANTERN_TRUSTED=1`` it offers an uploader for Lantern's own archive format (JSON
config + ``.npy`` weights, read by :func:`engine.saving.load_detector`: nothing in the file is
executed), checks the detector's class and returns it with the archive's bytes.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine.errors import ArchiveError
from engine.saving import load_detector
from ui import settings

MAX_ARCHIVE_MB = 64


def detector_uploader(key: str, expected: type) -> tuple[bytes, Any] | None:
    """An uploader for a saved ``expected`` detector; returns ``(archive bytes, detector)`` once one loads.

    Outside trusted mode it only says how to turn loading on. A file that is not a valid archive of the
    right class gets a message naming the problem; the page goes on as before.
    """
    if not settings.SETTINGS.trusted_mode:
        st.caption("Loading a saved detector is off on this server: a shared demo accepts no model files from its "
                   "visitors. On your own machine, start Lantern with `LANTERN_TRUSTED=1` to score data with an "
                   "archive you downloaded here.")
        return None
    upload = st.file_uploader(f"{expected.__name__} archive (.lantern.zip, downloaded from this page)", type=["zip"],
                              key=key, help=f"Lantern's own format only (JSON + weights); at most {MAX_ARCHIVE_MB} MB.")
    if upload is None:
        return None
    loaded = st.session_state.get(f"{key}::loaded")
    if loaded is not None and loaded[0] == upload.file_id:
        return loaded[1], loaded[2]
    data = upload.getvalue()
    try:
        if len(data) > MAX_ARCHIVE_MB * 2**20:
            raise ArchiveError(f"the file is {len(data) / 2**20:.0f} MB; archives of up to {MAX_ARCHIVE_MB} MB load.")
        detector = load_detector(data)
        if not isinstance(detector, expected):
            raise ArchiveError(f"it holds a {type(detector).__name__}; this page scores with an {expected.__name__}.")
    except ArchiveError as exc:
        st.error(f"{upload.name} cannot be loaded: {exc}", icon=":material/error:")
        return None
    st.session_state[f"{key}::loaded"] = (upload.file_id, data, detector)
    return data, detector
