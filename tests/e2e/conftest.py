"""End-to-end fixtures: `streamlit run app.py` on a free port, and Debian's Chromium driven by Playwright.

Playwright's own browser download is not used: the tests launch ``/usr/bin/chromium`` (README command (2)
installs it). A missing browser is a test failure with a clear message, never a silent skip.

Set ``LANTERN_E2E_URL`` to run the tests against a server you started yourself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.helpers import new_page

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "e2e"
CHROMIUM = Path(os.environ.get("LANTERN_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SERVER_START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def _python() -> str:
    venv_python = ROOT / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@contextlib.contextmanager
def serve(artifacts: Path, extra_env: dict[str, str] | None = None):
    """Start ``streamlit run app.py`` on a free port of 127.0.0.1 (with ``extra_env``); yields (url, server process)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    log_path = artifacts / f"server-{port}.log"  # per port: parallel runs must not share a log
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [_python(), "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
             "--server.address", "127.0.0.1"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while _health(url) != "ok":
            if server.poll() is not None:
                pytest.fail(f"streamlit exited with code {server.returncode} before answering; see {log_path}:\n"
                            + log_path.read_text(errors="replace")[-3000:])
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer {url}/_stcore/health within {SERVER_START_TIMEOUT_S} s; "
                            f"see {log_path}")
            time.sleep(0.5)
        yield url, server
    finally:
        # The server runs in its own process group (start_new_session): stop the group, not just the parent.
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)


@pytest.fixture(scope="session")
def app_url(artifacts) -> str:
    """The URL of a running Lantern server, started for this test session and stopped after it."""
    external = os.environ.get("LANTERN_E2E_URL")
    if external:
        if _health(external) != "ok":
            pytest.fail(f"LANTERN_E2E_URL={external} does not answer on /_stcore/health.")
        yield external.rstrip("/")
        return
    with serve(artifacts) as (url, _):
        yield url


@pytest.fixture(scope="session")
def browser():
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium was not found at {CHROMIUM}. The end-to-end tests drive Debian's chromium: install it with "
            "`sudo apt-get install chromium` (README command (2) / `make test` does this), or point "
            "LANTERN_CHROMIUM at a Chromium binary."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh browser context (so a fresh Streamlit session) on the app, waited until its first run ends."""
    page = new_page(browser, app_url)
    yield page
    page.context.close()
