"""ui.session_store: a token reaches its own session's values, nothing else; entries expire and are bounded."""

from __future__ import annotations

import pytest

from ui.session_store import SessionStore, is_token, new_token


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def test_tokens_are_long_random_and_url_safe():
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(len(t) == 32 and is_token(t) for t in tokens)


@pytest.mark.parametrize("value", [None, "", "abc", "x" * 31, "x" * 33, "a/b" + "x" * 29, "x" * 31 + "=",
                                   " " + "x" * 31, 12345, ["x" * 32]])
def test_malformed_tokens_are_refused(value):
    assert not is_token(value)


def test_the_token_brings_its_values_back_and_another_token_gets_nothing(clock):
    store = SessionStore(ttl_s=60, max_entries=8, clock=clock)
    mine, theirs = store.create("browser-a"), store.create("browser-b")
    assert store.put(mine, {"active_table": "mine.csv"}, "browser-a")
    assert store.put(theirs, {"active_table": "theirs.csv"}, "browser-b")
    assert store.get(mine, "browser-a") == {"active_table": "mine.csv"}
    assert store.get(theirs, "browser-b") == {"active_table": "theirs.csv"}
    assert store.get(new_token(), "browser-a") is None  # a guessed token
    assert store.get(mine[:-1], "browser-a") is None and store.get(mine + "x", "browser-a") is None
    assert not store.put(new_token(), {"active_table": "planted"}, "browser-a")  # no entry is made by a write


def test_a_token_copied_into_another_browser_finds_nothing(clock):
    store = SessionStore(ttl_s=60, max_entries=8, clock=clock)
    token = store.create("browser-a")
    store.put(token, {"x": 1}, "browser-a")
    assert store.get(token, "browser-b") is None
    assert not store.put(token, {"x": 2}, "browser-b")
    assert store.get(token, "browser-a") == {"x": 1}


def test_entries_expire_after_the_ttl_since_last_seen(clock):
    store = SessionStore(ttl_s=60, max_entries=8, clock=clock)
    token = store.create()
    store.put(token, {"x": 1})
    clock.now += 50
    assert store.get(token) == {"x": 1}  # seen: the TTL starts again
    clock.now += 50
    assert store.get(token) == {"x": 1}
    clock.now += 61
    assert store.get(token) is None
    assert len(store) == 0


def test_purge_drops_expired_entries_without_a_lookup(clock):
    store = SessionStore(ttl_s=10, max_entries=8, clock=clock)
    old = store.create()
    clock.now += 11
    fresh = store.create()  # creating purges
    assert len(store) == 1 and store.get(fresh) == {} and store.get(old) is None


def test_an_entry_of_a_live_session_does_not_expire(clock):
    alive = {"s1": True}
    store = SessionStore(ttl_s=10, max_entries=8, is_owner_alive=lambda owner: alive.get(owner, False), clock=clock)
    token = store.create(owner="s1")
    clock.now += 100
    assert store.purge() == 0 and store.get(token) == {}
    alive["s1"] = False
    clock.now += 11
    assert store.purge() == 1 and store.get(token) is None


def test_the_store_is_bounded_and_drops_the_least_recently_seen(clock):
    store = SessionStore(ttl_s=600, max_entries=3, clock=clock)
    tokens = [store.create() for _ in range(3)]
    clock.now += 1
    store.get(tokens[0])  # seen again: now the most recent
    newest = store.create()
    assert len(store) == 3
    assert store.get(tokens[1]) is None  # the least recently seen went
    assert store.get(tokens[0]) == {} and store.get(tokens[2]) == {} and store.get(newest) == {}


def test_values_are_copied_not_shared(clock):
    store = SessionStore(ttl_s=60, max_entries=2, clock=clock)
    token = store.create()
    values = {"a": 1}
    store.put(token, values)
    values["b"] = 2
    got = store.get(token)
    got["c"] = 3
    assert store.get(token) == {"a": 1}
