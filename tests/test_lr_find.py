"""The learning-rate finder: the range test on a problem whose good rate is known, early
stop on divergence, the experiment's arms in both phases, bad inputs, the CLI and the
background finder (``pipelines/runs/lr_jobs.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from pipelines.errors import UserError
from pipelines.runs import lr_jobs
from pipelines.training import lr_find
from pipelines.training.lr_find import Sweep, check_range, find_lr, range_test, suggest
from tests.conftest_engine import tiny_config

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def regression_step(curvature: float, seed: int):
    """Mini-batch SGD on least squares whose largest Hessian eigenvalue is about
    ``curvature``: the good constant rate is 1/curvature, and above 2/curvature it
    diverges. Returns ``(step, best_rate)``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, 20)) * np.linspace(0.2, 1, 20) * np.sqrt(curvature)
    y = x @ rng.normal(size=20) + 0.1 * rng.normal(size=2000)
    w = np.zeros(20)

    def step(lr: float) -> float:
        nonlocal w
        idx = rng.integers(0, len(x), 32)
        residual = x[idx] @ w - y[idx]
        w = w - lr * x[idx].T @ residual / len(idx)
        return float(0.5 * np.mean(residual**2))

    largest = float(np.linalg.eigvalsh(x.T @ x / len(x)).max())
    return step, 1 / largest


@pytest.mark.parametrize("curvature", [1.0, 10.0, 100.0])
def test_the_suggestion_is_within_a_factor_of_10_of_the_known_good_rate(curvature):
    step, best = regression_step(curvature, seed=int(curvature))
    sweep = range_test(step, low=1e-7, high=10, steps=100)
    suggested = suggest(sweep)
    assert suggested is not None
    assert best / 10 <= suggested <= best * 10, (suggested, best)


def test_divergence_ends_the_pass_early():
    step, best = regression_step(10.0, seed=0)
    sweep = range_test(step, low=1e-7, high=10, steps=100)
    assert sweep.ended == "diverged"
    assert len(sweep.lrs) < 100
    # It ended above the rate where plain gradient descent stops converging (2/L).
    assert sweep.lrs[-1] > 2 * best
    assert sweep.smoothed[-1] > lr_find.DIVERGE_FACTOR * min(sweep.smoothed)


def test_a_loss_that_is_not_finite_ends_the_pass():
    sweep = range_test(lambda lr: float("nan") if lr > 1e-3 else 1.0, steps=50)
    assert sweep.ended == "diverged" and all(np.isfinite(sweep.losses))


def test_the_rates_rise_exponentially_and_a_stop_keeps_the_points():
    calls = []
    sweep = range_test(
        lambda lr: calls.append(lr) or 1.0,
        low=1e-4,
        high=1,
        steps=20,
        should_stop=lambda: len(calls) >= 7,
    )
    assert sweep.ended == "stopped" and len(sweep.lrs) == 7
    ratios = np.diff(np.log(lr_find.rates(1e-4, 1, 20)))
    assert np.allclose(ratios, ratios[0])
    assert lr_find.rates(1e-4, 1, 20)[[0, -1]] == pytest.approx([1e-4, 1])
    assert suggest(sweep) is None  # a stopped pass suggests nothing


def test_the_rule_is_the_smoothed_minimum_over_10():
    sweep = Sweep(
        lrs=[1e-3, 1e-2, 1e-1, 1.0, 10.0],
        losses=[0] * 5,
        smoothed=[1.0, 0.5, 0.2, 0.9, 5.0],
        ended="diverged",
    )
    assert suggest(sweep) == pytest.approx(1e-2)


def test_a_flat_floor_counts_from_where_it_starts():
    # The loss falls to ~0 and stays (separable features): not the range's end over 10.
    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
    sweep = Sweep(lrs=lrs, losses=[0] * 6, smoothed=[1.0, 0.8, 0.1, 0.05, 0.04, 0.03])
    assert suggest(sweep) == pytest.approx(1e-2)


@pytest.mark.parametrize(
    ("low", "high", "steps", "words"),
    [
        (1e-2, 1e-3, 100, "is not below --high"),
        (1e-3, 1e-3, 100, "is not below --high"),
        (0.0, 1.0, 100, "--low: must be a positive"),
        (1e-3, 100.0, 100, "--high: at most 10"),
        (1e-3, 1.0, 3, "--steps: between"),
    ],
)
def test_a_bad_range_is_refused_by_name(low, high, steps, words):
    with pytest.raises(UserError, match=words):
        check_range(low, high, steps)


# --- the experiment's arms ----------------------------------------------------------------


def test_phase_1_finds_a_rate_for_the_head_from_the_feature_cache(tiny_data, lite0_handle):
    config = tiny_config(tiny_data)
    result = find_lr(config, phase=1, steps=60)
    assert result["phase"] == 1 and result["arm"] == "imagenet" and result["head"] == "new"
    assert result["rule"] == "min/10"
    assert len(result["lrs"]) == len(result["losses"]) == result["steps"] <= 60
    assert result["lrs"] == sorted(result["lrs"])
    assert 1e-7 < result["suggested_lr"] < 10
    # The head learned: these tiny images are separable, the loss falls to near 0 at high rates.
    assert np.mean(result["losses"][-5:]) < 0.5 * np.mean(result["losses"][:5])
    # A second finder reads every feature from the cache, without the backbone.
    again = find_lr(config, phase=1, steps=20)
    assert "train 24/24 cached" in again["notes"][0]


def test_phase_2_trains_the_head_first_and_then_the_unfrozen_blocks(tiny_data, lite0_handle):
    config = tiny_config(tiny_data)  # phase1.epochs=2, unfreeze_blocks=2
    result = find_lr(config, phase=2, arm="random", steps=30)
    assert result["phase"] == 2 and result["arm"] == "random"
    assert result["head"].startswith("trained 2 epoch(s) at phase1.lr 0.01")
    assert "the top 2 train" in result["notes"][-1]
    # Fine-tuning blocks at rates towards 10 blows the loss up: the pass ends early.
    assert result["ended"] == "diverged" and 0 < result["steps"] < 30
    assert result["suggested_lr"] < result["lrs"][-1]


@pytest.mark.parametrize(
    ("extra", "phase", "words"),
    [
        (["phase2.unfreeze_blocks=0", "phase2.epochs=0"], 2, "needs blocks to unfreeze"),
        (["phase2.unfreeze_blocks=40"], 2, "unfreeze_blocks"),
        (["batch_size=500"], 1, "larger than the training set"),
    ],
)
def test_a_finder_that_cannot_run_says_why(tiny_data, lite0_handle, extra, phase, words):
    with pytest.raises(UserError, match=words):
        find_lr(tiny_config(tiny_data, *extra), phase=phase, steps=20)


def test_a_finder_without_data_says_why(tmp_path, lite0_handle):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir(parents=True)
    with pytest.raises(UserError):
        find_lr(tiny_config(str(tmp_path / "empty")), phase=1, steps=20)


# --- the command line and the background finder -------------------------------------------


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", "lr-find", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_the_cli_prints_the_result_as_json(tiny_data, lite0_handle):
    sets = [a for s in ("image_size=32", "batch_size=8") for a in ("--set", s)]
    done = cli("--set", f"dataset={tiny_data}", *sets, "--phase", "1", "--steps", "20", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"phase", "suggested_lr", "rule", "lrs", "losses"} <= result.keys()
    assert result["phase"] == 1 and len(result["lrs"]) == len(result["losses"]) > 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--set", "dataset=/nowhere/at/all"], "/nowhere/at/all"),
        (["--low", "1", "--high", "0.1"], "is not below --high"),
        (
            ["--phase", "2", "--set", "phase2.unfreeze_blocks=0", "--set", "phase2.epochs=0"],
            "needs blocks to unfreeze",
        ),
    ],
)
def test_the_cli_refuses_bad_inputs_with_one_message(tiny_data, args, words):
    done = cli("--set", f"dataset={tiny_data}", *args)
    assert done.returncode == 2
    assert words in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr  # one line


def test_the_background_finder_writes_its_result_and_stops_within_2_s(
    tiny_data, lite0_handle, tmp_path, monkeypatch
):
    monkeypatch.setenv("RUNS_DIR", str(tmp_path / "runs"))
    config = tiny_config(tiny_data)
    job = lr_jobs.start(config, phase=1, arm="imagenet")
    deadline = time.monotonic() + 240
    while (result := lr_jobs.read(job))["ended"] not in lr_jobs.FINAL:
        assert time.monotonic() < deadline, result
        time.sleep(0.3)
    assert result["ended"] in ("completed", "diverged"), result
    assert result["suggested_lr"] is not None and len(result["lrs"]) > 0

    slow = lr_jobs.start(config, phase=2, arm="imagenet")
    time.sleep(1.0)  # it is starting (importing TensorFlow) or running
    started = time.monotonic()
    stopped = lr_jobs.stop(slow)
    assert time.monotonic() - started < 2.0
    assert stopped["ended"] == "stopped"
    assert lr_jobs.read(slow)["ended"] == "stopped"


def test_a_refused_background_finder_starts_nothing(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNS_DIR", str(tmp_path / "runs"))
    config = tiny_config(tiny_data, "phase2.unfreeze_blocks=0", "phase2.epochs=0")
    with pytest.raises(UserError, match="needs blocks to unfreeze"):
        lr_jobs.start(config, phase=2, arm="imagenet")
    assert not (tmp_path / "runs" / "lr_find").exists()
    with pytest.raises(UserError, match="not a learning-rate finder id"):
        lr_jobs.read("../../etc")


def test_old_finished_finders_are_pruned_and_a_running_one_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNS_DIR", str(tmp_path / "runs"))
    root = tmp_path / "runs" / lr_jobs.FOLDER
    for i, ended in enumerate(["completed", "running", "stopped", "diverged"]):
        folder = root / f"20261202-1200{i:02d}-abcdef"
        folder.mkdir(parents=True)
        pid = os.getpid() if ended == "running" else 1  # this process: alive
        started = psutil.Process(pid).create_time() if ended == "running" else 0.0
        (folder / "job.json").write_text(json.dumps({"pid": pid, "started": started}))
        (folder / "result.json").write_text(json.dumps({"ended": ended}))
    gone = lr_jobs.prune(keep=1)
    assert gone == ["20261202-120002-abcdef", "20261202-120000-abcdef"]
    assert sorted(p.name for p in root.iterdir()) == [
        "20261202-120001-abcdef",  # still running
        "20261202-120003-abcdef",  # the newest
    ]
