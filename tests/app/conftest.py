"""Fixtures shared by the page tests."""

import dataclasses

import pytest


@pytest.fixture
def trusted(monkeypatch):
    """The app in trusted mode (``LANTERN_TRUSTED=1``): pages offer to load a saved detector archive."""
    from ui import settings

    monkeypatch.setattr(settings, "SETTINGS", dataclasses.replace(settings.SETTINGS, trusted_mode=True))
