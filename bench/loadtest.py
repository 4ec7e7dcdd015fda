"""Load test of the shared demo: N real headless Chromium sessions against one ``streamlit run app.py``.

One server is started on a free port of 127.0.0.1 (never another address). One Chromium (Debian's
``/usr/bin/chromium``, no Playwright browser download) opens N browser contexts, i.e. N independent
Streamlit sessions, driven concurrently from one asyncio loop. Each session does what a visitor
does, through the real UI:

1. opens the app (time to first page: until the Data page shows its active dataset and is idle);
2. uploads its own CSV (3,000 rows x 8 numeric columns + a label column, a different seed per
   session) through the file chooser on the Data page;
3. goes to Tabular outliers through the sidebar (``/tabular_outliers``), checks that its upload is
   the chosen dataset, sets 2 epochs and "Train on at most" 2,000 rows, presses Train;
4. waits for the Results heading, noting whether it was ever told "is queued (position N)"
   (time to trained: from the click to the Results heading);
5. moves the threshold-percentile slider with the keyboard three times (Home, End, Home) and
   measures, *inside the browser*, the time from the key press to the "Flagged rows" metric
   changing (a MutationObserver; the Python side's own latency is not counted);
6. downloads the scores CSV and checks its row count and flagged count.

When every session of a round is done, each one checks that its results are still on screen and
still its own (caption names its file, flagged count unchanged) -- a missing or foreign result is
a *lost result* -- then all contexts close. The server's RSS (``VmRSS`` of ``/proc/<pid>/status``)
is sampled every 0.5 s; it is reported before the round, at its peak and ``--after-wait`` seconds
after the contexts closed. The server's ``lantern.jobs`` JSON log lines (queued / started /
finished with queue waits and outcomes) are counted per round.

The N sessions' Chromium runs at a low CPU priority (``--visitor-nice``, default nice 19): real visitors'
browsers run on their own machines, not on the server's cores. They still do all their work (uploads,
trainings, live progress panels, slider moves), so the server carries the full load of N sessions. One
more visitor, the *observer*, runs in a second, un-niced Chromium: before the rounds it uploads and trains
once, then all through every round it moves its own threshold slider (End, Home, ... every 0.5 s), timed
in the browser as above. Its numbers are what one visitor sees while N others use the server; the N
sessions' own slider times are reported too (slowed by their niced renderers). ``--visitor-nice 0`` runs
every browser at the server's priority, as on a single shared machine.

Before the rounds a warm-up session runs the same flow once (TensorFlow import, first graph
traces), so that "baseline" RSS is the warm server, not the bare one. Streamlit keeps a
disconnected session's state for 2 minutes (``MemorySessionStorage`` TTL) before dropping it, so
after the last round the script waits out that TTL (``--ttl-wait``), opens one short probe session
(connect + disconnect is what makes Streamlit expire old entries) and samples RSS once more.

Every wait is bounded (``--session-timeout`` per session, Playwright timeouts per step); every
loop has a fixed count or a deadline.

Run::

    .venv/bin/python bench/loadtest.py                      # N = 4, 8, 16 (about 10 min on 2 cores)
    .venv/bin/python bench/loadtest.py --quick              # N = 2, short waits: a smoke test
    .venv/bin/python bench/loadtest.py --sessions 4 8 --write-doc

Through nginx in front of replicas (``bench/replicas.sh`` starts them; see ``docs/REPLICAS.md``)::

    bench/replicas.sh && .venv/bin/python bench/loadtest.py --url http://127.0.0.1:8600 --sessions 8

With ``--url`` no server is started: each session also records the replica nginx sends it to (the
``X-Lantern-Upstream`` header nginx adds, asked with the session's cookies) and fetches its download URL
once more through nginx (it must come from the same replica, with the same bytes); RSS is summed and
reported per process over the replicas, nginx and the Ray head; the job log lines come from every
replica's log.

Results: a markdown table on stdout, ``bench/results/loadtest.json``; with ``--write-doc`` the
measured tables replace the marked section of ``docs/RELIABILITY.md`` (with ``--url``:
``bench/results/loadtest_replicas.json`` and ``docs/REPLICAS.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from machine_info import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "RELIABILITY.md"
REPLICAS_DOC = ROOT / "docs" / "notes" / "replicas.md"  # --write-doc with --url
CHROMIUM = Path(os.environ.get("LANTERN_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    # N pages in one browser: none of them may be throttled as a "background" tab.
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
HOST = "127.0.0.1"
APP_IDLE = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'
APP_RUNNING = '[data-testid="stApp"][data-test-script-state="running"]'
STEP_TIMEOUT_MS = 180_000
ROWS, FEATURES, TRAIN_ROWS, EPOCHS = 3_000, 8, 2_000, 2
SLIDER_KEYS = ("Home", "End", "Home")
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) lantern\.jobs \w+ (\{.*\})\s*$")


# -- the server ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def health(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB, from /proc/<pid>/status (None once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Process ids of every descendant of ``pid`` (the server's job workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_rss_mb(pid: int) -> float | None:
    """RSS of ``pid`` plus all its descendants in MiB (None once ``pid`` is gone)."""
    own = rss_mb(pid)
    if own is None:
        return None
    return own + sum(v for v in (rss_mb(child) for child in descendants(pid)) if v is not None)


class Server:
    """``streamlit run app.py`` on a free port of 127.0.0.1, its log in a file, RSS sampled every 0.5 s.

    RSS is the server's plus its job workers' (:mod:`ui.workers`): what the demo costs the machine.
    """

    def __init__(self, log_path: Path, env: dict[str, str] | None = None, start_timeout: float = 180):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        python = ROOT / ".venv" / "bin" / "python"
        full_env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "PYTHONUNBUFFERED": "1",
                    **(env or {})}
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(python if python.exists() else sys.executable), "-m", "streamlit", "run", "app.py",
                 "--server.port", str(self.port), "--server.address", HOST, "--server.headless", "true"],
                cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._sampler.start()
        deadline = time.monotonic() + start_timeout
        while health(self.url) != "ok":
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"streamlit did not answer within {start_timeout} s; see {log_path}")
            time.sleep(0.5)

    def _sample(self) -> None:
        while not self._stop.is_set():
            value = tree_rss_mb(self.process.pid)
            if value is not None:
                self.samples.append((time.time(), value))
            self._stop.wait(0.5)

    def rss_now(self) -> float | None:
        return tree_rss_mb(self.process.pid)

    def parts_now(self) -> dict:
        """RSS of the server process alone and of each worker, in MiB."""
        return {"server": rss_mb(self.process.pid),
                "workers": [round(v) for v in (rss_mb(c) for c in descendants(self.process.pid)) if v is not None]}

    def peak_between(self, start: float, end: float) -> float | None:
        values = [v for t, v in self.samples if start <= t <= end]
        return max(values) if values else None

    def job_events(self, since: float = 0.0, until: float = float("inf")) -> list[dict]:
        return read_job_events(self.log_path, since, until)

    def alive(self) -> bool:
        return self.process.poll() is None and health(self.url) == "ok"

    def stop(self) -> None:
        self._stop.set()
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)


def read_job_events(log_path: Path, since: float = 0.0, until: float = float("inf")) -> list[dict]:
    """The ``lantern.jobs`` JSON lines of a server log with their time (epoch seconds), in order."""
    events = []
    for line in log_path.read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if since <= stamp <= until:
            events.append({"t": stamp, **json.loads(match.group(2))})
    return events


class Deployment:
    """A running set-up reached at ``url`` (``--url``): nginx in front of replicas, as ``bench/replicas.sh`` starts.

    Offers what the rounds use of :class:`Server`. RSS is the sum over every process of the set-up (each
    replica and its descendants, nginx, every process of the Ray head), sampled every 0.5 s; ``parts_now``
    and ``peaks`` give it per process. The job log is every replica's ``lantern.jobs`` lines, each marked
    with its replica. The set-up is left running (``bench/replicas.sh stop`` ends it).
    """

    def __init__(self, url: str, state: Path):
        self.url = url.rstrip("/")
        self.state = state
        if health(self.url) != "ok":
            raise SystemExit(f"{self.url}/_stcore/health does not answer ok (start it: bench/replicas.sh)")
        self.replicas = {f"{HOST}:{p.stem.split('-', 1)[1]}": int(p.read_text()) for p in sorted(state.glob("replica-*.pid"))}
        if not self.replicas:
            raise SystemExit(f"no replica-*.pid in {state}: --replicas-state must name bench/replicas.sh's STATE")
        self.log_path = state  # the replicas' logs: replica-PORT.log
        self.samples: list[tuple[float, float]] = []
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._sampler.start()

    def processes(self) -> list[tuple[str, int]]:
        """(label, pid) of every process of the set-up: replicas, nginx, the Ray head's processes."""
        found = []
        for name, pid in self.replicas.items():
            found.append((f"replica {name}", pid))
            found += [(f"replica {name} child", c) for c in descendants(pid)]
        nginx_pid = self.state / "nginx" / "nginx.pid"
        if nginx_pid.exists():
            pid = int(nginx_pid.read_text())
            found += [("nginx", pid)] + [("nginx", c) for c in descendants(pid)]
        ray_tmp = (self.state / "ray.tmp").read_text().strip() if (self.state / "ray.tmp").exists() else None
        if ray_tmp:
            roots = []
            for entry in Path("/proc").iterdir():
                try:
                    if entry.name.isdigit() and ray_tmp.encode() in (entry / "cmdline").read_bytes():
                        roots.append(int(entry.name))
                except OSError:
                    continue
            pids = set(roots) | {c for r in roots for c in descendants(r)}
            found += [(ray_label(pid), pid) for pid in sorted(pids)]
        return found

    def parts_now(self) -> dict:
        """RSS per process in MiB: ``{"processes": [[label, pid, MiB], ...]}``."""
        rows = [[label, pid, rss_mb(pid)] for label, pid in self.processes()]
        return {"processes": [[label, pid, round(v, 1)] for label, pid, v in rows if v is not None]}

    def rss_now(self) -> float | None:
        return sum(v for _, _, v in self.parts_now()["processes"]) or None

    def _sample(self) -> None:
        while not self._stop.is_set():
            rows = self.parts_now()["processes"]
            if rows:
                self.samples.append((time.time(), sum(v for _, _, v in rows)))
                for label, total in group_rss(rows).items():
                    self.peaks[label] = max(self.peaks.get(label, 0.0), total)
            self._stop.wait(0.5)

    def peak_between(self, start: float, end: float) -> float | None:
        values = [v for t, v in self.samples if start <= t <= end]
        return max(values) if values else None

    def job_events(self, since: float = 0.0, until: float = float("inf")) -> list[dict]:
        events = []
        for name in self.replicas:
            log = self.state / f"replica-{name.rsplit(':', 1)[1]}.log"
            if log.exists():
                events += [{**e, "replica": name} for e in read_job_events(log, since, until)]
        return sorted(events, key=lambda e: e["t"])

    def alive(self) -> bool:
        return health(self.url) == "ok" and all(health(f"http://{name}") == "ok" for name in self.replicas)

    def stop(self) -> None:
        self._stop.set()


def ray_label(pid: int) -> str:
    """'ray raylet', 'ray gcs_server', 'ray monitor.py', 'ray worker' (``ray::IDLE``, ``ray::<task>``), ..."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "ray ?"
    if argv[0].startswith("ray::"):  # ray::IDLE, ray::run_job (a job's worker); the agents keep their names
        name = argv[0].split()[0][5:]
        return f"ray {name}" if name.endswith("Agent") else "ray worker"
    if re.search(r"python[0-9.]*$", argv[0]):
        script = next((a for a in argv[1:] if a.endswith(".py")), argv[0])
        return "ray " + Path(script).name
    return "ray " + Path(argv[0]).name


def group_rss(rows: list) -> dict[str, float]:
    """Sum of RSS per label (several Ray workers, nginx's master and worker), in MiB."""
    totals: dict[str, float] = {}
    for label, _, value in rows:
        totals[label] = totals.get(label, 0.0) + value
    return totals


ROUTE_COOKIE = "lantern_route"  # bench/nginx/lantern.conf.template hashes it to pick the replica


def route_cookies(url: str, replicas: list[str], tries: int = 200) -> dict[str, str]:
    """A route cookie value for each replica: random values, asked of nginx until each replica answered one."""
    found: dict[str, str] = {}
    rng = np.random.default_rng()
    for _ in range(tries):
        value = rng.bytes(16).hex()
        request = urllib.request.Request(f"{url}/_stcore/health", headers={"Cookie": f"{ROUTE_COOKIE}={value}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            found.setdefault(response.headers.get("X-Lantern-Upstream", "?"), value)
        if all(r in found for r in replicas):
            break
    return {r: found[r] for r in replicas if r in found}


async def upstream_of(context, url: str) -> str | None:
    """The replica nginx sends this browser context to (its ``X-Lantern-Upstream`` answer header), or None."""
    try:
        response = await context.request.get(f"{url}/_stcore/health", timeout=30_000)
        return response.headers.get("x-lantern-upstream")
    except Exception:
        return None


def summarise_jobs(events: list[dict]) -> dict:
    """Counts of job log events and the queue waits / durations they report."""
    by = lambda name: [e for e in events if e["event"] == name]
    finished = by("finished")
    waits = [e["queue_wait_s"] for e in by("started")]
    return {
        "log_lines": len(events),
        "queued": len(by("queued")),
        "started": len(by("started")),
        "finished": len(finished),
        "owner_gone": len(by("owner_gone")),
        "outcomes": {o: sum(e.get("outcome") == o for e in finished) for o in ("done", "failed", "cancelled")},
        "queue_wait_s": {"p50": pct(waits, 50), "p95": pct(waits, 95), "max": max(waits) if waits else None},
        "duration_s": {"p50": pct([e["duration_s"] for e in finished if e.get("duration_s") is not None], 50),
                       "max": max([e["duration_s"] for e in finished if e.get("duration_s") is not None], default=None)},
    }


def running_intervals(events: list[dict]) -> list[tuple[float, float]]:
    """(start, end) of every job that ran, from its started / finished log lines."""
    started = {e["job"]: e["t"] for e in events if e["event"] == "started"}
    ended = {e["job"]: e["t"] for e in events if e["event"] == "finished"}
    return [(t, ended.get(job, float("inf"))) for job, t in started.items()]


def pct(values, q) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.percentile(values, q)) if values else None


# -- the data --------------------------------------------------------------------------------------
def session_csv(seed: int, rows: int = ROWS, features: int = FEATURES) -> bytes:
    """``rows`` x ``features`` numeric columns and a 0/1 label; about 3 % of rows are shifted outliers."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)) @ rng.normal(scale=0.5, size=(features, features)) + rng.normal(size=features)
    label = (rng.random(rows) < 0.03).astype(int)
    X[label == 1] += rng.normal(4.0, 1.0, size=(int(label.sum()), features))
    frame = pd.DataFrame(X.round(5), columns=[f"f{i}" for i in range(features)]).assign(label=label)
    return frame.to_csv(index=False).encode()


# -- one browser session -------------------------------------------------------------------------
@dataclass
class SessionResult:
    index: int
    file: str
    first_page_s: float | None = None
    upload_s: float | None = None
    trained_s: float | None = None
    queued: bool = False
    max_queue_position: int = 0
    rejected: str | None = None
    completed: bool = False
    failed: str | None = None
    slider_ms: list[float] = field(default_factory=list)
    slider_at: list[float] = field(default_factory=list)  # epoch seconds of each slider move
    slider_run_started_ms: list[float | None] = field(default_factory=list)
    slider_run_finished_ms: list[float | None] = field(default_factory=list)
    flagged: int | None = None
    download_rows: int | None = None
    download_ok: bool = False
    exceptions: int = 0
    lost_result: bool = False
    train_clicked_at: float | None = None
    finished_at: float | None = None
    replica: str | None = None  # behind nginx (--url): the replica this session's requests went to
    download_replica: str | None = None  # ... and the one that answered the download URL fetched again
    download_refetch_ok: bool | None = None  # that second fetch returned the same file


async def wait_idle(page, *, after_action: bool = False, timeout: float = STEP_TIMEOUT_MS) -> None:
    """The app is connected and no script run is in progress (same rule as tests/e2e/helpers.py)."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    if after_action:
        try:
            await page.wait_for_selector(APP_RUNNING, state="attached", timeout=1_000)
        except PlaywrightTimeout:
            pass
    await page.wait_for_selector(APP_IDLE, state="attached", timeout=timeout)
    await page.wait_for_timeout(150)


def tid(page, test_id: str):
    return page.get_by_test_id(test_id)


async def count_exceptions(page) -> int:
    return await tid(page, "stException").count()


_WATCH_FLAGGED = """() => {
  const read = () => {
    for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
      if (m.textContent.includes('Flagged rows')) {
        const v = m.querySelector('[data-testid="stMetricValue"]');
        return v ? v.textContent : null;
      }
    }
    return null;
  };
  // t0: key down; tRun / tIdle: the app root says the server started / finished the rerun; t1: the metric changed.
  const state = {before: read(), t0: null, t1: null, tRun: null, tIdle: null, after: null};
  window.__lanternSlider = state;
  document.addEventListener('keydown', () => { if (state.t0 === null) state.t0 = performance.now(); },
                            {capture: true, once: true});
  const observer = new MutationObserver(() => {
    if (state.t0 === null || state.t1 !== null) return;
    const now = read();
    if (now !== null && now !== state.before) {
      state.t1 = performance.now(); state.after = now;
    }
  });
  observer.observe(document.body, {subtree: true, childList: true, characterData: true});
  const app = document.querySelector('[data-testid="stApp"]');
  const runs = new MutationObserver(() => {
    if (state.t0 === null) return;
    const running = app.getAttribute('data-test-script-state') === 'running';
    if (running && state.tRun === null) state.tRun = performance.now();
    if (!running && state.tRun !== null && state.tIdle === null) state.tIdle = performance.now();
  });
  runs.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  state.stop = () => { observer.disconnect(); runs.disconnect(); };
  return state.before;
}"""


async def move_slider(page, key: str, timeout_ms: int) -> tuple[dict, int]:
    """Press ``key`` on the threshold slider; browser-side times (ms from the key press) and the new count.

    ``total``: until "Flagged rows" changed; ``run_started`` / ``run_finished``: until the app root said the
    server started / finished the rerun (None if the browser never showed the state change).
    """
    thumb = tid(page, "stSlider").filter(has_text="Threshold percentile").get_by_role("slider")
    await thumb.focus()
    await page.evaluate(_WATCH_FLAGGED)
    await thumb.press(key)
    try:
        await page.wait_for_function("() => window.__lanternSlider.t1 !== null && "
                                     "(window.__lanternSlider.tIdle !== null || "
                                     " performance.now() - window.__lanternSlider.t1 > 2000)",
                                     timeout=timeout_ms, polling=50)
    finally:
        await page.evaluate("() => window.__lanternSlider.stop()")
    state = await page.evaluate("() => { const s = window.__lanternSlider; "
                                "return {t0: s.t0, t1: s.t1, tRun: s.tRun, tIdle: s.tIdle, after: s.after}; }")
    since = lambda t: None if t is None else round(t - state["t0"], 1)
    times = {"total": since(state["t1"]), "run_started": since(state["tRun"]), "run_finished": since(state["tIdle"])}
    return times, int(state["after"].replace(",", ""))


async def flagged_now(page) -> int:
    text = await tid(page, "stMetric").filter(has_text="Flagged rows").get_by_test_id("stMetricValue").inner_text()
    return int(text.replace(",", ""))


async def set_number(page, label: str, value: int) -> None:
    # Tab, not Enter: Enter inside st.form submits the form (enter_to_submit) before the other fields are set.
    field_ = tid(page, "stNumberInput").filter(has_text=label).locator("input")
    await field_.fill(str(value))
    await field_.press("Tab")


async def open_app(page, url: str) -> None:
    await page.goto(url, timeout=STEP_TIMEOUT_MS)
    await tid(page, "stHeading").filter(has_text="Active dataset:").wait_for(state="visible", timeout=STEP_TIMEOUT_MS)
    await wait_idle(page)


async def upload_csv(page, name: str, data: bytes) -> None:
    await tid(page, "stTab").filter(has_text="Upload a CSV").click()
    dropzone = tid(page, "stFileUploaderDropzone")
    async with page.expect_file_chooser(timeout=STEP_TIMEOUT_MS) as chooser:
        await tid(dropzone, "stBaseButton-secondary").click()
    await (await chooser.value).set_files({"name": name, "mimeType": "text/csv", "buffer": data})
    await wait_idle(page, after_action=True)


async def go_to_tabular_outliers(page) -> None:
    """Through the sidebar link: a page switch inside the session (a full reload would start a new session)."""
    await tid(page, "stSidebarNav").get_by_role("link", name="Tabular outliers").click()
    await page.wait_for_url(re.compile(r".*/tabular_outliers$"), timeout=STEP_TIMEOUT_MS)
    await tid(page, "stHeading").filter(has_text="Tabular outliers").first.wait_for(state="visible",
                                                                                     timeout=STEP_TIMEOUT_MS)
    await wait_idle(page, after_action=True)


async def configure_and_train(page, name: str) -> None:
    dataset = tid(page, "stSelectbox").filter(has_text="Dataset").first.get_by_role("combobox")
    if name not in await dataset.input_value():  # the chosen option is the combobox input's value
        await dataset.click()
        await page.get_by_role("option", name=f"{name} (your active dataset)").click()
        await wait_idle(page, after_action=True)
    if name not in await dataset.input_value():
        raise RuntimeError(f"the Dataset select box does not offer {name}")
    await tid(page, "stExpander").filter(has_text="Model and training settings").locator("summary").click()
    await set_number(page, "Epochs", EPOCHS)
    await set_number(page, "Train on at most", TRAIN_ROWS)
    await tid(page, "stFormSubmitButton").locator("button").click()


def caption_of(name: str) -> re.Pattern:
    """The results caption naming this session's file: "load-01.csv · 8 features" (or "8 feature column(s)")."""
    return re.compile(rf"{re.escape(name)} · {FEATURES} feature")


async def wait_for_training(page, result: SessionResult, deadline: float) -> None:
    """Poll (bounded by ``deadline``) for the Results heading, a queue message or a refusal/failure."""
    queued_info = tid(page, "stAlertContentInfo").filter(has_text="is queued (position")
    results = tid(page, "stHeading").filter(has_text="Results")
    while time.monotonic() < deadline:
        if await results.count():
            return
        if await queued_info.count():
            result.queued = True
            try:
                match = re.search(r"position (\d+)", await queued_info.first.inner_text(timeout=1_000))
                if match:
                    result.max_queue_position = max(result.max_queue_position, int(match.group(1)))
            except Exception:  # the message went away between count() and inner_text()
                pass
        warnings = tid(page, "stAlertContentWarning")
        for i in range(await warnings.count()):
            text = await warnings.nth(i).inner_text()
            if "you already have" in text or "the server is busy" in text:
                result.rejected = text
                return
            if "was cancelled" in text:
                raise RuntimeError(text)
        errors = tid(page, "stAlertContentError")
        if await errors.count():
            raise RuntimeError(await errors.first.inner_text())
        await asyncio.sleep(0.25)
    raise TimeoutError("no results before the session's deadline")


async def run_session(browser, url: str, index: int, data: bytes, timeout_s: float,
                      done: asyncio.Barrier | None, slider_timeout_ms: int = 60_000,
                      route: str | None = None) -> tuple[SessionResult, object]:
    """One visitor's flow (see the module docstring); ``route``: a route cookie that sends it to one replica."""
    name = f"load-{index:02d}.csv"
    result = SessionResult(index=index, file=name)
    deadline = time.monotonic() + timeout_s
    context = await browser.new_context(viewport={"width": 1440, "height": 1100}, accept_downloads=True)
    if route is not None:
        await context.add_cookies([{"name": ROUTE_COOKIE, "value": route, "url": url}])
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = await context.new_page()

    async def flow() -> None:
        t = time.monotonic()
        await open_app(page, url)
        result.first_page_s = time.monotonic() - t
        result.replica = await upstream_of(context, url)
        t = time.monotonic()
        await upload_csv(page, name, data)
        await tid(page, "stHeading").filter(has_text=f"Active dataset: {name}").wait_for(state="visible")
        result.upload_s = time.monotonic() - t
        await go_to_tabular_outliers(page)
        await configure_and_train(page, name)
        result.train_clicked_at = time.time()
        t = time.monotonic()
        await wait_for_training(page, result, deadline)
        if result.rejected is None:
            result.trained_s = time.monotonic() - t
            await wait_idle(page)
            caption = await page.get_by_text(caption_of(name)).count()
            if not caption:
                raise RuntimeError("the results do not name this session's file")
            result.exceptions = max(result.exceptions, await count_exceptions(page))
            for key in SLIDER_KEYS:
                await wait_idle(page)
                at = time.time()
                times, flagged = await move_slider(page, key, slider_timeout_ms)
                result.slider_ms.append(times["total"])
                result.slider_run_started_ms.append(times["run_started"])
                result.slider_run_finished_ms.append(times["run_finished"])
                result.slider_at.append(at)
                result.flagged = flagged
            await wait_idle(page)
            async with page.expect_download(timeout=STEP_TIMEOUT_MS) as info:
                await tid(page, "stDownloadButton").filter(has_text="Scores CSV").locator("button").click()
            download = await info.value
            body = Path(await download.path()).read_bytes()
            scores = pd.read_csv(io.BytesIO(body))
            if result.replica is not None:  # behind nginx: the download URL, fetched again, comes from our replica
                again = await context.request.get(download.url, timeout=60_000)
                result.download_replica = again.headers.get("x-lantern-upstream")
                result.download_refetch_ok = again.ok and await again.body() == body
            result.download_rows = len(scores)
            result.download_ok = (len(scores) == ROWS and {"instance_score", "is_outlier"} <= set(scores.columns)
                                  and int(scores["is_outlier"].sum()) == result.flagged)
            result.completed = True
        result.exceptions = max(result.exceptions, await count_exceptions(page))

    try:
        await asyncio.wait_for(flow(), timeout=timeout_s)
    except Exception as exc:  # one session's failure is recorded, never stops the others
        result.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        try:
            result.exceptions = max(result.exceptions, await count_exceptions(page))
        except Exception:
            pass
    result.finished_at = time.time()
    if done is not None:
        await done.wait()  # every session of the round finished its flow: now check nothing was lost
    if result.completed:
        try:
            still_there = await tid(page, "stHeading").filter(has_text="Results").count()
            own_caption = await page.get_by_text(caption_of(name)).count()
            result.lost_result = not (still_there and own_caption and await flagged_now(page) == result.flagged
                                      and result.download_ok)
            result.exceptions = max(result.exceptions, await count_exceptions(page))
        except Exception as exc:
            result.lost_result = True
            result.failed = result.failed or f"final check: {type(exc).__name__}"
    return result, context


OBSERVER_FILE = "observer.csv"


class FrameClock:
    """Times of one page's websocket frames, as Chromium's network stack saw them (DevTools protocol).

    ``server_ms`` measures a slider move the way the server is responsible for it: from the frame that
    carries the rerun request (it names the slider's key) leaving the browser to the first frame back
    that holds the "Flagged rows" metric. The browser's own work (key handling, rendering) is not in it.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []
        self.received: list[tuple[float, bytes]] = []

    async def attach(self, context, page) -> None:
        cdp = await context.new_cdp_session(page)
        cdp.on("Network.webSocketFrameSent", lambda e: self.sent.append(self._frame(e)))
        cdp.on("Network.webSocketFrameReceived", lambda e: self.received.append(self._frame(e)))
        await cdp.send("Network.enable")

    @staticmethod
    def _frame(event: dict) -> tuple[float, bytes]:
        response = event["response"]
        data = response.get("payloadData", "")
        payload = base64.b64decode(data) if response.get("opcode") == 2 else data.encode()
        return event["timestamp"], payload

    def mark(self) -> tuple[int, int]:
        return len(self.sent), len(self.received)

    def server_ms(self, since: tuple[int, int], request_marker: bytes, reply_marker: bytes) -> float | None:
        request = next((t for t, p in self.sent[since[0]:] if request_marker in p), None)
        if request is None:
            return None
        reply = next((t for t, p in self.received[since[1]:] if t >= request and reply_marker in p), None)
        return None if reply is None else round((reply - request) * 1000, 1)


async def prepare_observer(browser, url: str):
    """One more visitor, in its own un-niced Chromium: uploads, trains once, and keeps its results open."""
    context = await browser.new_context(viewport={"width": 1440, "height": 1100})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = await context.new_page()
    page.frame_clock = FrameClock()
    await page.frame_clock.attach(context, page)
    await open_app(page, url)
    await upload_csv(page, OBSERVER_FILE, session_csv(seed=10_000))
    await go_to_tabular_outliers(page)
    await configure_and_train(page, OBSERVER_FILE)
    await wait_for_training(page, SessionResult(index=-1, file=OBSERVER_FILE), time.monotonic() + 300)
    await wait_idle(page)
    return context, page


async def observe(page, stop: asyncio.Event, samples: list[tuple[float, float, float | None]],
                  pause_s: float = 0.5) -> None:
    """Move the observer's slider (End, Home, ...) until ``stop``; record (ms from key to new count, wall time,
    the server's part of it: see :class:`FrameClock`).

    The key is chosen from the value the slider shows (Home at the top, End elsewhere), so every press
    changes the value, even after a move whose effect was missed.
    """
    shown = tid(tid(page, "stSlider").filter(has_text="Threshold percentile"), "stSliderThumbValue")
    while not stop.is_set():
        await wait_idle(page)
        at = time.time()
        try:
            key = "Home" if float(await shown.inner_text(timeout=5_000)) >= 99.9 else "End"
            mark = page.frame_clock.mark()
            times, _ = await move_slider(page, key, timeout_ms=20_000)
            if times["total"] is not None:
                samples.append((times["total"], at,
                                page.frame_clock.server_ms(mark, b"aegmm:percentile", b"Flagged rows")))
        except Exception:  # a missed sample is not a session failure; the next move tries again
            pass
        await asyncio.sleep(pause_s)


async def run_round(browser, server: Server, n: int, timeout_s: float, first_index: int,
                    observer=None) -> tuple[list[SessionResult], dict]:
    """N sessions at once; returns their results and the round's server-side numbers (RSS, job log).

    With an ``observer`` page, it moves its own slider all through the round (see :func:`observe`).
    """
    rss_before = server.rss_now()
    load_before = os.getloadavg()
    start = time.time()
    barrier = asyncio.Barrier(n)
    datasets = [session_csv(seed=first_index + i) for i in range(n)]
    stop, observed = asyncio.Event(), []
    watcher = asyncio.create_task(observe(observer, stop, observed)) if observer is not None else None
    outcomes = await asyncio.gather(*(run_session(browser, server.url, first_index + i, datasets[i], timeout_s, barrier)
                                      for i in range(n)))
    if watcher is not None:
        stop.set()
        await watcher
    results = [r for r, _ in outcomes]
    for _, context in outcomes:
        await context.close()
    closed = time.time()
    return results, {"rss_before_mb": rss_before, "load_before": load_before, "start": start, "closed": closed,
                     "observed": observed}


def round_summary(n: int, results: list[SessionResult], server: Server, info: dict, after_wait: float) -> dict:
    events = server.job_events(since=info["start"] - 1, until=time.time())
    intervals = running_intervals(events)
    during = [ms for r in results for ms, at in zip(r.slider_ms, r.slider_at)
              if any(s <= at <= e for s, e in intervals)]
    all_slider = [ms for r in results for ms in r.slider_ms]
    completed = [r for r in results if r.completed]
    observed = info.get("observed", [])
    observed_during = [ms for ms, at, _ in observed if any(s <= at <= e for s, e in intervals)]
    server_during = [ms for _, at, ms in observed if ms is not None and any(s <= at <= e for s, e in intervals)]
    return {
        "sessions": n,
        "completed": len(completed),
        "told_queued": sum(r.queued for r in results),
        "completed_or_told_queued": sum(r.completed or r.queued for r in results),
        "rejected": sum(r.rejected is not None for r in results),
        "failed": sum(r.failed is not None for r in results),
        "exceptions": sum(r.exceptions for r in results),
        "lost_results": sum(r.lost_result for r in results),
        "downloads_ok": sum(r.download_ok for r in results),
        "max_queue_position": max((r.max_queue_position for r in results), default=0),
        "first_page_s": {"p50": pct([r.first_page_s for r in results], 50), "p95": pct([r.first_page_s for r in results], 95)},
        "trained_s": {"p50": pct([r.trained_s for r in results], 50), "p95": pct([r.trained_s for r in results], 95),
                      "max": max([r.trained_s for r in results if r.trained_s is not None], default=None)},
        "slider_ms": {"n": len(all_slider), "p50": pct(all_slider, 50), "p95": pct(all_slider, 95),
                      "max": max(all_slider, default=None)},
        "slider_ms_while_training": {"n": len(during), "p50": pct(during, 50), "p95": pct(during, 95),
                                     "max": max(during, default=None)},
        "observer_slider_ms": {"n": len(observed), "p50": pct([ms for ms, _, _ in observed], 50),
                               "p95": pct([ms for ms, _, _ in observed], 95),
                               "max": max((ms for ms, _, _ in observed), default=None)},
        "observer_server_ms_while_training": {"n": len(server_during), "p50": pct(server_during, 50),
                                              "p95": pct(server_during, 95), "max": max(server_during, default=None)},
        "observer_slider_ms_while_training": {"n": len(observed_during), "p50": pct(observed_during, 50),
                                              "p95": pct(observed_during, 95), "max": max(observed_during, default=None)},
        "slider_run_started_ms": {"p50": pct([t for r in results for t in r.slider_run_started_ms], 50),
                                  "p95": pct([t for r in results for t in r.slider_run_started_ms], 95)},
        "slider_run_finished_ms": {"p50": pct([t for r in results for t in r.slider_run_finished_ms], 50),
                                   "p95": pct([t for r in results for t in r.slider_run_finished_ms], 95)},
        "rss_mb": {"before": info["rss_before_mb"], "peak": server.peak_between(info["start"], info["closed"]),
                   "at_close": server.peak_between(info["closed"] - 1, info["closed"] + 1),
                   "after": server.rss_now(), "after_wait_s": after_wait},
        "jobs": summarise_jobs(events),
        "replicas": replica_summary(results, events),
        "load_avg_before": info["load_before"],
        "load_avg_after": os.getloadavg(),
        "wall_s": round(info["closed"] - info["start"], 1),
        "session_details": [asdict(r) for r in results],
    }


def replica_summary(results: list[SessionResult], events: list[dict]) -> dict | None:
    """Behind nginx: sessions, jobs and checked downloads per replica (None for one server)."""
    if not any(r.replica for r in results):
        return None
    names = sorted({r.replica or "?" for r in results} | {e["replica"] for e in events if "replica" in e})
    return {name: {"sessions": sum((r.replica or "?") == name for r in results),
                   "jobs_finished": sum(e.get("replica") == name and e["event"] == "finished" for e in events),
                   "downloads_from_own_replica": sum(r.replica == name and r.download_replica == name
                                                     and bool(r.download_refetch_ok) for r in results)}
            for name in names}


# -- reporting -------------------------------------------------------------------------------------
def fmt(value, digits=1, unit="") -> str:
    return "—" if value is None else f"{value:,.{digits}f}{unit}"


def markdown_tables(report: dict) -> str:
    rows = report["rounds"]
    lines = [
        "| N | completed | told queued (max pos.) | rejected | failed | exceptions | lost results | downloads ok |"
        " first page p50 / p95 (s) | trained p50 / p95 (s) | slider p50 / p95 (ms) | slider p95 while training (ms, n) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sessions']} | {r['completed']}/{r['sessions']} | {r['told_queued']} ({r['max_queue_position']}) | "
            f"{r['rejected']} | {r['failed']} | {r['exceptions']} | {r['lost_results']} | {r['downloads_ok']} | "
            f"{fmt(r['first_page_s']['p50'])} / {fmt(r['first_page_s']['p95'])} | "
            f"{fmt(r['trained_s']['p50'])} / {fmt(r['trained_s']['p95'])} | "
            f"{fmt(r['slider_ms']['p50'], 0)} / {fmt(r['slider_ms']['p95'], 0)} | "
            f"{fmt(r['slider_ms_while_training']['p95'], 0)} ({r['slider_ms_while_training']['n']}) |"
        )
    lines += ["", "| N | jobs queued / started / finished (done, failed, cancelled) | queue wait p50 / p95 / max (s) |"
              " job duration p50 / max (s) | RSS before / peak / after (MiB) | after vs before | load avg before → after |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        j, m = r["jobs"], r["rss_mb"]
        change = None if not (m["before"] and m["after"]) else 100 * (m["after"] - m["before"]) / m["before"]
        lines.append(
            f"| {r['sessions']} | {j['queued']} / {j['started']} / {j['finished']} "
            f"({j['outcomes']['done']}, {j['outcomes']['failed']}, {j['outcomes']['cancelled']}) | "
            f"{fmt(j['queue_wait_s']['p50'])} / {fmt(j['queue_wait_s']['p95'])} / {fmt(j['queue_wait_s']['max'])} | "
            f"{fmt(j['duration_s']['p50'])} / {fmt(j['duration_s']['max'])} | "
            f"{fmt(m['before'], 0)} / {fmt(m['peak'], 0)} / {fmt(m['after'], 0)} (after {m['after_wait_s']:.0f} s) | "
            f"{fmt(change, 1, ' %')} | {r['load_avg_before'][0]:.1f} → {r['load_avg_after'][0]:.1f} |"
        )
    lines += ["", "| N | key → rerun started p50 / p95 (ms) | key → rerun finished p50 / p95 (ms) |"
              " key → flagged count changed p50 / p95 (ms) |", "|---|---|---|---|"]
    for r in rows:
        started, finished = r.get("slider_run_started_ms", {}), r.get("slider_run_finished_ms", {})
        lines.append(f"| {r['sessions']} | {fmt(started.get('p50'), 0)} / {fmt(started.get('p95'), 0)} | "
                     f"{fmt(finished.get('p50'), 0)} / {fmt(finished.get('p95'), 0)} | "
                     f"{fmt(r['slider_ms']['p50'], 0)} / {fmt(r['slider_ms']['p95'], 0)} |")
    if any(r.get("replicas") for r in rows):
        lines += ["", "Behind nginx (sticky sessions; the replica is nginx's `X-Lantern-Upstream` answer for the session's "
                      "cookie; a download counts when its URL, fetched again, came from that replica with the same bytes):",
                  "", "| N | replica | sessions | jobs finished | downloads from the session's replica |",
                  "|---|---|---|---|---|"]
        for r in rows:
            for name, v in (r.get("replicas") or {}).items():
                lines.append(f"| {r['sessions']} | {name} | {v['sessions']} | {v['jobs_finished']} | "
                             f"{v['downloads_from_own_replica']} |")
    if any(r.get("observer_slider_ms", {}).get("n") for r in rows):
        lines += ["", f"Observer (one more visitor whose browser has the CPU priority of a remote visitor's own machine; "
                      f"the N sessions' browsers run at nice {report.get('visitor_nice', 0)}):", "",
                  "| N | observer slider moves (n) | key → flagged count changed p50 / p95 / max (ms) |"
                  " while a training ran: n, p50 / p95 (ms) | server's part while a training ran:"
                  " request frame out → count frame in, n, p50 / p95 / max (ms) |", "|---|---|---|---|---|"]
        for r in rows:
            o, d = r["observer_slider_ms"], r["observer_slider_ms_while_training"]
            v = r.get("observer_server_ms_while_training", {})
            lines.append(f"| {r['sessions']} | {o['n']} | {fmt(o['p50'], 0)} / {fmt(o['p95'], 0)} / {fmt(o['max'], 0)} | "
                         f"{d['n']}, {fmt(d['p50'], 0)} / {fmt(d['p95'], 0)} | "
                         f"{v.get('n', 0)}, {fmt(v.get('p50'), 0)} / {fmt(v.get('p95'), 0)} / {fmt(v.get('max'), 0)} |")
    memory = report["memory"]
    lines += ["", "| RSS of the server and its job workers (MiB) | value |", "|---|---|",
              f"| bare server, before any session | {fmt(memory['cold_mb'], 0)} |",
              f"| warm baseline (after one warm-up session closed) | {fmt(memory['baseline_mb'], 0)}"
              f"{parts(memory.get('baseline_parts'))} |",
              f"| peak over all rounds | {fmt(memory['peak_mb'], 0)} |",
              f"| {memory['after_last_round_wait_s']:.0f} s after the last round closed | "
              f"{fmt(memory['after_last_round_mb'], 0)} |"]
    if memory.get("after_ttl_mb") is not None:
        change = 100 * (memory["after_ttl_mb"] - memory["baseline_mb"]) / memory["baseline_mb"]
        lines.append(f"| after Streamlit's 2-min session TTL + a probe session ({memory['ttl_wait_s']:.0f} s) | "
                     f"{fmt(memory['after_ttl_mb'], 0)} ({change:+.1f} % vs warm baseline)"
                     f"{parts(memory.get('after_ttl_parts'))} |")
    if (memory.get("baseline_parts") or {}).get("processes"):
        lines += ["", "| RSS per process (MiB; several processes of one kind summed, count in brackets) |"
                      " warm baseline | peak over all rounds | end of the run |", "|---|---|---|---|"]
        base = group_rss(memory["baseline_parts"]["processes"])
        end = group_rss((memory.get("after_ttl_parts") or memory.get("end_parts") or {}).get("processes", []))
        count = lambda rows, label: sum(row[0] == label for row in rows)
        end_rows = (memory.get("after_ttl_parts") or memory.get("end_parts") or {}).get("processes", [])
        peaks = memory.get("peak_parts", {})
        for label in sorted(set(base) | set(end) | set(peaks)):
            n = max(count(memory["baseline_parts"]["processes"], label), count(end_rows, label))
            lines.append(f"| {label}{f' ({n})' if n > 1 else ''} | {fmt(base.get(label), 0)} | "
                         f"{fmt(peaks.get(label), 0)} | {fmt(end.get(label), 0)} |")
    return "\n".join(lines)


def parts(split: dict | None) -> str:
    """' (server 780 + workers 410, 415)' from :meth:`Server.parts_now`, or '' without workers."""
    if not split or not split.get("workers"):
        return ""
    return f" (server {fmt(split['server'], 0)} + workers {', '.join(str(w) for w in split['workers'])})"


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def replace_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``path``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + body.rstrip() + "\n" + end + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n{begin}\n{body.rstrip()}\n{end}\n"
    path.write_text(text)


# -- main ------------------------------------------------------------------------------------------
async def main_async(args) -> dict:
    from playwright.async_api import async_playwright

    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        raise SystemExit(f"Chromium not found at {CHROMIUM} (set LANTERN_CHROMIUM); no browser is downloaded.")
    if args.url:  # a running set-up (bench/replicas.sh): nginx in front of replicas
        server = Deployment(args.url, args.replicas_state)
        log_path = server.state
    else:
        log_path = ROOT / "artifacts" / "loadtest" / "server.log"
        server = Server(log_path)
    report: dict = {"command": "bench/loadtest.py " + " ".join(sys.argv[1:]), "machine": machine(),
                    "started": datetime.now().isoformat(timespec="seconds"), "rows": ROWS, "features": FEATURES,
                    "train_rows": TRAIN_ROWS, "epochs": EPOCHS, "server_log": os.path.relpath(log_path, ROOT),
                    "rounds": [], "memory": {}}
    try:
        report["memory"]["cold_mb"] = server.rss_now()
        async with async_playwright() as playwright:
            crowd_executable = CHROMIUM
            if args.visitor_nice > 0:  # the N sessions' renderers stand in for browsers on the visitors' own machines
                crowd_executable = log_path.parent / "chromium-niced"
                crowd_executable.write_text(f'#!/bin/sh\nexec nice -n {args.visitor_nice} "{CHROMIUM}" "$@"\n')
                crowd_executable.chmod(0o755)
            report["visitor_nice"] = args.visitor_nice
            browser = await playwright.chromium.launch(executable_path=str(crowd_executable), args=CHROMIUM_ARGS)
            observer_browser = observer_context = observer = None
            try:
                print("warm-up session …", flush=True)
                if isinstance(server, Deployment):  # one warm-up session on each replica, at once
                    routes = route_cookies(server.url, list(server.replicas))
                    warm_ups = await asyncio.gather(*(
                        run_session(browser, server.url, 0, session_csv(0), args.session_timeout, None, route=route)
                        for route in routes.values()))
                else:
                    warm_ups = [await run_session(browser, server.url, 0, session_csv(0), args.session_timeout, None)]
                for warm, context in warm_ups:
                    await context.close()
                report["warmup"] = [asdict(warm) for warm, _ in warm_ups]
                await asyncio.sleep(args.after_wait)
                report["memory"]["baseline_mb"] = server.rss_now()
                report["memory"]["baseline_parts"] = server.parts_now()
                if args.observer:
                    print("observer session …", flush=True)
                    observer_browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                    observer_context, observer = await prepare_observer(observer_browser, server.url)
                index = 1
                for n in args.sessions:
                    print(f"round N={n} …", flush=True)
                    results, info = await run_round(browser, server, n, args.session_timeout, index, observer)
                    index += n
                    await asyncio.sleep(args.after_wait)
                    summary = round_summary(n, results, server, info, args.after_wait)
                    report["rounds"].append(summary)
                    print(f"  N={n}: {summary['completed']}/{n} completed, {summary['told_queued']} told queued, "
                          f"{summary['failed']} failed, slider p95 {fmt(summary['slider_ms']['p95'], 0)} ms, "
                          f"RSS {fmt(summary['rss_mb']['before'], 0)} → {fmt(summary['rss_mb']['peak'], 0)} → "
                          f"{fmt(summary['rss_mb']['after'], 0)} MiB", flush=True)
                    for r in results:
                        if r.failed:
                            print(f"    session {r.index}: {r.failed}", flush=True)
                if observer_browser is not None:
                    await observer_context.close()
                    await observer_browser.close()
                    observer_browser = None
                last_closed = time.time()
                report["memory"]["after_last_round_mb"] = server.rss_now()
                report["memory"]["after_last_round_wait_s"] = args.after_wait
                if args.ttl_wait > 0:
                    remaining = args.ttl_wait - (time.time() - last_closed)
                    print(f"waiting {max(remaining, 0):.0f} s for Streamlit's disconnected-session TTL …", flush=True)
                    await asyncio.sleep(max(remaining, 0))
                    probe = await browser.new_context()
                    page = await probe.new_page()
                    await open_app(page, server.url)
                    await probe.close()
                    await asyncio.sleep(10)
                    report["memory"]["after_ttl_mb"] = server.rss_now()
                    report["memory"]["after_ttl_parts"] = server.parts_now()
                    report["memory"]["ttl_wait_s"] = time.time() - last_closed
            finally:
                await browser.close()
                if observer_browser is not None:
                    await observer_browser.close()
        report["memory"]["peak_mb"] = max((v for _, v in server.samples), default=None)
        report["jobs_total"] = summarise_jobs(server.job_events())
        report["server_alive_at_end"] = server.alive()
        if isinstance(server, Deployment):
            report["deployment"] = {"url": server.url, "replicas": list(server.replicas)}
            report["memory"]["peak_parts"] = dict(server.peaks)
            report["memory"]["end_parts"] = server.parts_now()
    finally:
        server.stop()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[4, 8, 16], help="N per round (default 4 8 16)")
    parser.add_argument("--quick", action="store_true", help="one round of 2 sessions, short waits (smoke test)")
    parser.add_argument("--session-timeout", type=float, default=600, help="seconds one session may take")
    parser.add_argument("--after-wait", type=float, default=20, help="seconds after a round before sampling RSS")
    parser.add_argument("--ttl-wait", type=float, default=130,
                        help="seconds after the last round before the final RSS sample (0: skip)")
    parser.add_argument("--visitor-nice", type=int, default=19,
                        help="CPU priority (nice) of the N sessions' Chromium: as if it ran on the visitors' own "
                             "machines (0: same priority as the server, i.e. everything shares the cores)")
    parser.add_argument("--no-observer", dest="observer", action="store_false",
                        help="skip the observer visitor that moves its slider all through each round")
    parser.add_argument("--url", help="drive a running set-up instead of starting a server, e.g. nginx in front of "
                                       "replicas from bench/replicas.sh (http://127.0.0.1:8600)")
    parser.add_argument("--replicas-state", type=Path, default=ROOT / "artifacts" / "replicas",
                        help="with --url: bench/replicas.sh's STATE folder (pid files and replica logs)")
    parser.add_argument("--write-doc", action="store_true", help="replace the measured tables in docs/RELIABILITY.md")
    parser.add_argument("--out", type=Path, help="default bench/results/loadtest.json "
                                                   "(with --url: loadtest_replicas.json)")
    parser.add_argument("--from-json", type=Path, help="do not run: print (and --write-doc) a saved report")
    args = parser.parse_args()
    if args.out is None:
        args.out = RESULTS / ("loadtest_replicas.json" if args.url else "loadtest.json")
    if args.quick:
        args.sessions, args.after_wait, args.ttl_wait = [2], 5, 0
    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        report = asyncio.run(main_async(args))
    tables = markdown_tables(report)
    print("\n" + tables)
    if not args.from_json:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=str))
        print(f"\nwrote {args.out}")
    if args.write_doc:
        m = report["machine"]
        body = (f"Measured {report['started']} on {m['cpu']} × {m['cores']} cores, {m['memory_gb']} GB RAM "
                f"(`{report['command']}`).\n\n{tables}")
        doc, section = (REPLICAS_DOC, "loadtest-replicas") if report.get("deployment") else (DOC, "loadtest")
        replace_section(doc, section, body)
        print(f"updated {doc.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
