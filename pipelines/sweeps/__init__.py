"""Sweeps: many experiment configs evaluated side by side, on Optuna.

A **sweep** explores a search space over the experiment config's dotted keys (the names of
``--set`` and the dashboard's form); each **trial** is an ordinary run in the run store,
tagged with the sweep id and its trial number. Workers are long-lived processes that take
trial after trial (TensorFlow, backbones and the feature cache stay warm); the study lives
in an Optuna storage: an embedded journal file under ``RUNS_DIR`` by default, or any Optuna
storage URL (``--storage``/``SWEEP_STORAGE``, e.g. PostgreSQL for several machines).

Modules, in the order a sweep flows through them: :mod:`.space` (the space and the whole
spec, validated in one place), :mod:`.study` (storage, samplers, pruners, the trial queue),
:mod:`.trial` (one trial as a run, reported epoch by epoch), :mod:`.worker` (the long-lived
worker loop), :mod:`.control` (start, read, stop: this package's API below).

The API (what the CLI and the dashboard call)::

    Param(key, kind, low, high, log, choices)       # frozen; kind int|float|categorical
    parse_param("phase1.lr=1e-4:1e-2:log") -> Param  # key=low:high[:log] | key=a,b,c
    SweepSpec(params, fixed, sampler, trials, objective, pruner, seed)  # frozen, JSON
        .validate() -> SweepSpec   .grid_size() -> int | None   .budget() -> int
        .to_dict() / SweepSpec.from_dict(d)
    load_space(path) -> SweepSpec                    # JSON or TOML
    start_sweep(spec, storage=None, workers=None) -> sweep_id   # returns at once
    list_sweeps(storage=None) -> [{"sweep_id", "state", "trials", "best_value",
                                   "created", "budget", "stopped_at"}]  # newest first
    sweep_trials(sweep_id, storage=None) -> [{"number", "state", "params", "value",
        "run_id", "started", "finished", "curves": {"imagenet": [...], "random": [...]},
        "run_status", "error", "host", "retry_of", "stopped_by_user"}]
    sweep_spec(sweep_id, storage=None) -> SweepSpec
    sweep_state_of(sweep_id, storage=None) -> "running"|"stopping"|"stopped"|"finished"
    best_trial(sweep_id, storage=None) -> trial dict | None
    stop_sweep(sweep_id, storage=None)
    force_stop(sweep_id, storage=None) -> {"killed": [pids], "trials": [numbers],
                                           "elsewhere": [numbers]}  # SIGKILL local workers
    reap_sweep(sweep_id, storage=None) -> [trial numbers failed and re-enqueued]

Every refused input raises :class:`pipelines.errors.UserError` with a message that names the
problem and what to do; nothing is created before the spec and the storage are accepted.
"""

from pipelines.sweeps.control import (
    best_trial,
    check_spec,
    force_stop,
    list_sweeps,
    reap_sweep,
    start_sweep,
    stop_sweep,
    sweep_spec,
    sweep_state_of,
    sweep_trials,
)
from pipelines.sweeps.space import (
    MAX_GRID,
    OBJECTIVES,
    PRUNERS,
    SAMPLERS,
    Param,
    SweepSpec,
    load_space,
    parse_param,
)
from pipelines.sweeps.study import safe_url, storage_url

__all__ = [
    "MAX_GRID",
    "OBJECTIVES",
    "PRUNERS",
    "SAMPLERS",
    "Param",
    "SweepSpec",
    "best_trial",
    "check_spec",
    "force_stop",
    "list_sweeps",
    "load_space",
    "parse_param",
    "reap_sweep",
    "safe_url",
    "start_sweep",
    "stop_sweep",
    "storage_url",
    "sweep_spec",
    "sweep_state_of",
    "sweep_trials",
]
