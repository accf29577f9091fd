"""A sweep's Optuna study: where it is stored, how it is made, and how it is read.

**Storage.** Every sweep is one Optuna study named by its sweep id, in one storage:

* the embedded default, ``RUNS_DIR/sweeps.journal``: Optuna's ``JournalFileBackend``, an
  append-only operation log guarded by a lock file. Chosen over SQLite because several
  worker processes write to the study at once (each trial's intermediate values, attributes
  and result), and parallel writers are SQLite's known weak spot under Optuna ("database is
  locked" once writers contend; Optuna's docs advise against SQLite for parallel
  optimisation), while the journal is Optuna's storage for several processes on one
  machine, needs no server, and takes each worker's writes as small appends;
* any Optuna storage URL through ``storage=`` / ``--storage`` or ``SWEEP_STORAGE``:
  ``postgresql://user:password@host/db`` (several machines), ``mysql://...``,
  ``sqlite:///path`` (one machine), or ``journal:PATH`` for a journal file elsewhere.
  An unreachable database fails within ``CONNECT_TIMEOUT_S`` with a :class:`UserError`
  naming the URL without its password.

**Trials as a queue.** Each trial is created up front as a *waiting* Optuna trial, and a
worker takes one by moving it to *running* through the storage's own atomic state change
(what ``Study.ask`` does for enqueued trials): a grid's points are enqueued one per point,
so no two workers ever run the same point (Optuna's ``GridSampler`` itself may repeat a
point under several workers); a random or TPE sweep enqueues ``budget`` empty trials that
the sampler fills when a worker takes them, so the sweep ends at exactly its budget. The
sampler is seeded per trial from ``(seed, trial number)``, so a random sweep draws the same
points whichever worker takes which trial. A trial whose worker died is failed and
re-enqueued with the same parameters (:func:`reap_trials`).

Study attributes: ``spec`` (the :class:`SweepSpec` as a dict), ``created`` (Unix s),
``budget``, ``stopped`` and ``stopped_at`` (set by :func:`stop_sweep`). Trial attributes:
``run_id``, ``worker`` (``{host, pid, started}``), ``beat`` (Unix s), ``curves`` (``{arm:
[val acc per epoch]}``), ``run_status``, ``error``, ``retry_of``, ``stopped_by_user``.

**A trial stopped from its run** (the run's Stop, or Force stop, on the Runs page or the
run view; not the sweep's Stop) means "skip this configuration": the trial is failed (Optuna
has no other end for it) with ``stopped_by_user`` set and :data:`STOPPED_BY_USER` as its
error, shown as *stopped*, and it is not run again (not re-enqueued).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import settings
from pipelines.errors import UserError
from pipelines.sweeps.space import SweepSpec

if TYPE_CHECKING:
    import optuna

STORAGE_ENV = "SWEEP_STORAGE"
JOURNAL_FILE = "sweeps.journal"
CONNECT_TIMEOUT_S = 10
STALE_AFTER_S = 120.0  # a remote worker silent this long has died
BEAT_S = 10.0  # how often a worker records that its trial is alive
STATES = ("WAITING", "RUNNING", "COMPLETE", "PRUNED", "FAIL")
STOPPED_BY_USER = "stopped from its run: this configuration is skipped, not run again"
SWEEP_STOPPED = "the sweep was stopped"

_storages: dict[str, Any] = {}


# --- storage -----------------------------------------------------------------------------------


def storage_url(storage: str | None = None) -> str:
    """The storage to use: ``storage``, else ``SWEEP_STORAGE``, else the embedded journal
    file ``journal:RUNS_DIR/sweeps.journal``."""
    url = (storage or os.environ.get(STORAGE_ENV, "")).strip()
    if url:
        return url
    return f"journal:{(settings.runs_dir() / JOURNAL_FILE).resolve()}"


def safe_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def open_storage(storage: str | None = None):
    """The Optuna storage for ``storage`` (see :func:`storage_url`), opened once per process;
    :class:`UserError` naming the URL (without its password) where it can't be used."""
    url = storage_url(storage)
    if url in _storages:
        return _storages[url]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url.startswith("journal:") or "://" not in url:
        path = Path(url.removeprefix("journal:").removeprefix("//"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = optuna.storages.journal.JournalFileBackend(
                str(path), lock_obj=optuna.storages.journal.JournalFileOpenLock(str(path))
            )
            opened = optuna.storages.JournalStorage(backend)
        except OSError as e:
            raise UserError(f"sweep storage {path} can't be opened: {e}") from None
    else:
        opened = _open_rdb(url)
    _storages[url] = opened
    return opened


def _open_rdb(url: str):
    import optuna
    import sqlalchemy.exc

    scheme = url.split("://", 1)[0].lower()
    connect_args: dict[str, Any] = {}
    if scheme.startswith("postgres"):
        # libpq tries each address of a host name (IPv6 and IPv4 for localhost) in turn.
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S // 3}
    elif scheme.startswith("mysql"):
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S // 2}
    elif scheme.startswith("sqlite"):
        connect_args = {"timeout": 30}
    logging.getLogger("sqlalchemy").setLevel(logging.ERROR)
    try:
        return optuna.storages.RDBStorage(
            _with_driver(url), engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True}
        )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise UserError(
            f"sweep storage {safe_url(url)} can't be reached: {reason}; check the URL, that the "
            "database server runs and accepts connections from here, or leave --storage out "
            "for the embedded storage"
        ) from None


def _with_driver(url: str) -> str:
    """``postgresql://`` (or ``postgres://``) with the driver that is installed: SQLAlchemy
    2.1 means psycopg 3 by it; this project pins psycopg2 (``psycopg2-binary``)."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in ("postgresql", "postgres"):
        return url
    try:
        import psycopg  # noqa: F401

        return f"postgresql+psycopg://{rest}"
    except ImportError:
        return f"postgresql+psycopg2://{rest}"


# --- studies -----------------------------------------------------------------------------------


def new_sweep_id() -> str:
    """``sweep-YYYYMMDD-HHMMSS-xxxx``."""
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def create_study(spec: SweepSpec, storage: str | None = None) -> str:
    """Validate ``spec``, create its study with every trial waiting, return the sweep id."""
    import optuna

    spec = spec.validate()
    budget = spec.budget()
    st = open_storage(storage)
    sweep_id = new_sweep_id()
    study = optuna.create_study(study_name=sweep_id, storage=st, direction="maximize")
    study.set_user_attr("spec", spec.to_dict())
    study.set_user_attr("created", time.time())
    study.set_user_attr("budget", budget)
    if spec.sampler == "grid":
        for point, _ in zip(spec.grid_points(), range(budget), strict=False):
            study.enqueue_trial(point)
    else:
        for _ in range(budget):
            study.enqueue_trial({})
    return sweep_id


def load_study(sweep_id: str, storage: str | None = None) -> optuna.Study:
    """The sweep's study; :class:`UserError` if there is none."""
    import optuna

    st = open_storage(storage)
    try:
        return optuna.load_study(study_name=sweep_id, storage=st, pruner=optuna.pruners.NopPruner())
    except KeyError:
        raise UserError(
            f"no sweep {sweep_id!r} in {safe_url(storage_url(storage))}; "
            "`python -m pipelines sweeps list` shows them"
        ) from None


def study_spec(study: optuna.Study) -> SweepSpec:
    return SweepSpec.from_dict(study.user_attrs["spec"])


def make_sampler(spec: SweepSpec, number: int):
    """The sampler for trial ``number``, seeded from ``(seed, number)`` so any worker draws
    the same; a grid's trials carry their point already (any sampler leaves it alone)."""
    import optuna

    seed = (spec.seed * 1_000_003 + number) % 2**32
    if spec.sampler == "tpe":
        startup = max(2, min(10, spec.budget() // 3))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(spec: SweepSpec):
    """``median``: stop a trial whose epoch's objective is below the median of the earlier
    trials' at the same epoch, once 3 trials have finished and from its second epoch on."""
    import optuna

    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)


def take_trial(study: optuna.Study, spec: SweepSpec) -> optuna.Trial | None:
    """Move one waiting trial to running for this process (atomically, through the storage)
    and return it with its sampler and pruner set; None when none is waiting."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    st = study._storage
    for frozen in st.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if not st.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        study.sampler = make_sampler(spec, frozen.number)
        study.pruner = make_pruner(spec)
        trial = optuna.Trial(study, frozen._trial_id)
        me = worker_identity()
        trial.set_user_attr("worker", me)
        trial.set_user_attr("beat", time.time())
        return trial
    return None


def worker_identity() -> dict[str, Any]:
    import psutil

    proc = psutil.Process()
    return {"host": socket.gethostname(), "pid": proc.pid, "started": proc.create_time()}


def reap_trials(study: optuna.Study) -> list[int]:
    """Fail each running trial whose worker is gone (this host: its process ended; another
    host: no beat for ``STALE_AFTER_S``) and enqueue its parameters again (unless the sweep
    was stopped), so the sweep still reaches its budget. Returns the numbers failed."""
    from optuna.trial import TrialState

    from pipelines.runs.lifecycle import process_alive

    host, now = socket.gethostname(), time.time()
    stopped = bool(study.user_attrs.get("stopped"))
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = t.user_attrs.get("worker") or {}
        if who.get("host") == host:
            dead = not process_alive(int(who.get("pid", 0)), who.get("started"))
        else:
            beat = t.user_attrs.get("beat") or _unix(t.datetime_start) or now
            dead = now - float(beat) > STALE_AFTER_S
        if not dead:
            continue
        # Its run force-stopped from the run view (the worker killed with it): skip it.
        skipped = (
            not stopped
            and who.get("host") == host
            and _run_stopped_here(t.user_attrs.get("run_id"))
        )
        if skipped:
            why = STOPPED_BY_USER
        else:
            why = f"interrupted: its worker process ({who.get('pid')} on {who.get('host')}) ended"
        with contextlib.suppress(Exception):  # another worker may fail it first
            st = study._storage
            if skipped:
                st.set_trial_user_attr(t._trial_id, "stopped_by_user", True)
            st.set_trial_user_attr(t._trial_id, "error", why)
            st.set_trial_user_attr(
                t._trial_id, "run_status", "stopped" if skipped else "interrupted"
            )
            if st.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                failed.append(t.number)
                if not stopped and not skipped:
                    requeue(study, t)
    return failed


def _run_stopped_here(run_id: str | None) -> bool:
    """Whether this machine's run store has ``run_id`` ended ``stopped`` (a Force stop)."""
    from pipelines.runs.store import RunStore

    if not run_id:
        return False
    try:
        store = RunStore()
        try:
            return store.get_run(run_id).status == "stopped"
        finally:
            store.close()
    except Exception:  # noqa: BLE001 - not in this store (another RUNS_DIR): a plain death
        return False


def requeue(study: optuna.Study, t) -> None:
    """Enqueue trial ``t``'s parameters again as a new waiting trial (``retry_of``)."""
    params = dict(t.params) or dict(t.system_attrs.get("fixed_params") or {})
    study.enqueue_trial(params, user_attrs={"retry_of": t.number})


# --- reading -----------------------------------------------------------------------------------


def sweep_state(study_trials: list, stopped: bool) -> str:
    """``stopped`` (on request), ``running`` (a trial waits or runs) or ``finished``."""
    states = {t.state.name for t in study_trials}
    if stopped and "RUNNING" not in states:
        return "stopped"
    if states & {"WAITING", "RUNNING"}:
        return "stopping" if stopped else "running"
    return "finished"


def trial_dict(t) -> dict[str, Any]:
    """One trial as the API shows it (see :func:`pipelines.sweeps.sweep_trials`)."""
    params = dict(t.params) or dict(t.system_attrs.get("fixed_params") or {})
    attrs = t.user_attrs
    return {
        "number": t.number,
        "state": t.state.name,
        "params": params,
        "value": t.value if t.state.name in ("COMPLETE", "PRUNED") else None,
        "run_id": attrs.get("run_id"),
        "started": _unix(t.datetime_start),
        "finished": _unix(t.datetime_complete),
        "curves": attrs.get("curves") or {},
        "run_status": attrs.get("run_status"),
        "error": attrs.get("error"),
        "host": (attrs.get("worker") or {}).get("host"),
        "retry_of": attrs.get("retry_of"),
        "stopped_by_user": bool(attrs.get("stopped_by_user")),
    }


def _unix(moment) -> float | None:
    return None if moment is None else moment.timestamp()
