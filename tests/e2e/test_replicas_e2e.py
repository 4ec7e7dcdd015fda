"""Two replicas behind nginx with sticky sessions (``bench/replicas.sh``): two browsers, one on each replica.

The script starts a Ray head, two Streamlit replicas and nginx on free loopback ports. Each browser context
gets a route cookie that nginx hashes to a different replica, so the two sessions are known to land apart.
Both train a small detector at once (jobs of both replicas share the one Ray head when ``LANTERN_RAY_ADDRESS``
is honoured, threads otherwise), move nothing, and download their scores; the download URL, fetched again
through nginx with the session's cookies, comes from the session's own replica with the same bytes, while the
other replica does not know it (Streamlit keeps media in the memory of the replica that made it: this is why
the balancer must be sticky).

Skipped, with the reason, only where nginx is missing and cannot be installed (no root, no sudo).
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import TIMEOUT_MS, by_test_id, expect_no_exception, wait_for_app_idle

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "replicas.sh"
ROUTE_COOKIE = "lantern_route"
TRAINING_TIMEOUT_MS = 300_000
SHUTTLE_ROWS = 49_097


def _free_port(also_next: bool = False) -> int:
    """A free port of 127.0.0.1 (and, with ``also_next``, the one after it free too)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not also_next:
            return port
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no two consecutive free ports")


def _nginx_available() -> str | None:
    """None when nginx is there or the script can install it; otherwise why not."""
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        return None
    if os.geteuid() == 0:
        return None
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return None
    return "nginx is not installed and cannot be installed here (not root, no password-less sudo)"


@pytest.fixture(scope="module")
def replicas(artifacts):
    """``bench/replicas.sh`` on free ports; yields (nginx URL, [replica host:port, ...], state folder)."""
    reason = _nginx_available()
    assert reason is None, f"{reason}; `make setup-dev` installs Debian's nginx for this test"  # never skipped
    proxy = _free_port()
    base = _free_port(also_next=True)
    state = artifacts / f"replicas-{proxy}"
    env = {**os.environ, "PROXY_PORT": str(proxy), "BASE_PORT": str(base), "RAY_PORT": str(_free_port()),
           "REPLICAS": "2", "STATE": str(state)}
    started = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=420)
    try:
        if started.returncode != 0:
            pytest.fail(f"bench/replicas.sh start failed ({started.returncode}):\n{started.stdout}\n{started.stderr}")
        yield f"http://127.0.0.1:{proxy}", [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"], state
    finally:
        stopped = subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=180)
        assert stopped.returncode == 0, stopped.stderr


def _upstream(url: str, cookie: str | None = None) -> str:
    headers = {"Cookie": f"{ROUTE_COOKIE}={cookie}"} if cookie else {}
    with urllib.request.urlopen(urllib.request.Request(f"{url}/_stcore/health", headers=headers), timeout=10) as r:
        assert r.read() == b"ok"
        return r.headers["X-Lantern-Upstream"]


def _route_cookies(url: str, replicas: list[str]) -> dict[str, str]:
    """A route cookie value nginx hashes to each replica (random values until each replica answered one)."""
    found: dict[str, str] = {}
    for _ in range(200):
        value = secrets.token_hex(16)
        found.setdefault(_upstream(url, value), value)
        if set(replicas) <= set(found):
            return {r: found[r] for r in replicas}
    pytest.fail(f"nginx sent 200 random routes only to {sorted(found)}, never to all of {replicas}")


def test_replicas_are_healthy_and_nginx_spreads_new_visitors(replicas):
    url, names, _ = replicas
    for name in names:
        with urllib.request.urlopen(f"http://{name}/_stcore/health", timeout=10) as response:
            assert response.read() == b"ok"
    # A browser without a route cookie is given one; with it, it stays on the replica it was sent to.
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as response:
        cookies = [c.split(";")[0].split("=", 1) for c in response.headers.get_all("Set-Cookie")]
        first = response.headers["X-Lantern-Upstream"]
    value = dict(cookies).get(ROUTE_COOKIE)
    assert value and first in names
    assert {_upstream(url, value) for _ in range(5)} == {first}
    assert set(_route_cookies(url, names)) == set(names)


def _set_number(page, label: str, value: int) -> None:
    field = by_test_id(page, "stNumberInput").filter(has_text=label).locator("input")
    field.fill(str(value))
    field.press("Tab")  # Enter would submit the form before the next field is set


def test_two_sessions_on_two_replicas_train_and_download_from_their_own_replica(replicas, browser, artifacts):
    url, names, state = replicas
    routes = _route_cookies(url, names)
    sessions = []
    try:
        # Start both trainings before waiting for either: the replicas' jobs run at once. Different training
        # rows make different scores: Streamlit names a media file by its content's hash, so equal files
        # would have one URL on both replicas.
        for index, name in enumerate(names):
            context = browser.new_context(viewport={"width": 1440, "height": 1100}, accept_downloads=True)
            context.set_default_timeout(TIMEOUT_MS)
            context.add_cookies([{"name": ROUTE_COOKIE, "value": routes[name], "url": url}])
            page = context.new_page()
            sessions.append((name, context, page))
            page.goto(f"{url}/tabular_outliers")
            wait_for_app_idle(page)
            expect(by_test_id(page, "stHeading").first).to_have_text("Tabular outliers")
            assert context.request.get(f"{url}/_stcore/health").headers["x-lantern-upstream"] == name
            by_test_id(page, "stExpander").filter(has_text="Model and training settings").click()
            _set_number(page, "Epochs", 1)
            _set_number(page, "Train on at most", 2000 + 500 * index)
            by_test_id(page, "stFormSubmitButton").locator("button").click()

        for name, context, page in sessions:
            by_test_id(page, "stHeading").filter(has_text="Results").wait_for(state="visible",
                                                                               timeout=TRAINING_TIMEOUT_MS)
            wait_for_app_idle(page)
            expect_no_exception(page)
            expect(by_test_id(page, "stAlertContentSuccess")).to_contain_text("Train AEGMM finished")
            with page.expect_download() as download_info:
                by_test_id(page, "stDownloadButton").filter(has_text="Scores CSV").locator("button").click()
            download = download_info.value
            body = Path(download.path()).read_bytes()
            scores = pd.read_csv(io.BytesIO(body))
            assert len(scores) == SHUTTLE_ROWS and {"instance_score", "is_outlier"} <= set(scores.columns)

            # The download URL is this replica's media file: through nginx it comes from there, byte for byte;
            # the other replica never heard of it.
            again = context.request.get(download.url)
            assert again.ok and again.headers["x-lantern-upstream"] == name and again.body() == body
            path = "/" + download.url.split("/", 3)[3]
            other = next(n for n in names if n != name)
            assert context.request.get(f"http://{other}{path}").status == 404
            page.screenshot(path=str(artifacts / f"replica-{name.rsplit(':', 1)[1]}.png"), full_page=True)

        # Each replica joined the one Ray head (LANTERN_RAY_ADDRESS) and its own job log has its finished training.
        ray_address = (state / "ray.address").read_text().strip()
        for name in names:
            log = (state / f"replica-{name.rsplit(':', 1)[1]}.log").read_text(errors="replace")
            assert f'"event": "ray_started", "address": "{ray_address}"' in log, f"{name} did not join Ray"
            assert "could not start Ray" not in log
            assert '"event": "finished"' in log and '"outcome": "done"' in log, f"no finished job in {name}'s log"
    finally:
        for _, context, _ in sessions:
            context.close()
