"""A reload brings the session back: a token in the URL (``?s=<token>``) names the session's server-side values.

:func:`bind` (called by ``app.py`` before the page runs) gives a new browser session a token from the
:class:`~ui.session_store.SessionStore`, or, when the URL carries the token of a session this same browser had
within :attr:`~ui.settings.Settings.session_ttl_s`, copies that session's saved values back into
``st.session_state``. :func:`save` (after the page ran) saves the values the modules declared with
:func:`persist`: the active dataset (:mod:`ui.data`), the finished jobs (:mod:`ui.training`) and the form
values (:mod:`ui.forms`). Nothing is written to disk; a server restart forgets every session.
"""

from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st

from ui.runtime import session_id, session_is_alive
from ui.session_store import SessionStore
from ui.settings import SETTINGS

PARAM = "s"  # the URL's query parameter holding the token
_TOKEN = "_session_token"
_PERSISTED: set[str] = set()  # session-state keys, or key prefixes ending in '::', saved for a reload

STORE = SessionStore(SETTINGS.session_ttl_s, SETTINGS.session_store_entries, is_owner_alive=session_is_alive)


def persist(*keys: str) -> None:
    """Save these ``st.session_state`` keys for a reload (a key ending in ``'::'`` names every key it starts)."""
    _PERSISTED.update(keys)


def _persisted(key: Any) -> bool:
    key = str(key)
    return key in _PERSISTED or any(p.endswith("::") and key.startswith(p) for p in _PERSISTED)


def _xsrf_secret(cookie: str) -> str:
    """The browser's XSRF secret from Streamlit's cookie ``2|mask|masked secret|timestamp`` (re-masked on every
    page load, so the mask is taken off); other shapes are used as they are."""
    parts = cookie.split("|")
    if len(parts) == 4 and parts[0] == "2":
        try:
            mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
        except ValueError:
            return cookie
        if mask:
            return bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked)).hex() + "|" + parts[3]
    return cookie


def _browser() -> str:
    """A digest of what only this browser sends (Streamlit's XSRF cookie, its user agent): binds a token to it."""
    try:
        cookie = st.context.cookies.get("_streamlit_xsrf", "")
        agent = st.context.headers.get("User-Agent", "")
    except Exception:  # no request context (tests, bare mode)
        cookie = agent = ""
    cookie, agent = (v if isinstance(v, str) else "" for v in (cookie, agent))
    return hashlib.sha256(f"{_xsrf_secret(cookie)}\n{agent}".encode()).hexdigest()


def token() -> str | None:
    """This session's token (None before :func:`bind`)."""
    return st.session_state.get(_TOKEN)


def bind() -> str:
    """Give this session its token (restoring the saved values of a reloaded session) and keep it in the URL."""
    current = st.session_state.get(_TOKEN)
    if current is None:
        asked = st.query_params.get(PARAM)
        saved = STORE.get(asked, _browser(), owner=session_id())
        if saved is not None:
            current = asked
            for key, value in saved.items():  # only persisted keys were saved
                if key not in st.session_state:
                    st.session_state[key] = value
        else:
            current = STORE.create(_browser(), owner=session_id())
        st.session_state[_TOKEN] = current
    if st.query_params.get(PARAM) != current:  # page links drop the query: put the token back
        st.query_params[PARAM] = current
    return current


def _worth_keeping(value: Any) -> bool:
    """A job still queued or running is not saved: a reload ends it (its session is gone)."""
    return not getattr(value, "active", False)


def save() -> None:
    """Save this session's persisted values under its token (no-op before :func:`bind`)."""
    current = st.session_state.get(_TOKEN)
    if current is None:
        return
    try:
        values = {key: st.session_state[key] for key in list(st.session_state.keys())
                  if _persisted(key) and _worth_keeping(st.session_state[key])}
    except KeyError:  # a key vanished under us (another thread's rerun): save next time
        return
    STORE.put(current, values, _browser())
