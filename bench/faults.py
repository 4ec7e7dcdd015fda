"""Fault cases of the shared demo, each run for real and its outcome recorded.

Two ``streamlit run app.py`` servers on 127.0.0.1 (see bench/loadtest.py for the server and browser helpers):

* **defaults** -- the shipped limits (2 job slots on a 2-core machine, 300 s job budget, 50 MB uploads):
  a tab closed mid-training, the Cancel button, a 500 MB upload, a CSV with 100,000 columns, CSV "bombs"
  (a gzip'd and a zipped 1 GiB CSV named ``.csv``, a 4-byte row repeated to just under 50 MB, wide rows up to
  the cell limit, and the largest upload the limits accept), two tabs of one user training at once;
* **tight** -- ``LANTERN_JOB_TIME_BUDGET_S=5`` and ``LANTERN_MAX_CONCURRENT_JOBS=1``: a job over its time
  budget, and two tabs of one user training at once with one slot (one is queued);

and, in this process, detector archives with tampered JSON loaded through ``engine.saving.load_detector``, and
hostile model files (truncated ONNX, an ONNX regressor, a ``.keras`` with a Lambda layer, a ``.skops`` with an
untrusted type, a file 10x over the size limit, a zip bomb named ``.keras``, random bytes, an ONNX whose weights
name a file of the server) loaded through
``engine.predictors.load_predictor``.

Every wait is bounded; each case records what was expected, what was observed, and pass/fail.

Run::

    .venv/bin/python bench/faults.py                 # all cases, about 5-8 min on a loaded 2-core machine
    .venv/bin/python bench/faults.py --only archive  # cases whose name contains a word
    .venv/bin/python bench/faults.py --only model    # the hostile model files only (no browser, seconds)
    .venv/bin/python bench/faults.py --write-doc     # also replace the fault table in docs/RELIABILITY.md

Results: a markdown table on stdout and ``bench/results/faults.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import zipfile
import zlib
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import loadtest as lt
from tests.crafted_files import onnx_with_external_weights, zip_members, zipped

ROOT = lt.ROOT
WORK = ROOT / "artifacts" / "faults"
GIB = 2**30
WATCHDOG_WAIT_S = 60
TRAIN_WAIT_S = 300


class Case:
    """One fault case: what should happen, what did, and whether that is what should."""

    def __init__(self, name: str, server: str, expected: str):
        self.record = {"case": name, "server": server, "expected": expected, "observed": "", "passed": False,
                       "details": {}}
        self.started = time.monotonic()

    def done(self, passed: bool, observed: str, **details) -> dict:
        self.record.update(passed=bool(passed), observed=observed, details=details,
                           seconds=round(time.monotonic() - self.started, 1))
        return self.record


# -- browser helpers ---------------------------------------------------------------------------------
async def new_page(browser, url: str):
    context = await browser.new_context(viewport={"width": 1440, "height": 1100}, accept_downloads=True)
    context.set_default_timeout(lt.STEP_TIMEOUT_MS)
    page = await context.new_page()
    await lt.open_app(page, url)
    return context, page


async def sidebar_server_status(page) -> str:
    """'server: N running · M queued' from the sidebar (one line of a markdown paragraph)."""
    text = await lt.tid(page, "stSidebar").inner_text()
    match = re.search(r"server: \d+ running · \d+ queued", text)
    return match.group(0) if match else f"(no server status in the sidebar: {text[:120]!r})"


async def prepare_training(page, epochs: int, max_rows: int | None = None) -> None:
    """On Tabular outliers (bundled Shuttle unless an upload is active): set epochs (and rows), not yet Train."""
    await lt.go_to_tabular_outliers(page)
    await lt.tid(page, "stExpander").filter(has_text="Model and training settings").locator("summary").click()
    await lt.set_number(page, "Epochs", epochs)
    if max_rows is not None:
        await lt.set_number(page, "Train on at most", max_rows)


async def press_train(page) -> None:
    await lt.tid(page, "stFormSubmitButton").locator("button").click()


async def start_training(server: lt.Server, page, epochs: int, max_rows: int | None = None) -> dict:
    """Prepare, press Train, and return the job's 'queued' log event (job id and short owner id)."""
    await prepare_training(page, epochs, max_rows)
    seen = len(server.job_events())
    await press_train(page)
    return (await new_jobs(server, seen, 1))[0]


async def new_jobs(server: lt.Server, seen: int, count: int, timeout_s: float = 120) -> list[dict]:
    """The first ``count`` 'queued' events logged after the first ``seen`` events."""
    events = await wait_events(server, lambda ev: sum(e["event"] == "queued" for e in ev[seen:]) >= count, timeout_s)
    if events is None:
        raise TimeoutError(f"no {count} new job(s) in the server log within {timeout_s} s")
    return [e for e in events[seen:] if e["event"] == "queued"][:count]


async def wait_running_or_queued(page) -> str:
    progress = lt.tid(page, "stProgress")
    queued = lt.tid(page, "stAlertContentInfo").filter(has_text="is queued")
    await progress.or_(queued).first.wait_for(state="visible", timeout=lt.STEP_TIMEOUT_MS)
    return "queued" if await queued.count() else "running"


async def wait_events(server: lt.Server, predicate, timeout_s: float) -> list[dict] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = server.job_events()
        if predicate(events):
            return events
        await asyncio.sleep(0.5)
    return None


async def upload_outcome(page, name: str, path_or_bytes: Path | bytes, timeout_ms: int = 120_000) -> dict:
    """Upload through the file chooser; return what the page says (uploader error, page error, active dataset)."""
    before = await lt.tid(page, "stHeading").filter(has_text="Active dataset:").inner_text()
    await lt.tid(page, "stTab").filter(has_text="Upload a CSV").click()
    dropzone = lt.tid(page, "stFileUploaderDropzone")
    async with page.expect_file_chooser() as chooser:
        await lt.tid(dropzone, "stBaseButton-secondary").click()
    files = (str(path_or_bytes) if isinstance(path_or_bytes, Path)
             else {"name": name, "mimeType": "text/csv", "buffer": path_or_bytes})
    started = time.monotonic()
    await (await chooser.value).set_files(files)
    page_error = lt.tid(page, "stAlertContentError")
    uploader_error = lt.tid(page, "stFileUploader").get_by_text(re.compile(r"must be|too large|not allowed", re.IGNORECASE))
    new_dataset = lt.tid(page, "stHeading").filter(has_text=f"Active dataset: {name}")
    await page_error.or_(uploader_error).or_(new_dataset).first.wait_for(state="visible", timeout=timeout_ms)
    seconds = time.monotonic() - started
    await lt.wait_idle(page)
    return {
        "seconds_to_answer": round(seconds, 1),
        "page_error": (await page_error.first.inner_text()) if await page_error.count() else None,
        "uploader_error": (await uploader_error.first.inner_text()) if await uploader_error.count() else None,
        "active_before": before,
        "active_after": await lt.tid(page, "stHeading").filter(has_text="Active dataset:").inner_text(),
        "exceptions": await lt.count_exceptions(page),
    }


# -- the files ----------------------------------------------------------------------------------------
def gzip_bomb(path: Path, expanded: int = GIB) -> Path:
    """A gzip stream of ``expanded`` bytes of '1,2\\n' rows (about 1 MB on disk), named .csv."""
    chunk = b"1,2\n" * (2**20 // 4)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
    with open(path, "wb") as out:
        out.writelines(compressor.compress(chunk) for _ in range(expanded // len(chunk)))
        out.write(compressor.flush())
    return path


def zip_bomb(path: Path, expanded: int = GIB) -> Path:
    chunk = b"1,2\n" * (2**20 // 4)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("data.csv", "w", force_zip64=True) as member:
            member.write(b"a,b\n")
            for _ in range(expanded // len(chunk)):
                member.write(chunk)
    return path


def repeated_row(path: Path, limit_bytes: int, row: bytes = b"1,2\n", header: bytes = b"a,b\n") -> Path:
    """``header`` then ``row`` repeated to just under ``limit_bytes``."""
    count = (limit_bytes - len(header) - 1024) // len(row)
    with open(path, "wb") as out:
        out.write(header)
        block = row * max(1, 2**20 // len(row))
        written = 0
        while written + len(block) // len(row) <= count:
            out.write(block)
            written += len(block) // len(row)
        out.write(row * (count - written))
    return path


def wide_rows(path: Path, rows: int, columns: int) -> Path:
    header = (",".join(f"c{i}" for i in range(columns)) + "\n").encode()
    return repeated_row(path, len(header) + rows * 2 * columns + 1025, row=(",".join("1" * columns) + "\n").encode(),
                        header=header)


# -- cases on the default server ------------------------------------------------------------------------
async def case_tab_closed(browser, server: lt.Server) -> dict:
    case = Case("tab closed mid-training", "defaults",
                "the watchdog logs owner_gone and cancels the job within a few seconds; its slot is free again")
    context, page = await new_page(browser, server.url)
    job = (await start_training(server, page, epochs=200))["job"]
    state = await wait_running_or_queued(page)
    await wait_events(server, lambda ev: any(e["job"] == job and e["event"] == "started" for e in ev), 120)
    await asyncio.sleep(2)  # let it train a little
    await context.close()
    closed = time.monotonic()
    events = await wait_events(server, lambda ev: any(e["job"] == job and e["event"] == "finished" for e in ev),
                               WATCHDOG_WAIT_S) if job else None
    cancel_s = round(time.monotonic() - closed, 1)
    of_job = [e for e in (events or []) if e["job"] == job]
    gone = any(e["event"] == "owner_gone" for e in of_job)
    outcome = next((e.get("outcome") for e in of_job if e["event"] == "finished"), None)
    probe, check = await new_page(browser, server.url)
    status = await sidebar_server_status(check)
    await probe.close()
    return case.done(gone and outcome == "cancelled" and status.startswith("server: 0 running"),
                     f"job {job} was {state}; after the tab closed: owner_gone={gone}, outcome={outcome} "
                     f"after {cancel_s} s; a new visitor's sidebar says '{status}'",
                     job=job, seconds_close_to_cancelled=cancel_s, log=[{k: v for k, v in e.items() if k != 't'}
                                                                       for e in of_job])


async def case_cancel_button(browser, server: lt.Server) -> dict:
    case = Case("training cancelled (Cancel button)", "defaults",
                "the job stops at the next batch, the page says it was cancelled, nothing is kept, no exception")
    context, page = await new_page(browser, server.url)
    owner = (await start_training(server, page, epochs=200))["owner"]
    await lt.tid(page, "stProgress").wait_for(state="visible", timeout=lt.STEP_TIMEOUT_MS)
    await asyncio.sleep(2)  # let it train a little
    clicked = time.monotonic()
    await lt.tid(page, "stButton").filter(has_text="Cancel").locator("button").click()
    message = lt.tid(page, "stAlertContentWarning").filter(has_text="was cancelled")
    await message.wait_for(state="visible", timeout=lt.STEP_TIMEOUT_MS)
    seconds = round(time.monotonic() - clicked, 1)
    text = await message.inner_text()
    await lt.wait_idle(page)
    results = await lt.tid(page, "stHeading").filter(has_text="Results").count()
    exceptions = await lt.count_exceptions(page)
    events = await wait_events(server, lambda ev: any(e["owner"] == owner and e["event"] == "finished" for e in ev), 30)
    outcome = next((e["outcome"] for e in events or [] if e["owner"] == owner and e["event"] == "finished"), None)
    await context.close()
    return case.done(outcome == "cancelled" and not results and not exceptions,
                     f"'{text}' {seconds} s after the click; log outcome={outcome}; results shown: {bool(results)}; "
                     f"exceptions: {exceptions}", seconds_click_to_message=seconds)


async def upload_case(browser, server: lt.Server, name: str, expected: str, file_name: str, content,
                      accept, timeout_ms: int = 120_000) -> dict:
    """One upload through the browser; ``accept(outcome) -> bool`` says whether the outcome is the right one."""
    case = Case(name, "defaults", expected)
    context, page = await new_page(browser, server.url)
    rss_before = server.rss_now()
    size = content.stat().st_size if isinstance(content, Path) else len(content)
    try:
        outcome = await upload_outcome(page, file_name, content, timeout_ms=timeout_ms)
    except Exception as exc:
        await context.close()
        return case.done(False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}", size_bytes=size)
    outcome["rss_before_mb"], outcome["rss_after_mb"] = rss_before, server.rss_now()
    outcome["rss_peak_mb"] = max((v for t, v in server.samples[-400:]), default=None)
    await context.close()
    said = outcome["uploader_error"] or outcome["page_error"] or outcome["active_after"]
    return case.done(accept(outcome) and not outcome["exceptions"],
                     f"{size / 2**20:,.1f} MB file: \"{said}\" after {outcome['seconds_to_answer']} s; active dataset "
                     f"{'unchanged' if outcome['active_after'] == outcome['active_before'] else 'changed'}; "
                     f"server RSS {lt.fmt(rss_before, 0)} → {lt.fmt(outcome['rss_after_mb'], 0)} MiB",
                     size_bytes=size, **outcome)


def refused(*words: str):
    def check(outcome: dict) -> bool:
        text = (outcome["page_error"] or "") + (outcome["uploader_error"] or "")
        return bool(text) and all(w.lower() in text.lower() for w in words) and \
            outcome["active_after"] == outcome["active_before"]
    return check


async def case_two_tabs(browser, server: lt.Server, label: str, server_name: str, expect_queue: bool) -> dict:
    case = Case(label, server_name,
                "both tabs train; " + ("one waits in the queue and says so, then runs; " if expect_queue else
                                       "with two slots both run at once; ") + "each shows its own results, no exception")
    context = await browser.new_context(viewport={"width": 1440, "height": 1100})
    context.set_default_timeout(lt.STEP_TIMEOUT_MS)
    pages = [await context.new_page(), await context.new_page()]  # one user: two tabs of one browser profile
    for page in pages:
        await lt.open_app(page, server.url)
    for page in pages:
        await prepare_training(page, epochs=3, max_rows=3000)
    seen = len(server.job_events())
    await asyncio.gather(*(press_train(p) for p in pages))  # both tabs press Train at the same moment
    owners = [e["owner"] for e in await new_jobs(server, seen, 2)]
    states = []
    for page in pages:
        states.append(await wait_running_or_queued(page))
    results = []
    for page in pages:
        heading = lt.tid(page, "stHeading").filter(has_text="Results")
        try:
            await heading.wait_for(state="visible", timeout=TRAIN_WAIT_S * 1000)
            await lt.wait_idle(page)
            results.append(await lt.flagged_now(page))
        except Exception as exc:
            results.append(f"{type(exc).__name__}")
    exceptions = [await lt.count_exceptions(p) for p in pages]
    events = server.job_events()
    mine = [e for e in events if e["owner"] in owners]
    waits = [e["queue_wait_s"] for e in mine if e["event"] == "started"]
    outcomes = [e["outcome"] for e in mine if e["event"] == "finished"]
    await context.close()
    queued_seen = "queued" in states or any(w > 1.0 for w in waits)
    passed = (all(isinstance(r, int) for r in results) and outcomes == ["done", "done"] and not any(exceptions)
              and (queued_seen if expect_queue else True) and owners[0] != owners[1])
    return case.done(passed, f"two sessions ({owners[0]}, {owners[1]}); first seen as {states}; queue waits "
                             f"{[round(w, 1) for w in waits]} s; outcomes {outcomes}; flagged rows {results}; "
                             f"exceptions {exceptions}", owners=owners, states=states, queue_waits=waits)


# -- cases on the tight server --------------------------------------------------------------------------
async def case_time_budget(browser, server: lt.Server) -> dict:
    case = Case("job over its time budget", "tight (budget 5 s, 1 slot)",
                "training stops at the 5 s budget, keeps what it learned, and the page says so; results are shown")
    context, page = await new_page(browser, server.url)
    owner = (await start_training(server, page, epochs=200))["owner"]
    success = lt.tid(page, "stAlertContentSuccess").filter(has_text="finished")
    await success.or_(lt.tid(page, "stAlertContentError")).first.wait_for(state="visible", timeout=TRAIN_WAIT_S * 1000)
    text = await success.first.inner_text() if await success.count() else await lt.tid(page, "stAlertContentError").first.inner_text()
    await lt.wait_idle(page)
    results = await lt.tid(page, "stHeading").filter(has_text="Results").count()
    exceptions = await lt.count_exceptions(page)
    finished = [e for e in server.job_events() if e["owner"] == owner and e["event"] == "finished"]
    await context.close()
    return case.done("stopped at the time budget" in text and results and not exceptions,
                     f"'{text}'; results shown: {bool(results)}; job log {[(e['outcome'], e['duration_s']) for e in finished]}",
                     message=text, log=[{k: v for k, v in e.items() if k != 't'} for e in finished])


# -- archives (in process) -------------------------------------------------------------------------------
def case_tampered_archives() -> dict:
    import numpy as np

    from engine.errors import ArchiveError
    from engine.od import OutlierAEGMM
    from engine.saving import detector_to_bytes, load_detector

    case = Case("detector archive with tampered JSON", "in process (engine.saving.load_detector)",
                "every tampered archive is refused with an ArchiveError naming the problem; nothing is executed")
    x = np.random.default_rng(0).normal(size=(200, 4)).astype("float32")
    detector = OutlierAEGMM(n_gmm=2)
    detector.fit(x, epochs=1, batch_size=64, verbose=False, seed=0)
    detector.infer_threshold(x, threshold_perc=95)
    archive = detector_to_bytes(detector)
    assert load_detector(archive).threshold == detector.threshold

    def rewrite(edit) -> bytes:
        members = zip_members(archive)
        members["manifest.json"] = edit(members["manifest.json"])
        return zipped(members)

    def json_edit(change):
        def edit(raw: bytes) -> bytes:
            manifest = json.loads(raw)
            change(manifest)
            return json.dumps(manifest).encode()
        return edit

    def first_spec(manifest):
        """The first network spec (a dict with 'layers') anywhere in the config."""
        stack = [manifest["config"]]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                if isinstance(item.get("layers"), list) and item["layers"]:
                    return item
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        raise AssertionError("no network spec in the archive")

    def set_layer(key, value):
        def change(manifest):
            layer = next(l for l in first_spec(manifest)["layers"] if key in l.get("config", l))
            (layer["config"] if "config" in layer else layer)[key] = value
        return change

    tampered = {
        "not JSON": lambda raw: raw[: len(raw) // 2],
        "JSON list instead of object": lambda raw: b"[1, 2, 3]",
        "class renamed to builtins.eval": json_edit(lambda m: m.update({"class": "builtins.eval"})),
        "kind changed to explainer": json_edit(lambda m: m.update({"kind": "explainer"})),
        "format marker removed": json_edit(lambda m: m.pop("format")),
        "future format version": json_edit(lambda m: m.update({"format_version": 999})),
        "layer units changed (weights no longer fit)": json_edit(set_layer("units", 7)),
        "activation set to a lambda": json_edit(set_layer("activation", "lambda x: __import__('os').system('id')")),
        "layer class set to Lambda": json_edit(lambda m: first_spec(m)["layers"][0].update({"class": "Lambda"})),
        "n_gmm set to a string": json_edit(lambda m: m["config"].update({"n_gmm": "two"})),
        "config emptied": json_edit(lambda m: m.update({"config": {}})),
        "manifest padded to 20 MB": lambda raw: raw[:-1] + b"," + b'"pad": "' + b"x" * 20_000_000 + b'"}',
    }
    results = {}
    for name, edit in tampered.items():
        try:
            data = rewrite(edit)
        except Exception as exc:  # the edit itself did not apply to this archive layout
            results[name] = f"edit not applicable ({type(exc).__name__}: {exc})"
            continue
        try:
            load_detector(data)
            results[name] = "LOADED"
        except ArchiveError as exc:
            results[name] = f"ArchiveError: {exc}"
        except Exception as exc:
            results[name] = f"{type(exc).__name__} (not an ArchiveError): {exc}"
    passed = all(v.startswith("ArchiveError") for v in results.values())
    refused_n = sum(v.startswith("ArchiveError") for v in results.values())
    # Where the app reads archives: only the trusted-mode uploader (ui/archives.py, off unless LANTERN_TRUSTED=1) and
    # the jobs and workflow views that score with what it accepted or what the server itself made (jobs/, workflows/).
    readers = sorted(str(p.relative_to(ROOT)) for folder in ("pages", "ui") for p in (ROOT / folder).glob("*.py")
                     if re.search(r"load_detector|load_explainer", p.read_text()))
    allowed = {"ui/archives.py"}
    gated = "trusted_mode" in (ROOT / "ui" / "archives.py").read_text()
    return case.done(passed and set(readers) <= allowed and gated,
                     f"{refused_n}/{len(results)} tampered archives refused with ArchiveError; app modules that read "
                     f"archives: {', '.join(readers) or 'none'} (the uploader only with LANTERN_TRUSTED=1)",
                     results=results)


# -- hostile model files (in process) -------------------------------------------------------------------
def _user_function(x):
    """A function of the uploader's own, which a .skops file can only name, and skops does not trust."""
    return x


def case_hostile_models() -> dict:
    """Model files a visitor could upload as "my own model", each given to ``engine.predictors.load_predictor``."""
    import os
    import tempfile

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np
    import skops.io as sio
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from engine.errors import ModelError
    from engine.predictors import DEFAULT_MAX_MB, load_predictor

    case = Case("hostile model files", "in process (engine.predictors.load_predictor, trusted mode on)",
                "every hostile file is refused with a ModelError naming the problem, before any of its code runs "
                "or it is unpacked")
    X, y = load_iris(return_X_y=True)
    X = X.astype("float32")
    good_onnx = to_onnx(LogisticRegression(max_iter=500).fit(X, y), X[:1]).SerializeToString()
    assert load_predictor(good_onnx).n_classes == 3
    tmp = Path(tempfile.mkdtemp(prefix="lantern-faults-"))

    def keras_lambda() -> Path:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2),
                                  keras.layers.Dense(3, activation="softmax")])
        model.save(tmp / "lambda.keras")
        return tmp / "lambda.keras"

    def untrusted_skops() -> bytes:
        model = make_pipeline(FunctionTransformer(_user_function), LogisticRegression(max_iter=500)).fit(X, y)
        return sio.dumps(model)

    def over_limit() -> Path:
        with open(tmp / "huge.onnx", "wb") as f:  # sparse: 10x the size limit, nothing written
            f.truncate(10 * DEFAULT_MAX_MB * 2**20)
        return tmp / "huge.onnx"

    def keras_zip_bomb() -> Path:
        with zipfile.ZipFile(tmp / "bomb.keras", "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            zf.writestr("metadata.json", b'{"keras_version": "3.15.1"}')
            zf.writestr("config.json", b'{"module": "keras", "class_name": "Sequential", "config": {}}')
            with zf.open("model.weights.h5", "w", force_zip64=True) as member:
                chunk = b"\0" * 2**24
                for _ in range(GIB // len(chunk)):
                    member.write(chunk)
        return tmp / "bomb.keras"

    hostile = {
        "truncated ONNX": lambda: good_onnx[: len(good_onnx) // 2],
        "ONNX regressor (output is not a probability)": lambda: to_onnx(LinearRegression().fit(X, y), X[:1])
        .SerializeToString(),
        ".keras with a Lambda layer": keras_lambda,
        ".skops with an untrusted type (a FunctionTransformer of the user's function)": untrusted_skops,
        "a 1,000 MB .onnx (limit 100 MB)": over_limit,
        "zip bomb named .keras (1 GiB of zeros in about 1 MB)": keras_zip_bomb,
        "random bytes": lambda: np.random.default_rng(0).bytes(4096),
        # pyproject.toml: a file of the server's working directory.
        "ONNX whose weights name a server file (external data)": lambda: onnx_with_external_weights("pyproject.toml"),
    }
    results, seconds = {}, {}
    for name, make in hostile.items():
        try:
            source = make()
        except Exception as exc:
            results[name] = f"could not make the file ({type(exc).__name__}: {exc})"
            continue
        started = time.monotonic()
        try:
            load_predictor(source, trusted=True)
            results[name] = "LOADED"
        except ModelError as exc:
            results[name] = f"ModelError: {exc}"
        except Exception as exc:
            results[name] = f"{type(exc).__name__} (not a ModelError): {exc}"
        seconds[name] = round(time.monotonic() - started, 3)
    for leftover in tmp.iterdir():
        leftover.unlink()
    tmp.rmdir()
    refused_n = sum(v.startswith("ModelError") for v in results.values())
    return case.done(refused_n == len(results),
                     f"{refused_n}/{len(results)} hostile model files refused with ModelError, each within "
                     f"{1000 * max(seconds.values(), default=0):.0f} ms",
                     results=results, seconds=seconds)


# -- main ------------------------------------------------------------------------------------------------
async def run_browser_cases(args, chosen) -> list[dict]:
    from playwright.async_api import async_playwright

    WORK.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []

    async def guarded(coro_factory, name):
        if not chosen(name):
            return
        print(f"case: {name} …", flush=True)
        try:
            record = await asyncio.wait_for(coro_factory(), timeout=args.case_timeout)
        except Exception as exc:
            record = Case(name, "?", "").done(False, f"the case itself failed: {type(exc).__name__}: "
                                                     f"{str(exc).splitlines()[0][:300] if str(exc) else ''}")
        record["case"] = name
        print(f"  {'PASS' if record['passed'] else 'FAIL'}: {record['observed']}", flush=True)
        records.append(record)

    upload_names = ("500 MB upload", "CSV with 100,000 columns", "gzip'd 1 GiB CSV named .csv",
                    "zipped 1 GiB CSV named .csv", "4-byte row repeated to just under 50 MB",
                    "wide rows over the cell limit", "largest upload within every limit")
    default_names = ("tab closed mid-training", "training cancelled (Cancel button)") + upload_names + (
        "two tabs of one user (2 slots)",)
    tight_names = ("job over its time budget", "two tabs of one user (1 slot)")
    if not any(chosen(n) for n in default_names + tight_names):
        return records
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(lt.CHROMIUM), args=lt.CHROMIUM_ARGS)
        try:
            if any(chosen(n) for n in default_names):
                server = lt.Server(WORK / "server-defaults.log")
                try:
                    await guarded(lambda: case_tab_closed(browser, server), "tab closed mid-training")
                    await guarded(lambda: case_cancel_button(browser, server), "training cancelled (Cancel button)")
                    big = WORK / "big.csv"
                    if chosen("500 MB upload"):
                        with open(big, "wb") as f:  # sparse: 500 MB by size, nothing written
                            f.truncate(500 * 2**20)
                    await guarded(lambda: upload_case(
                        browser, server, "500 MB upload", "refused by the uploader before anything reaches the server; "
                        "the message names the 50 MB limit", "big.csv", big,
                        lambda o: bool(o["uploader_error"]) and "50" in o["uploader_error"]
                        and o["active_after"] == o["active_before"]), "500 MB upload")
                    await guarded(lambda: upload_case(
                        browser, server, "CSV with 100,000 columns", "refused by the column limit, before parsing",
                        "wide.csv", (",".join(f"c{i}" for i in range(100_000)) + "\n" + ",".join("1" * 100_000)
                                     + "\n").encode(), refused("100,000 columns", "limit is 1,000")),
                        "CSV with 100,000 columns")
                    await guarded(lambda: upload_case(
                        browser, server, "gzip'd 1 GiB CSV named .csv", "refused as binary; nothing is decompressed",
                        "bomb.csv", gzip_bomb(WORK / "bomb.csv"), refused("binary")), "gzip'd 1 GiB CSV named .csv")
                    await guarded(lambda: upload_case(
                        browser, server, "zipped 1 GiB CSV named .csv", "refused as binary; nothing is decompressed",
                        "zipbomb.csv", zip_bomb(WORK / "zipbomb.csv"), refused("binary")),
                        "zipped 1 GiB CSV named .csv")
                    await guarded(lambda: upload_case(
                        browser, server, "4-byte row repeated to just under 50 MB",
                        "refused by the row limit counted on the raw bytes, before parsing",
                        # Streamlit's uploader counts a MB as 1,000,000 bytes: stay under that.
                        "rows.csv", repeated_row(WORK / "rows.csv", 50_000_000), refused("rows", "limit is 200,000")),
                        "4-byte row repeated to just under 50 MB")
                    await guarded(lambda: upload_case(
                        browser, server, "wide rows over the cell limit",
                        "refused by the cell limit (rows × columns), before parsing",
                        "cells.csv", wide_rows(WORK / "cells.csv", 190_000, 125), refused("cells", "20,000,000")),
                        "wide rows over the cell limit")
                    await guarded(lambda: upload_case(
                        browser, server, "largest upload within every limit",
                        "accepted and shown (the worst case the limits allow); what it costs the server in time and memory is recorded",
                        "largest.csv", wide_rows(WORK / "largest.csv", 159_000, 125),
                        lambda o: o["active_after"] == "Active dataset: largest.csv", timeout_ms=300_000),
                        "largest upload within every limit")
                    await guarded(lambda: case_two_tabs(browser, server, "two tabs of one user (2 slots)", "defaults",
                                                        expect_queue=False), "two tabs of one user (2 slots)")
                finally:
                    server.stop()
            if any(chosen(n) for n in tight_names):
                server = lt.Server(WORK / "server-tight.log",
                                   env={"LANTERN_JOB_TIME_BUDGET_S": "5", "LANTERN_MAX_CONCURRENT_JOBS": "1"})
                try:
                    await guarded(lambda: case_time_budget(browser, server), "job over its time budget")
                    await guarded(lambda: case_two_tabs(browser, server, "two tabs of one user (1 slot)",
                                                        "tight (budget 5 s, 1 slot)", expect_queue=True),
                                  "two tabs of one user (1 slot)")
                finally:
                    server.stop()
        finally:
            await browser.close()
    for leftover in ("big.csv", "bomb.csv", "zipbomb.csv", "rows.csv", "cells.csv", "largest.csv"):
        (WORK / leftover).unlink(missing_ok=True)
    return records


def markdown(records: list[dict]) -> str:
    lines = ["| fault | server | expected | observed | outcome |", "|---|---|---|---|---|"]
    for r in records:
        # Streamlit's alert text starts with its icon's name ("error"); drop it and the line breaks.
        observed = re.sub(r'"error\s+', '"', r["observed"])
        observed = re.sub(r"\s+", " ", observed).replace("|", "\\|")
        lines.append(f"| {r['case']} | {r['server']} | {r['expected']} | {observed} | "
                     f"{'✅ as expected' if r['passed'] else '❌ not as expected'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[], help="run cases whose name contains one of these words")
    parser.add_argument("--case-timeout", type=float, default=420, help="seconds one case may take")
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--out", type=Path, default=lt.RESULTS / "faults.json")
    parser.add_argument("--from-json", type=Path, help="do not run: print (and --write-doc) a saved report")
    args = parser.parse_args()
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        table = markdown(report["cases"])
        print(table)
        if args.write_doc:
            lt.replace_section(lt.DOC, "faults", f"Measured {report['started']} (`{report['command']}`).\n\n{table}")
        return
    chosen = lambda name: not args.only or any(w.lower() in name.lower() for w in args.only)
    started = datetime.now().isoformat(timespec="seconds")
    records = asyncio.run(run_browser_cases(args, chosen))
    if chosen("detector archive with tampered JSON"):
        print("case: detector archive with tampered JSON …", flush=True)
        record = case_tampered_archives()
        print(f"  {'PASS' if record['passed'] else 'FAIL'}: {record['observed']}", flush=True)
        records.append(record)
    if chosen("hostile model files"):
        print("case: hostile model files …", flush=True)
        record = case_hostile_models()
        print(f"  {'PASS' if record['passed'] else 'FAIL'}: {record['observed']}", flush=True)
        records.append(record)
    table = markdown(records)
    print("\n" + table)
    report = {"command": "bench/faults.py " + " ".join(sys.argv[1:]), "started": started, "machine": lt.machine(),
              "cases": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwrote {args.out}")
    if args.write_doc:
        lt.replace_section(lt.DOC, "faults", f"Measured {started} (`{report['command']}`).\n\n{table}")
        print(f"updated {lt.DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
