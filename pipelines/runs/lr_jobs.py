"""The learning-rate finder in the background: one process per finder, its result a JSON
file under ``RUNS_DIR/lr_find/<job id>/``.

A finder is short (seconds to a minute) and keeps nothing worth a run's record, so it is not
a run: no row in the run store, no slot of ``MAX_RUNNING_EXPERIMENTS``, no queue. What a run
and a finder share is the process shape: :func:`start` spawns ``python -m pipelines lr-find
... --out FILE`` in a new session (it outlives a page rerun, and the dashboard stays
usable), which rewrites ``result.json`` atomically with the points so far about twice a
second and once more at the end (``ended``: ``completed``, ``diverged``, ``stopped`` or
``failed`` with ``error``). :func:`read` answers ``interrupted`` for a finder whose process
died without a final word. :func:`stop` sends SIGTERM (the finder stops before its next
step or inference batch and writes what it has) and SIGKILL if the process is still there
after ``STOP_WAIT_S``, so a stop takes under 2 s even while a backbone loads.

The folder holds ``job.json`` (pid, its start time, phase, arm), ``config.json`` (the
experiment config the finder reads), ``result.json`` and ``finder.log`` (stderr). The newest
:data:`KEEP` finished finders are kept (:func:`prune`, at every start).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from pipelines import settings
from pipelines.errors import UserError
from pipelines.runs.lifecycle import process_alive
from pipelines.training.config import ExperimentConfig
from pipelines.training.preflight import check_experiment

FOLDER = "lr_find"
STOP_WAIT_S = 1.5
KEEP = 50  # finished finders' folders kept; older ones go when a new finder starts
FINAL = ("completed", "diverged", "stopped", "failed", "interrupted")
_JOB_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
_children: dict[str, subprocess.Popen] = {}  # collected on read, so none lingers as a zombie


def job_dir(job_id: str) -> Path:
    """The finder's folder; a malformed id is refused (it is part of a path)."""
    if not _JOB_ID.match(str(job_id)):
        raise UserError(f"{job_id!r} is not a learning-rate finder id")
    return settings.runs_dir() / FOLDER / job_id


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def start(config: ExperimentConfig, *, phase: int, arm: str) -> str:
    """Check the request (cheap checks, as a run's Start makes them), spawn the finder and
    return its id at once."""
    from pipelines.training.lr_find import check_request

    check_experiment(config)
    check_request(config, phase, arm)
    prune()
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    folder = job_dir(job_id)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config.to_json())
    command = [
        sys.executable,
        "-m",
        "pipelines",
        "lr-find",
        "--config",
        str(folder / "config.json"),
        "--phase",
        str(phase),
        "--arm",
        arm,
        "--out",
        str(folder / "result.json"),
    ]
    try:
        with open(folder / "finder.log", "ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the server; no Ctrl-C from its terminal
            )
    except OSError as e:
        raise UserError(f"could not start the learning-rate finder: {e}") from None
    _children[job_id] = proc
    started = None
    with contextlib.suppress(psutil.Error):
        started = psutil.Process(proc.pid).create_time()
    write_json(
        folder / "job.json",
        {"pid": proc.pid, "started": started, "phase": phase, "arm": arm},
    )
    return job_id


def read(job_id: str) -> dict:
    """The finder's result so far: ``ended`` is ``starting`` (nothing written yet),
    ``running`` (partial points) or one of :data:`FINAL`; a finder whose process is gone
    without a final result reads ``interrupted``."""
    folder = job_dir(job_id)
    _collect()
    try:
        job = json.loads((folder / "job.json").read_text())
    except FileNotFoundError:
        raise UserError(f"no learning-rate finder {job_id} (its folder was deleted?)") from None
    try:
        result = json.loads((folder / "result.json").read_text())
    except FileNotFoundError:
        result = {"ended": "starting", "lrs": [], "losses": [], "smoothed": []}
    result.setdefault("phase", job.get("phase"))
    result.setdefault("arm", job.get("arm"))
    if result.get("ended") not in FINAL and not process_alive(job["pid"], job.get("started")):
        result["ended"] = "stopped" if job.get("stop") else "interrupted"
        if not job.get("stop"):
            result["error"] = "the finder's process ended without a result; see " + str(
                folder / "finder.log"
            )
    return result


def stop(job_id: str) -> dict:
    """Stop the finder: SIGTERM, then SIGKILL after ``STOP_WAIT_S``; its result as
    :func:`read` then gives it (``stopped`` with the points so far)."""
    folder = job_dir(job_id)
    job = json.loads((folder / "job.json").read_text())
    write_json(folder / "job.json", {**job, "stop": True})
    pid, started = job["pid"], job.get("started")
    if process_alive(pid, started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while process_alive(pid, started) and time.monotonic() < deadline:
            _collect()
            time.sleep(0.05)
        if process_alive(pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _collect()
    result = read(job_id)
    if result.get("ended") not in FINAL:
        result["ended"] = "stopped"
    return result


def prune(keep: int = KEEP) -> list[str]:
    """Delete all but the newest ``keep`` finished finders' folders (a running one is
    never deleted); return the ids deleted."""
    root = settings.runs_dir() / FOLDER
    if not root.is_dir():
        return []
    ids = sorted((p.name for p in root.iterdir() if _JOB_ID.match(p.name)), reverse=True)
    gone = []
    for job_id in ids[keep:]:
        with contextlib.suppress(UserError, OSError, ValueError):
            if read(job_id).get("ended") in FINAL:
                shutil.rmtree(root / job_id)
                gone.append(job_id)
    return gone


def _collect() -> None:
    for job_id, proc in list(_children.items()):
        if proc.poll() is not None:
            _children.pop(job_id, None)
