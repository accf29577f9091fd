"""``python -m pipelines bench``: the engine against the plain TF Hub recipe, in one run.

Every measurement is a fresh process, the plain recipe's and the engine's alike, on the same
data (Horses or Humans unless ``dataset`` says otherwise), backbone (the built-in's SavedModel
path from ``python -m pipelines backbones --json``), image size, batch size and epochs. Every
engine figure is wall time as a user meets it, everything included (batches, store writes,
progress, TensorBoard, loading, building the backbone, caches):

==============================  ======================================================
figure                          measured as (engine / plain; smaller is better)
==============================  ======================================================
feature_extraction_cold_ratio   engine ``train`` process start to exit, empty caches /
                                plain frozen process start to exit
feature_extraction_warm_ratio   the same engine run again (warm feature cache) / the same
                                plain wall
feature_extraction_warm_pool_   the same run submitted to a warm worker pool that has run
ratio                           it once (:func:`submit_for_first_epoch`): submit to
                                ``completed`` in the store, as a dashboard user meets it /
                                the same plain wall
finetune_epoch_ratio            the seminar's way: one run of feature extraction, then
                                fine-tuning (empty caches; the issue's shape: a feature
                                pass first, so fine-tuning needs no pass of its own).
                                Fine-tuning is charged with everything it adds and with
                                the run's whole set-up: the run's first event to its
                                "preparing feature extraction" event (loading and
                                splitting the data, building the backbone), plus what
                                keeping the boundary added to phase 1 (its wall minus the
                                ``cold`` run's, at least 0), plus the last feature-
                                extraction epoch row to the last fine-tuning row; over
                                the seminar preset's fine-tuning epochs / plain frozen
                                wall seconds per epoch (:func:`seminar_finetune_share`)
finetune_epoch_warm_ratio       a fine-tuning-only run (no feature-extraction epochs),
                                the second time (boundary cache on disk): the run's first
                                event (the worker has imported TensorFlow) to its last
                                fine-tuning epoch row, over the fine-tuning epochs /
                                plain frozen wall seconds per epoch
finetune_only_epoch_ratio       the same fine-tuning-only run the first time, empty
                                caches: loading, building and the frozen bottom's pass
                                over every image spread over the fine-tuning epochs. No
                                target: the pass alone costs about one plain epoch, so
                                over the seminar's 2 epochs it is about 0.5 before
                                anything else (the README's Speed section)
scratch_epoch_ratio             engine ``scratch`` random arm, wall between its last two
                                epoch rows / plain ``--mode scratch``, last epoch
memory_ratio                    engine experiment with both arms, peak RSS of the process
                                tree / plain frozen peak
start_to_first_epoch_s          seconds (not a ratio): submitting the warm feature-
                                extraction run (:func:`submit_for_first_epoch`) to its
                                first epoch row in the store
sweep_ratio                     a grid sweep (:data:`SWEEP_GRID`, 3 x 4 configs of
                                :data:`SWEEP_SETS`) as one ``python -m pipelines sweep``
                                process with one warm worker, start to exit / the same
                                configs one after another as separate ``python -m
                                pipelines train`` processes, summed (both engine; each
                                side on its own empty feature cache:
                                :func:`measure_sweep`)
hydra_ratio                     ``hydra=shared`` on a two-task data set (the chest
                                X-rays' two tasks, :data:`HYDRA_SETS`: 160 px, 200 images
                                per combination of labels, both arms, 3 + 1 epochs) /
                                ``hydra=separate``: the wall time each run measured
                                itself (its summary's ``cost``), each a ``train`` process
                                on its own empty caches (:func:`measure_hydra`). Skipped
                                (``None``, not valid) where that data set is absent
==============================  ======================================================

Each figure comes from ``repeats`` interleaved repetitions (engine, plain, plain, engine,
engine, plain, ...: the side that goes first alternates, so neither warms the page cache for
the other). A ratio is taken within each repetition; the report gives the median over the
repetitions under the figure's own key and ``spread[figure] = [min, max]``. The
feature-extraction figures are valid only if every engine run behind them reaches the
accuracy target (0.99 on Horses or Humans); ``valid`` and ``messages`` say which are not.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from pipelines import settings
from pipelines.errors import UserError
from pipelines.training.config import PREPARING

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = REPO.parent / "shared" / "bench" / "plain_keras_baseline.py"
DEFAULT_DATASET = "horses_or_humans"
ACCURACY_TARGETS = {DEFAULT_DATASET: 0.99}  # feature extraction, as the README's table says
FIGURES = (
    "feature_extraction_cold_ratio",
    "feature_extraction_warm_ratio",
    "feature_extraction_warm_pool_ratio",
    "finetune_epoch_ratio",
    "finetune_epoch_warm_ratio",
    "finetune_only_epoch_ratio",
    "scratch_epoch_ratio",
    "memory_ratio",
    "start_to_first_epoch_s",
    "sweep_ratio",
    "hydra_ratio",
)
ACCURACY_FIGURES = (
    "feature_extraction_cold_ratio",
    "feature_extraction_warm_ratio",
    "feature_extraction_warm_pool_ratio",
)
FINETUNE_BLOCKS = 2  # the seminar preset's depth (ExperimentConfig().phase2.unfreeze_blocks)
# The sweep figure's grid and fixed settings (the issue's: 100 images per class, 160 px,
# Lite0, 3 + 1 epochs, phase2.unfreeze_blocks x phase1.lr).
SWEEP_GRID = ("phase2.unfreeze_blocks=1,2,3", "phase1.lr=1e-4,3e-4,1e-3,3e-3")
SWEEP_SETS = ("train_per_class=100", "image_size=160", "phase1.epochs=3", "phase2.epochs=1")
# The HydraNet figure's data set and settings (the issue's: the chest X-rays' two tasks,
# 160 px, both arms, 3 + 1 epochs; 200 images per combination of labels keeps it short).
HYDRA_DATASET = "chest_xray_pneumonia_tasks"
HYDRA_SETS = ("image_size=160", "phase1.epochs=3", "phase2.epochs=1", "train_per_class=200")


def _measure(cmd: list[str], env: dict[str, str], timeout: float) -> dict:
    """Run ``cmd``; return wall seconds, peak tree RSS (MB) and stdout's last JSON line."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise UserError(
            f"benchmark step timed out after {timeout:.0f} s: {' '.join(cmd[:4])} ..."
        ) from None
    finally:
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise UserError(f"benchmark step failed ({' '.join(cmd[:5])} ...): {err.strip()[-500:]}")
    try:
        parsed = json.loads(out)
    except json.JSONDecodeError:  # the plain recipe prints log lines before its JSON line
        parsed = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak[0] / 2**20, 1), "out": parsed}


def _engine(sets: list[str], env: dict[str, str], timeout: float) -> dict:
    """``python -m pipelines train --json`` with ``sets``, measured; with its run's summary,
    epoch rows (``time``: when each was written) and the time of its first event."""
    cmd = [sys.executable, "-m", "pipelines", "train", "--json"]
    for s in sets:
        cmd += ["--set", s]
    result = _measure(cmd, env, timeout)
    from pipelines.runs.store import RunStore

    store = RunStore(Path(env["RUNS_DIR"]))
    run = store.get_run(result["out"]["run_id"])
    result["summary"] = run.summary
    result["curves"] = store.curves(run.run_id).to_dict("records")
    result["events"] = [(e["time"], e["message"]) for e in store.events(run.run_id)]
    result["first_event_time"] = result["events"][0][0]
    store.close()
    return result


def submit_for_first_epoch(sets: list[str], env: dict[str, str], timeout: float) -> dict:
    """Submit a run of ``sets`` the way the dashboard's Start does, to a warm worker pool,
    and return ``{"start_to_first_epoch_s", "start_to_completed_s", "val_accuracy"}``,
    measured from the moment of submitting to the first epoch row's and the run's end's
    time in the store.

    As in a dashboard that is already serving: a pool of one warm worker
    (:mod:`pipelines.runs.pool`) is started and has run the same experiment once (the
    user's earlier run, which also filled the feature cache); the measured run is the
    second one. The pool is retired afterwards."""
    from pipelines.runs.jobs import JobManager
    from pipelines.runs.store import RunStore
    from pipelines.training.config import ExperimentConfig
    from pipelines.training.preflight import check_experiment

    config = ExperimentConfig().with_overrides(sets)
    with _environ(env):
        check_experiment(config)  # its imports, once, as in a dashboard already serving
        store = RunStore(Path(env["RUNS_DIR"]))
        jobs = JobManager(store, warm_workers=1)
        try:
            jobs.ensure_pool()
            earlier = jobs.wait(jobs.start(config), timeout=timeout)
            if earlier.status != "completed":
                raise UserError(
                    f"benchmark step failed: the warm-up run {earlier.run_id} ended "
                    f"{earlier.status}"
                )
            submitted = time.time()
            run_id = jobs.start(config)
            run = jobs.wait(run_id, timeout=timeout)
        finally:
            jobs.stop_pool()
    rows = store.curves(run_id)
    same_worker = run.worker_pid == earlier.worker_pid
    store.close()
    if run.status != "completed" or rows.empty:
        raise UserError(f"benchmark step failed: the submitted run {run_id} ended {run.status}")
    return {
        "start_to_first_epoch_s": round(float(rows["time"].iloc[0]) - submitted, 3),
        "start_to_completed_s": round(run.updated - submitted, 3),
        "val_accuracy": run.summary["arms"]["imagenet"]["final_val_accuracy"],
        "warm_worker": same_worker,
    }


def sweep_points(grid: tuple[str, ...]) -> list[list[str]]:
    """The grid's configs as ``--set`` lists, in the sweep's own order."""
    from pipelines.sweeps import SweepSpec, parse_param

    spec = SweepSpec(params=tuple(parse_param(p) for p in grid), sampler="grid")
    return [[f"{k}={v!r}" for k, v in point.items()] for point in spec.grid_points()]


def measure_sweep(
    fixed: list[str],
    env: dict[str, str],
    work: Path,
    timeout: float,
    *,
    sweep_first: bool,
    grid: tuple[str, ...] = SWEEP_GRID,
    say=lambda message: None,
) -> dict:
    """The sweep figure's two sides, in the order ``sweep_first`` says: ``python -m
    pipelines sweep`` over ``grid`` with ``fixed`` (grid sampler, no pruner: both sides
    train every config in full; one worker), and each of the grid's configs as its own
    ``python -m pipelines train`` process, one after another. Each side gets its own empty
    feature cache under ``work``. Returns ``{"sweep_wall_s", "separate_wall_s",
    "separate_walls", "configs"}``."""
    points = sweep_points(grid)
    out: dict = {"configs": len(points)}
    for side in ("sweep", "separate") if sweep_first else ("separate", "sweep"):
        side_env = {
            **env,
            "FEATURE_CACHE_DIR": str(work / f"features-{side}"),
            "RUNS_DIR": str(work / f"runs-{side}"),
            "MAX_RUNNING_EXPERIMENTS": "1",
        }
        if side == "sweep":
            say(f"engine, a sweep of {len(points)} configs in one process")
            cmd = [sys.executable, "-m", "pipelines", "sweep", "--json", "--workers", "1"]
            cmd += ["--sampler", "grid", "--pruner", "none"]
            for param in grid:
                cmd += ["--param", param]
            for item in fixed:
                cmd += ["--set", item]
            result = _measure(cmd, side_env, timeout)
            states = {t["state"] for t in result["out"]["trials"]}
            if states != {"COMPLETE"} or len(result["out"]["trials"]) != len(points):
                raise UserError(f"benchmark step failed: the sweep's trials ended {states}")
            out["sweep_wall_s"] = result["wall_s"]
        else:
            walls = []
            for i, point in enumerate(points):
                say(f"engine, config {i + 1}/{len(points)} of the sweep as its own process")
                cmd = [sys.executable, "-m", "pipelines", "train", "--json"]
                for item in [*fixed, *point]:
                    cmd += ["--set", item]
                walls.append(_measure(cmd, side_env, timeout)["wall_s"])
            out["separate_walls"] = walls
            out["separate_wall_s"] = round(sum(walls), 2)
    return out


def measure_hydra(
    fixed: list[str],
    env: dict[str, str],
    work: Path,
    timeout: float,
    *,
    shared_first: bool,
    say=lambda message: None,
) -> dict:
    """The HydraNet figure's two sides, in the order ``shared_first`` says: ``python -m
    pipelines train`` with ``fixed`` and ``hydra=shared``, then ``hydra=separate`` (or the
    other way round), each on its own empty runs folder and caches under ``work``. Returns
    per side (``shared``, ``separate``): ``run_wall_s`` (the run's own measured wall time,
    its summary's ``cost``, as the cost panel shows it), ``process_wall_s`` (process start
    to exit: also Python and TensorFlow's import), ``peak_rss_mb`` and ``val_accuracy``
    (``{task: {arm: final accuracy}}``)."""
    out: dict = {}
    for mode in ("shared", "separate") if shared_first else ("separate", "shared"):
        say(f"engine, HydraNet {mode}, two tasks, cold cache")
        side_env = {
            **env,
            "FEATURE_CACHE_DIR": str(work / f"features-{mode}"),
            "RUNS_DIR": str(work / f"runs-{mode}"),
        }
        cmd = [sys.executable, "-m", "pipelines", "train", "--json"]
        for item in [*fixed, f"hydra={mode}"]:
            cmd += ["--set", item]
        result = _measure(cmd, side_env, timeout)
        arms = result["out"]["arms"]
        tasks = next(iter(arms.values()))["tasks"]
        out[mode] = {
            "run_wall_s": result["out"]["cost"]["wall_s"],
            "process_wall_s": result["wall_s"],
            "peak_rss_mb": result["peak_rss_mb"],
            "val_accuracy": {
                task: {arm: a["tasks"][task]["final_val_accuracy"] for arm, a in arms.items()}
                for task in tasks
            },
        }
    return out


@contextlib.contextmanager
def _environ(env: dict[str, str]):
    """``os.environ`` set to ``env`` for the duration (the job manager passes it on)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def cores() -> dict:
    """The machine's cores and the ones this process may use (its CPU affinity)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"cpu_count": os.cpu_count(), "affinity": usable}


def seminar_finetune_epochs() -> int:
    """The fine-tuning epochs of the seminar preset (the config's defaults): 2."""
    from pipelines.training.config import ExperimentConfig

    return ExperimentConfig().phase2.epochs


def run_bench(
    *,
    baseline: Path = DEFAULT_BASELINE,
    dataset: str = DEFAULT_DATASET,
    image_size: int = 224,
    epochs: int = 5,
    batch_size: int = 32,
    finetune_epochs: int | None = None,
    scratch_epochs: int = 2,
    train_per_class: int | None = None,
    repeats: int = 3,
    accuracy_target: float | None = None,
    timeout: float = 1800,
    sweep_grid: tuple[str, ...] = SWEEP_GRID,
    sweep_sets: tuple[str, ...] = SWEEP_SETS,
    hydra_dataset: str | None = HYDRA_DATASET,
    hydra_sets: tuple[str, ...] = HYDRA_SETS,
    say=lambda message: None,
) -> dict:
    """Run every measurement ``repeats`` times, interleaved, and report the medians.
    ``sweep_grid``/``sweep_sets``: the sweep figure's grid and fixed settings (on top of the
    data set, Lite0 and ``batch_size``); ``hydra_dataset``/``hydra_sets``: the HydraNet
    figure's two-task data set (None, or the default one where it can't be found: the figure
    is skipped and ``messages`` says why; another one that can't be found is refused) and
    settings."""
    from pipelines.data import resolve_source

    if repeats < 1:
        raise UserError(f"--repeats must be at least 1, not {repeats}")
    if not baseline.is_file():
        raise UserError(
            f"the plain recipe {baseline} is missing; give its path with --baseline "
            "(it ships in shared/bench/ beside the repository)"
        )
    if finetune_epochs is None:
        finetune_epochs = seminar_finetune_epochs()
    if accuracy_target is None:
        accuracy_target = ACCURACY_TARGETS.get(dataset)
    data = resolve_source(dataset).root
    hydra_data, hydra_skipped = None, "no two-task data set given"
    if hydra_dataset is not None:
        try:
            resolve_source(hydra_dataset)  # there? (the run resolves it itself, tasks too)
            hydra_data = hydra_dataset
        except UserError as e:
            if hydra_dataset != HYDRA_DATASET:  # named on purpose: refuse before an hour
                raise UserError(f"the HydraNet figure's data set: {e}") from None
            hydra_skipped = str(e)  # the default may be absent: skip the figure, say why
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    env = _environment(work)
    if train_per_class:  # the smoke test's tiny version: a subset folder for both sides
        data = _subset(data, work / "subset", train_per_class)

    # Both sides on the same backbone file, data, image size and batch size.
    say("resolving the built-in backbone's SavedModel path")
    bench = _Bench(
        baseline, _builtin_handle(env, timeout), data, image_size, batch_size, env, timeout
    )
    plan = _Plan(epochs, finetune_epochs, scratch_epochs)

    # Repetitions: engine then plain, plain then engine, ... each with its own empty caches.
    reps = []
    for i in range(repeats):
        engine_first = i % 2 == 0
        rep: dict = {}
        for side in ("engine", "plain") if engine_first else ("plain", "engine"):
            say(f"repetition {i + 1}/{repeats}: {side}")
            if side == "engine":
                rep.update(bench.engine_side(plan, work / f"rep{i}", say))
            else:
                rep.update(bench.plain_side(plan, say))
        sweep_fixed = [bench.dataset_set(), "backbone=efficientnet_lite0", *sweep_sets]
        sweep_fixed.append(f"batch_size={batch_size}")
        rep["sweep"] = measure_sweep(
            sweep_fixed,
            env,
            work / f"rep{i}" / "sweep",
            timeout,
            sweep_first=engine_first,
            grid=sweep_grid,
            say=say,
        )
        if hydra_data is not None:
            rep["hydra"] = measure_hydra(
                [f"dataset={hydra_data}", "backbone=efficientnet_lite0", *hydra_sets],
                env,
                work / f"rep{i}" / "hydra",
                timeout,
                shared_first=engine_first,
                say=say,
            )
        rep["engine_first"] = engine_first
        reps.append(rep)

    # The medians, their spread and the numbers behind them.
    return _report(
        {
            "backbone": "efficientnet_lite0",
            "dataset": dataset,
            "image_size": image_size,
            "batch_size": batch_size,
            "epochs": epochs,
            "finetune_epochs": finetune_epochs,
            "finetune_blocks": FINETUNE_BLOCKS,
            "scratch_epochs": scratch_epochs,
            "train_images": reps[0]["plain_frozen"]["out"]["train_images"],
            "repeats": repeats,
            "accuracy_target": accuracy_target,
            "sweep_grid": list(sweep_grid),
            "sweep_sets": list(sweep_sets),
            "hydra_dataset": hydra_dataset if hydra_data is not None else None,
            "hydra_sets": list(hydra_sets),
        },
        reps,
        [] if hydra_data is not None else [f"hydra_ratio: not measured ({hydra_skipped})"],
    )


def _environment(work: Path) -> dict[str, str]:
    """Every measured process's environment: runs and feature caches under ``work``."""
    return {
        **os.environ,
        "RUNS_DIR": str(work / "runs"),
        "FEATURE_CACHE_DIR": str(work / "features"),
        "BACKBONE_CACHE_DIR": str(settings.backbone_cache_dir()),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def _builtin_handle(env: dict[str, str], timeout: float) -> str:
    """The built-in efficientnet_lite0's SavedModel path, as ``backbones --json`` lists it."""
    listed = _measure([sys.executable, "-m", "pipelines", "backbones", "--json"], env, timeout)
    return next(r["handle"] for r in listed["out"] if r["id"] == "efficientnet_lite0")


@dataclass
class _Plan:
    epochs: int
    finetune_epochs: int
    scratch_epochs: int


@dataclass
class _Bench:
    """What every measurement shares: the plain recipe's command and the engine's settings."""

    baseline: Path
    handle: str
    data: Path
    image_size: int
    batch_size: int
    env: dict[str, str]
    timeout: float

    def plain(self, mode: str, epochs: int) -> dict:
        """The plain recipe in ``mode`` (frozen, scratch) for ``epochs``, measured."""
        cmd = [sys.executable, str(self.baseline), "--handle", self.handle]
        cmd += ["--data", str(self.data), "--mode", mode, "--epochs", str(epochs)]
        cmd += ["--image-size", str(self.image_size), "--batch-size", str(self.batch_size)]
        cmd += ["--scale", "minus1_1"]
        return _measure(cmd, self.env, self.timeout)

    def plain_side(self, plan: _Plan, say) -> dict:
        say("plain recipe, frozen")
        frozen = self.plain("frozen", plan.epochs)
        say("plain recipe, scratch")
        return {"plain_frozen": frozen, "plain_scratch": self.plain("scratch", plan.scratch_epochs)}

    def engine(self, sets: list[str], features: Path) -> dict:
        """``python -m pipelines train`` with ``sets`` and its caches in ``features``."""
        return _engine(sets, {**self.env, "FEATURE_CACHE_DIR": str(features)}, self.timeout)

    def engine_side(self, plan: _Plan, rep: Path, say) -> dict:
        """One repetition of every engine measurement, each group on its own empty caches."""
        fe_sets = self.feature_extraction_sets(plan.epochs)
        ft_sets = [
            *fe_sets[:-2],
            "phase1.epochs=0",
            f"phase2.epochs={plan.finetune_epochs}",
            f"phase2.unfreeze_blocks={FINETUNE_BLOCKS}",
        ]
        seminar_sets = [
            *fe_sets[:-1],
            f"phase2.epochs={plan.finetune_epochs}",
            f"phase2.unfreeze_blocks={FINETUNE_BLOCKS}",
        ]
        scratch_sets = [
            self.dataset_set(),
            "backbone=efficientnet_lite0",
            "arms=random",
            "random_policy=scratch",
            *self.size_sets(),
            f"phase1.epochs={plan.scratch_epochs}",
            "phase2.epochs=0",
        ]
        both_sets = [
            self.dataset_set(),
            *self.size_sets(),
            f"phase1.epochs={plan.epochs}",
            f"phase2.epochs={seminar_finetune_epochs()}",
            f"phase2.unfreeze_blocks={FINETUNE_BLOCKS}",
        ]
        out = {}
        say("engine, feature extraction, cold cache")
        out["cold"] = self.engine(fe_sets, rep / "features")
        say("engine, feature extraction, warm cache")
        out["warm"] = self.engine(fe_sets, rep / "features")
        say("engine, submitted run on the warm cache, to its first epoch")
        env = {**self.env, "FEATURE_CACHE_DIR": str(rep / "features")}
        out["submitted"] = submit_for_first_epoch(fe_sets, env, self.timeout)
        say(f"engine, fine-tuning the top {FINETUNE_BLOCKS} blocks, cold cache")
        out["ft"] = self.engine(ft_sets, rep / "features-finetune")
        say(f"engine, fine-tuning the top {FINETUNE_BLOCKS} blocks, boundary on disk")
        out["ft_warm"] = self.engine(ft_sets, rep / "features-finetune")
        say("engine, feature extraction then fine-tuning in one run, cold cache")
        out["seminar"] = self.engine(seminar_sets, rep / "features-seminar")
        say("engine, random arm from scratch")
        out["scratch"] = self.engine(scratch_sets, rep / "features-scratch")
        say("engine, both arms (memory), cold cache")
        out["both"] = self.engine(both_sets, rep / "features-memory")
        return out

    def dataset_set(self) -> str:
        return f"dataset={self.data}"

    def size_sets(self) -> list[str]:
        return [f"image_size={self.image_size}", f"batch_size={self.batch_size}"]

    def feature_extraction_sets(self, epochs: int) -> list[str]:
        """The ImageNet arm on the built-in, ``epochs`` of feature extraction only."""
        return [
            self.dataset_set(),
            "backbone=efficientnet_lite0",
            "arms=imagenet",
            *self.size_sets(),
            f"phase1.epochs={epochs}",
            "phase2.epochs=0",
        ]


def phase_end(result: dict, phase: str) -> float:
    """Seconds from the run's first event to its last epoch row of ``phase``."""
    last = max(float(r["time"]) for r in result["curves"] if r["phase"] == phase)
    return last - result["first_event_time"]


def epoch_walls(
    result: dict, phase: str | None = None, arm: str | None = None, *, after: str | None = None
) -> list[float]:
    """Wall seconds of each epoch as the store saw them: between consecutive epoch rows of
    ``arm`` in ``phase`` (None: any), the first from the run's first event (everything
    before it: loading, building, caches), or, with ``after``, from the last epoch row of
    that earlier phase (what ``phase`` adds to a run that did ``after`` first)."""
    rows = [
        r
        for r in result["curves"]
        if (phase is None or r["phase"] == phase) and (arm is None or r["arm"] == arm)
    ]
    start = result["first_event_time"] + (phase_end(result, after) if after else 0.0)
    times = [start, *(float(r["time"]) for r in rows)]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def event_time(result: dict, message: str) -> float:
    """The time of the run's first event whose message starts with ``message``."""
    for time_, text in result["events"]:
        if text.startswith(message):
            return time_
    raise ValueError(f"run {result['out'].get('run_id')} logged no event {message!r}")


def seminar_finetune_share(seminar: dict, cold: dict) -> dict:
    """Seconds that fine-tuning costs the seminar's run (``seminar``: feature extraction,
    then fine-tuning, empty caches), charged generously: ``setup``, the run's first event
    to its "preparing feature extraction" event (loading and splitting the data, building
    the backbone: shared with feature extraction, charged here in full); ``keep``, what
    keeping the boundary activations added to phase 1 (``seminar``'s phase-1 wall minus
    ``cold``'s, the same feature extraction without fine-tuning; at least 0); ``phase``,
    the last feature-extraction epoch row to the last fine-tuning row (fine-tuning's own
    preparation, epochs and validation; ``epochs``: each epoch's wall); and ``total``."""
    setup = event_time(seminar, PREPARING["feature_extraction"]) - seminar["first_event_time"]
    keep = max(
        0.0,
        phase_end(seminar, "feature_extraction") - phase_end(cold, "feature_extraction"),
    )
    epochs = epoch_walls(seminar, "fine_tuning", after="feature_extraction")
    phase = sum(epochs)
    return {
        "setup": setup,
        "keep": keep,
        "phase": phase,
        "epochs": epochs,
        "total": setup + keep + phase,
    }


def _rep_figures(rep: dict) -> dict:
    """One repetition's figures (ratios within the repetition) and the seconds behind them."""
    plain_frozen, plain_scratch = rep["plain_frozen"], rep["plain_scratch"]
    plain_epochs = plain_frozen["out"]["epoch_s"]
    plain_epoch = sum(plain_epochs) / len(plain_epochs)
    ft_epochs = epoch_walls(rep["ft"], "fine_tuning")
    ft_warm_epochs = epoch_walls(rep["ft_warm"], "fine_tuning")
    ft_per_epoch = sum(ft_epochs) / len(ft_epochs)
    ft_warm_per_epoch = sum(ft_warm_epochs) / len(ft_warm_epochs)
    share = seminar_finetune_share(rep["seminar"], rep["cold"])
    seminar_epochs = share["epochs"]
    seminar_per_epoch = share["total"] / len(seminar_epochs)
    scratch_epochs = epoch_walls(rep["scratch"], arm="random")
    plain_scratch_epoch = plain_scratch["out"]["epoch_s"][-1]
    figures = {
        "feature_extraction_cold_ratio": rep["cold"]["wall_s"] / plain_frozen["wall_s"],
        "feature_extraction_warm_ratio": rep["warm"]["wall_s"] / plain_frozen["wall_s"],
        "feature_extraction_warm_pool_ratio": rep["submitted"]["start_to_completed_s"]
        / plain_frozen["wall_s"],
        "finetune_epoch_ratio": seminar_per_epoch / plain_epoch,
        "finetune_epoch_warm_ratio": ft_warm_per_epoch / plain_epoch,
        "finetune_only_epoch_ratio": ft_per_epoch / plain_epoch,
        "scratch_epoch_ratio": scratch_epochs[-1] / plain_scratch_epoch,
        "memory_ratio": rep["both"]["peak_rss_mb"] / plain_frozen["peak_rss_mb"],
        "start_to_first_epoch_s": rep["submitted"]["start_to_first_epoch_s"],
        "sweep_ratio": rep["sweep"]["sweep_wall_s"] / rep["sweep"]["separate_wall_s"],
        "hydra_ratio": None,
    }
    seconds = {
        "plain_frozen_wall": plain_frozen["wall_s"],
        "plain_frozen_epochs": plain_epochs,
        "plain_frozen_per_epoch": plain_epoch,
        "engine_cold_wall": rep["cold"]["wall_s"],
        "engine_warm_wall": rep["warm"]["wall_s"],
        "engine_seminar_finetune_epochs": seminar_epochs,
        "engine_seminar_setup": share["setup"],
        "engine_seminar_keep": share["keep"],
        "engine_seminar_finetune_phase": share["phase"],
        "engine_seminar_finetune_per_epoch": seminar_per_epoch,
        "engine_seminar_phase1": phase_end(rep["seminar"], "feature_extraction"),
        "engine_cold_phase1": phase_end(rep["cold"], "feature_extraction"),
        "engine_finetune_warm_epochs": ft_warm_epochs,
        "engine_finetune_warm_per_epoch": ft_warm_per_epoch,
        "engine_finetune_only_prep": rep["ft"]["summary"]["arms"]["imagenet"]["prep_s"].get(
            "fine_tuning", 0.0
        ),
        "engine_finetune_only_epochs": ft_epochs,
        "engine_finetune_only_per_epoch": ft_per_epoch,
        "plain_scratch_epochs": plain_scratch["out"]["epoch_s"],
        "engine_scratch_epochs": scratch_epochs,
        "engine_submitted_to_completed": rep["submitted"]["start_to_completed_s"],
        "engine_sweep_wall": rep["sweep"]["sweep_wall_s"],
        "engine_separate_trains_wall": rep["sweep"]["separate_wall_s"],
    }
    if (hydra := rep.get("hydra")) is not None:
        shared, separate = hydra["shared"], hydra["separate"]
        figures["hydra_ratio"] = shared["run_wall_s"] / separate["run_wall_s"]
        for mode, side in hydra.items():
            seconds[f"hydra_{mode}_run_wall"] = side["run_wall_s"]
            seconds[f"hydra_{mode}_process_wall"] = side["process_wall_s"]
    megabytes = {
        "plain_frozen_peak_rss": plain_frozen["peak_rss_mb"],
        "engine_both_arms_peak_rss": rep["both"]["peak_rss_mb"],
        "engine_cold_peak_rss": rep["cold"]["peak_rss_mb"],
    }
    if hydra is not None:
        megabytes.update({f"hydra_{m}_peak_rss": side["peak_rss_mb"] for m, side in hydra.items()})

    def final(result: dict, arm: str = "imagenet"):
        return result["summary"]["arms"][arm]["final_val_accuracy"]

    accuracy = {
        "plain_frozen": plain_frozen["out"]["val_accuracy"][-1],
        "engine_cold": final(rep["cold"]),
        "engine_warm": final(rep["warm"]),
        "engine_submitted": rep["submitted"]["val_accuracy"],
        "engine_both_arms": {
            a: v["final_val_accuracy"] for a, v in rep["both"]["summary"]["arms"].items()
        },
    }
    if hydra is not None:
        accuracy["hydra"] = {mode: side["val_accuracy"] for mode, side in hydra.items()}
    return {
        "figures": figures,
        "seconds": seconds,
        "megabytes": megabytes,
        "val_accuracy": accuracy,
    }


def _median(values: list):
    """The median of numbers; element-wise for lists of equal length (epoch seconds)."""
    if isinstance(values[0], list):
        return [_median(list(column)) for column in zip(*values, strict=True)]
    if isinstance(values[0], dict):
        return {k: _median([v[k] for v in values]) for k in values[0]}
    return round(statistics.median(values), 3)


def _report(bench_settings: dict, reps: list[dict], notes: list[str] = ()) -> dict:
    """The figures' medians over the repetitions, their spread (min-max), validity, and the
    seconds, megabytes and accuracies behind them (medians; per repetition too). A figure
    not measured (None) has median and spread None, is not valid, and ``notes`` says why."""
    per_rep = [_rep_figures(rep) for rep in reps]
    figures = {f: [p["figures"][f] for p in per_rep] for f in FIGURES}
    valid, messages = _validity(bench_settings["accuracy_target"], per_rep, figures)
    messages = [*notes, *messages]
    measured = {f: v for f, v in figures.items() if None not in v}
    seconds = _median([p["seconds"] for p in per_rep])
    accuracy = {
        key: min(p["val_accuracy"][key] for p in per_rep)
        for key in ("plain_frozen", "engine_cold", "engine_warm", "engine_submitted")
    }
    accuracy["engine_both_arms"] = _median([p["val_accuracy"]["engine_both_arms"] for p in per_rep])
    if "hydra" in per_rep[0]["val_accuracy"]:
        accuracy["hydra"] = _median([p["val_accuracy"]["hydra"] for p in per_rep])
    return {
        "machine": machine(),
        "cores": cores(),
        "settings": bench_settings,
        **{f: None for f in figures},
        **{f: round(statistics.median(v), 3) for f, v in measured.items()},
        "spread": {
            f: [round(min(v), 3), round(max(v), 3)] if f in measured else None
            for f, v in figures.items()
        },
        "spread_kind": "min-max over the repetitions",
        "valid": valid,
        "messages": messages,
        "imagenet_val_accuracy": accuracy["engine_cold"],
        "seconds": seconds,
        "megabytes": _median([p["megabytes"] for p in per_rep]),
        "val_accuracy": accuracy,
        "repetitions": [
            {"engine_first": rep["engine_first"], **{k: p[k] for k in ("figures", "seconds")}}
            for rep, p in zip(reps, per_rep, strict=True)
        ],
    }


def _validity(target: float | None, per_rep: list[dict], figures: dict) -> tuple[dict, list]:
    """Which figures count: every value finite and positive, and the feature-extraction
    figures only if each engine run behind them reached ``target`` (lowest accuracies)."""
    valid, messages = {}, []
    for figure, values in figures.items():
        if None in values:  # not measured: _report's notes say why
            valid[figure] = False
            continue
        valid[figure] = all(math.isfinite(v) and v > 0 for v in values)
        if not valid[figure]:
            messages.append(f"{figure}: a repetition measured {values}, not a positive time")
    if target is None:
        return valid, messages
    for figure, key in zip(
        ACCURACY_FIGURES, ("engine_cold", "engine_warm", "engine_submitted"), strict=True
    ):
        low = min(p["val_accuracy"][key] for p in per_rep)
        if low < target:
            valid[figure] = False
            messages.append(
                f"{figure} is invalid: the engine's validation accuracy {low:.4f} is below "
                f"the target {target:g}"
            )
    plain = min(p["val_accuracy"]["plain_frozen"] for p in per_rep)
    if plain < target:
        messages.append(
            f"note: the plain recipe's validation accuracy {plain:.4f} is below {target:g}"
        )
    return valid, messages


def _subset(root: Path, target: Path, per_class: int) -> Path:
    """Copy the first ``per_class`` images per class and split (smoke runs only)."""
    for split in ("train", "validation"):
        for class_dir in sorted((root / split).iterdir()):
            if not class_dir.is_dir():
                continue
            out = target / split / class_dir.name
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(class_dir.iterdir())[:per_class]:
                shutil.copyfile(f, out / f.name)
    return target
