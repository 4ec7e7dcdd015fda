"""What a browser session keeps on the server so that a reload brings its data and results back.

A session gets a random token (:func:`new_token`, 32 URL-safe characters from :func:`secrets.token_urlsafe`)
that the app puts in its URL (``?s=<token>``). The :class:`SessionStore` maps a token to the session's saved
values (its uploaded table, its finished jobs, its form values) for as long as the session lives and ``ttl_s``
seconds after it was last seen, holding at most ``max_entries`` sessions (the least recently seen goes first).

A token is only looked up, never listed or derived: a visitor without it (or with a short, malformed, guessed or
expired one) gets nothing. An entry can also be bound to the browser that created it (``browser``: a digest of
what only that browser sends, such as its cookie); a token copied into another browser then finds nothing.

This module does not import streamlit (:mod:`ui.session` binds it to the page's URL and session state).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

TOKEN_BYTES = 24
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


def new_token() -> str:
    """A fresh, unguessable session token (192 random bits as 32 URL-safe characters).

    Examples
    --------
    >>> token = new_token()
    >>> len(token), is_token(token)
    (32, True)
    """
    return secrets.token_urlsafe(TOKEN_BYTES)


def is_token(value: Any) -> bool:
    """Whether ``value`` has the shape of a token :func:`new_token` makes (anything else is never looked up)."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


@dataclass
class _Entry:
    browser: str
    owner: str
    touched: float
    values: dict = field(default_factory=dict)


class SessionStore:
    """Saved session values by token, expiring ``ttl_s`` seconds after the session was last seen.

    Parameters
    ----------
    ttl_s : float
        Seconds an entry outlives its last use (and its session, when ``is_owner_alive`` is given).
    max_entries : int
        Sessions kept at once; beyond that the least recently used entry is dropped.
    is_owner_alive : callable, optional
        ``is_owner_alive(owner) -> bool``: an entry whose owning session is still connected never expires.
    clock : callable
        Seconds, monotonic (tests pass a fake one).

    Examples
    --------
    >>> store = SessionStore(ttl_s=60, max_entries=4)
    >>> token = store.create(browser="b1")
    >>> store.put(token, {"table": [1, 2]}, browser="b1")
    True
    >>> store.get(token, browser="b1")
    {'table': [1, 2]}
    >>> store.get(token, browser="another browser") is None
    True
    """

    def __init__(self, ttl_s: float, max_entries: int, is_owner_alive: Callable[[str], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl_s = float(ttl_s)
        self.max_entries = max(1, int(max_entries))
        self.is_owner_alive = is_owner_alive
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def create(self, browser: str = "", owner: str = "") -> str:
        """A new, empty entry for the browser ``browser`` and the session ``owner``; returns its token."""
        self.purge()
        token = new_token()
        with self._lock:
            self._entries[token] = _Entry(browser=browser, owner=owner, touched=self._clock())
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return token

    def _find(self, token: Any, browser: str) -> _Entry | None:
        if not is_token(token):
            return None
        entry = self._entries.get(token)
        if entry is None or entry.browser != browser:
            return None
        if self._expired(entry, self._clock()):
            del self._entries[token]
            return None
        return entry

    def get(self, token: Any, browser: str = "", owner: str | None = None) -> dict | None:
        """The values saved under ``token`` by the browser ``browser``, else None; ``owner`` takes the entry over."""
        with self._lock:
            entry = self._find(token, browser)
            if entry is None:
                return None
            entry.touched = self._clock()
            if owner is not None:
                entry.owner = owner
            self._entries.move_to_end(token)
            return dict(entry.values)

    def put(self, token: Any, values: dict, browser: str = "") -> bool:
        """Replace the values saved under ``token`` (only an existing entry of the same browser); returns whether."""
        with self._lock:
            entry = self._find(token, browser)
            if entry is None:
                return False
            entry.values = dict(values)
            entry.touched = self._clock()
            self._entries.move_to_end(token)
            return True

    def drop(self, token: Any) -> None:
        """Forget the entry under ``token`` (if any)."""
        with self._lock:
            if is_token(token):
                self._entries.pop(token, None)

    def _expired(self, entry: _Entry, now: float) -> bool:
        if now - entry.touched <= self.ttl_s:
            return False
        if self.is_owner_alive is not None and entry.owner:
            try:
                return not self.is_owner_alive(entry.owner)
            except Exception:  # a liveness probe must never keep the store from expiring entries
                return True
        return True

    def purge(self) -> int:
        """Drop the expired entries; returns how many were dropped."""
        with self._lock:
            now = self._clock()
            gone = [token for token, entry in self._entries.items() if self._expired(entry, now)]
            for token in gone:
                del self._entries[token]
            return len(gone)
