"""``run_bench`` without training: which processes it starts, in which order, and how it
computes the figures, their medians and spread; then (slow) the whole bench on tiny data."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

from pipelines import bench
from pipelines.errors import UserError
from tests.conftest_hydra import make_two_task_folder

PLAIN_WALLS = [20.0, 40.0, 10.0]  # per repetition: the cold ratios are 0.25, 0.125, 0.5


@pytest.fixture
def measured(monkeypatch, tmp_path):
    """Stand-ins for the measured processes; returns the calls they saw."""
    calls: list[tuple[str, list[str], str]] = []

    def measure(cmd, env, timeout):
        calls.append(("plain", cmd, env["FEATURE_CACHE_DIR"]))
        if cmd[-2:] == ["backbones", "--json"]:
            return {"out": [{"id": "efficientnet_lite0", "handle": "/lite0"}]}
        mode = cmd[cmd.index("--mode") + 1]
        frozen = sum(1 for c in calls if "frozen" in c[1]) - 1
        wall, rss = (PLAIN_WALLS[frozen % 3], 1000.0) if mode == "frozen" else (30.0, 900.0)
        out = {"epoch_s": [4.0, 2.0], "train_images": 16, "val_accuracy": [0.5, 0.995]}
        return {"wall_s": wall, "peak_rss_mb": rss, "out": out}

    def engine(sets, env, timeout):
        calls.append(("engine", sets, env["FEATURE_CACHE_DIR"]))
        arms = {"imagenet": {"final_val_accuracy": 0.9, "prep_s": {"fine_tuning": 1.0}}}
        if "arms=random" in sets:  # scratch: epoch rows at 110 and 111.5 s
            arms = {"random": {"final_val_accuracy": 0.5, "prep_s": {}}}
            rows = [
                ("random", "feature_extraction", 110.0),
                ("random", "feature_extraction", 111.5),
            ]
        elif "phase1.epochs=0" in sets:  # fine-tuning: 3 s to the first row, 1 s to the next
            rows = [("imagenet", "fine_tuning", 103.0), ("imagenet", "fine_tuning", 104.0)]
        elif "arms=imagenet" in sets and "phase2.epochs=0" not in sets:  # the seminar's way
            rows = [
                ("imagenet", "feature_extraction", 101.0),
                ("imagenet", "feature_extraction", 102.0),
                ("imagenet", "fine_tuning", 102.5),
                ("imagenet", "fine_tuning", 103.5),
            ]
        else:
            rows = [("imagenet", "feature_extraction", 101.0)]
        curves = [{"arm": a, "phase": p, "time": t} for a, p, t in rows]
        summary = {"arms": arms}
        events = [(100.0, "started"), (100.4, bench.PREPARING["feature_extraction"])]
        return {
            "wall_s": 5.0,
            "peak_rss_mb": 1200.0,
            "summary": summary,
            "curves": curves,
            "events": events,
            "first_event_time": 100.0,
            "out": {"run_id": "r"},
        }

    def submit(sets, env, timeout):
        calls.append(("submit", sets, env["FEATURE_CACHE_DIR"]))
        return {"start_to_first_epoch_s": 1.5, "start_to_completed_s": 3.0, "val_accuracy": 0.9}

    def sweep(fixed, env, work, timeout, *, sweep_first, grid, say):
        calls.append(("sweep", fixed, str(work)))
        return {"sweep_wall_s": 30.0, "separate_wall_s": 100.0, "configs": 12}

    monkeypatch.setattr(bench, "_measure", measure)
    monkeypatch.setattr(bench, "_engine", engine)

    def hydra(fixed, env, work, timeout, *, shared_first, say):
        calls.append(("hydra", fixed, str(work)))
        tasks = {"a": {"imagenet": 0.9, "random": 0.5}}
        return {
            mode: {"run_wall_s": wall, "process_wall_s": wall + 5, "peak_rss_mb": 1000.0}
            | {"val_accuracy": tasks}
            for mode, wall in (("shared", 12.0), ("separate", 20.0))
        }

    monkeypatch.setattr(bench, "measure_sweep", sweep)
    monkeypatch.setattr(bench, "measure_hydra", hydra)
    monkeypatch.setattr(bench, "submit_for_first_epoch", submit)
    monkeypatch.setattr(bench.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "work"))
    monkeypatch.setattr(
        "pipelines.data.resolve_source", lambda name: type("S", (), {"root": Path("/hoh")})
    )
    return calls


def test_both_sides_run_on_the_same_settings_and_ratios_follow(measured, tmp_path):
    result = bench.run_bench(
        baseline=Path(__file__), image_size=64, batch_size=8, epochs=2, repeats=1
    )
    plain = [c for c in measured if c[0] == "plain"][1:]  # after the backbones listing
    engine = [c for c in measured if c[0] == "engine"]
    assert [c[1][c[1].index("--mode") + 1] for c in plain] == ["frozen", "scratch"]
    for _, cmd, _ in plain:
        assert cmd[cmd.index("--handle") + 1] == "/lite0" and "/hoh" in cmd
        assert cmd[cmd.index("--image-size") + 1] == "64"
        assert cmd[cmd.index("--batch-size") + 1] == "8"
    assert len(engine) == 7 and engine[0][1] == engine[1][1]  # cold, then warm: same run
    assert engine[2][1] == engine[3][1]  # fine-tuning, then again with the boundary on disk
    assert "phase2.epochs=2" in engine[2][1]  # the seminar preset's fine-tuning epochs
    seminar = set(engine[4][1])  # feature extraction then fine-tuning, one run
    assert {"phase1.epochs=2", "phase2.epochs=2", "arms=imagenet"} <= seminar
    assert set(engine[2][1]) - seminar == {"phase1.epochs=0"}  # otherwise the fine-tuning run
    for _, sets, _ in engine:
        assert {"dataset=/hoh", "image_size=64", "batch_size=8"} <= set(sets)
    rep = tmp_path / "work" / "rep0"
    caches = [cache for _, _, cache in engine]
    assert caches[:2] == [str(rep / "features")] * 2
    assert caches[2:4] == [str(rep / "features-finetune")] * 2
    assert caches[4] == str(rep / "features-seminar")  # a cold cache of its own
    assert caches[6] == str(rep / "features-memory")  # both arms: a cold cache
    submitted = [c for c in measured if c[0] == "submit"]
    assert submitted == [("submit", engine[0][1], str(rep / "features"))]  # a warm cache
    assert result["feature_extraction_cold_ratio"] == 0.25  # 5 s / 20 s
    assert result["finetune_only_epoch_ratio"] == round((3.0 + 1.0) / 2 / 3.0, 3)  # rows
    # the seminar's way, charged: set-up 0.4 s (to "preparing feature extraction"), keeping
    # the boundary 1 s (phase 1 ended at 102 s, the cold run's at 101 s), fine-tuning 1.5 s
    # (from the last feature-extraction row at 102 s); over 2 epochs, per plain epoch of 3 s
    assert result["finetune_epoch_ratio"] == round((0.4 + 1.0 + 1.5) / 2 / 3.0, 3)
    assert result["seconds"]["engine_seminar_setup"] == 0.4
    assert result["seconds"]["engine_seminar_keep"] == 1.0
    assert result["seconds"]["engine_seminar_finetune_phase"] == 1.5
    assert result["seconds"]["engine_seminar_phase1"] == 2.0
    assert result["seconds"]["engine_cold_phase1"] == 1.0
    assert result["scratch_epoch_ratio"] == 0.75  # 1.5 s between rows / 2 s, the last epochs
    assert result["memory_ratio"] == 1.2
    assert result["start_to_first_epoch_s"] == 1.5
    assert result["settings"]["train_images"] == 16
    assert result["val_accuracy"]["engine_both_arms"] == {"imagenet": 0.9}
    sweeps = [c for c in measured if c[0] == "sweep"]
    assert len(sweeps) == 1 and {"dataset=/hoh", "batch_size=8"} <= set(sweeps[0][1])
    assert set(bench.SWEEP_SETS) <= set(sweeps[0][1])
    assert result["sweep_ratio"] == 0.3  # 30 s / 100 s
    hydras = [c for c in measured if c[0] == "hydra"]
    assert len(hydras) == 1 and "dataset=chest_xray_pneumonia_tasks" in hydras[0][1]
    assert set(bench.HYDRA_SETS) <= set(hydras[0][1])
    assert result["hydra_ratio"] == 0.6  # the runs' own wall: 12 s / 20 s
    assert result["seconds"]["hydra_shared_process_wall"] == 17.0
    assert result["val_accuracy"]["hydra"]["separate"] == {"a": {"imagenet": 0.9, "random": 0.5}}


def test_without_the_two_task_data_set_the_hydra_figure_is_skipped_and_says_why(
    measured, monkeypatch
):
    def resolve(name):
        if name == bench.HYDRA_DATASET:
            raise UserError("the chest X-rays are not in DATASETS_DIR")
        return type("S", (), {"root": Path("/hoh")})

    monkeypatch.setattr("pipelines.data.resolve_source", resolve)
    result = bench.run_bench(baseline=Path(__file__), repeats=1, accuracy_target=0.5)
    assert not [c for c in measured if c[0] == "hydra"]
    assert result["hydra_ratio"] is None and result["spread"]["hydra_ratio"] is None
    assert result["valid"]["hydra_ratio"] is False and result["valid"]["sweep_ratio"] is True
    assert result["messages"] == [
        "hydra_ratio: not measured (the chest X-rays are not in DATASETS_DIR)"
    ]


def test_measure_sweep_runs_one_sweep_and_each_config_alone(monkeypatch, tmp_path):
    seen: list[tuple[list[str], dict]] = []

    def measure(cmd, env, timeout):
        seen.append((cmd, env))
        if "sweep" in cmd:
            trials = [{"state": "COMPLETE"}] * 12
            return {"wall_s": 40.0, "out": {"trials": trials}}
        return {"wall_s": 10.0, "out": {}}

    monkeypatch.setattr(bench, "_measure", measure)
    fixed = ["dataset=/hoh", "image_size=160"]
    for sweep_first in (True, False):
        seen.clear()
        out = bench.measure_sweep(fixed, {}, tmp_path, 60, sweep_first=sweep_first)
        assert out == {
            "configs": 12,
            "sweep_wall_s": 40.0,
            "separate_walls": [10.0] * 12,
            "separate_wall_s": 120.0,
        }
        sweep = [cmd for cmd, _ in seen if "sweep" in cmd]
        trains = [cmd for cmd, _ in seen if "train" in cmd]
        assert len(sweep) == 1 and len(trains) == 12
        assert (seen[0][0] is sweep[0]) == sweep_first
        cmd = sweep[0]
        assert cmd[cmd.index("--workers") + 1] == "1" and cmd[cmd.index("--pruner") + 1] == "none"
        assert [cmd[i + 1] for i, c in enumerate(cmd) if c == "--param"] == list(bench.SWEEP_GRID)
        points = {
            tuple(c for c in t if "=" in c and not c.startswith(("dataset", "image")))
            for t in trains
        }
        assert len(points) == 12  # every config once
        assert ("phase2.unfreeze_blocks=3", "phase1.lr=0.003") in points
        caches = {env["FEATURE_CACHE_DIR"] for _, env in seen}
        assert caches == {str(tmp_path / "features-sweep"), str(tmp_path / "features-separate")}


def test_measure_hydra_runs_shared_and_separate_each_on_its_own_caches(monkeypatch, tmp_path):
    seen: list[tuple[list[str], dict]] = []

    def measure(cmd, env, timeout):
        seen.append((cmd, env))
        mode = cmd[-1].split("=")[1]
        task = {"final_val_accuracy": 0.75 if mode == "shared" else 0.7}
        arms = {arm: {"tasks": {"x": task, "y": task}} for arm in ("imagenet", "random")}
        out = {"arms": arms, "cost": {"wall_s": 10.0 if mode == "shared" else 18.0}}
        return {"wall_s": 99.0, "peak_rss_mb": 1500.0, "out": out}

    monkeypatch.setattr(bench, "_measure", measure)
    for shared_first in (True, False):
        seen.clear()
        out = bench.measure_hydra(["dataset=d"], {}, tmp_path, 60, shared_first=shared_first)
        modes = [cmd[-1] for cmd, _ in seen]
        assert modes == (["hydra=shared", "hydra=separate"][:: 1 if shared_first else -1])
        assert {env["FEATURE_CACHE_DIR"] for _, env in seen} == {
            str(tmp_path / "features-shared"),
            str(tmp_path / "features-separate"),
        }
        assert out["shared"]["run_wall_s"] == 10.0 and out["separate"]["run_wall_s"] == 18.0
        assert out["shared"]["process_wall_s"] == 99.0
        assert out["separate"]["val_accuracy"] == {
            t: {"imagenet": 0.7, "random": 0.7} for t in ("x", "y")
        }


def test_repetitions_interleave_and_report_medians_with_their_spread(measured):
    result = bench.run_bench(baseline=Path(__file__), repeats=3)
    sides = []
    for kind, *_ in measured[1:]:  # after the backbones listing
        if kind in ("sweep", "hydra"):  # their own two sides, interleaved within
            continue
        side = "plain" if kind == "plain" else "engine"
        if not sides or sides[-1] != side:
            sides.append(side)
    assert sides == ["engine", "plain", "engine", "plain"]  # e p | p e | e p
    assert [r["engine_first"] for r in result["repetitions"]] == [True, False, True]
    assert result["feature_extraction_cold_ratio"] == 0.25
    assert result["spread"]["feature_extraction_cold_ratio"] == [0.125, 0.5]
    assert result["spread"]["finetune_epoch_ratio"] == [0.483, 0.483]
    assert result["spread"]["finetune_only_epoch_ratio"] == [0.667, 0.667]
    assert result["settings"]["repeats"] == 3
    assert set(result["cores"]) == {"cpu_count", "affinity"}


def test_an_accuracy_below_the_target_invalidates_the_feature_extraction_figures(measured):
    result = bench.run_bench(baseline=Path(__file__), repeats=1)  # horses_or_humans: 0.99
    assert result["settings"]["accuracy_target"] == 0.99
    assert result["valid"]["feature_extraction_cold_ratio"] is False
    assert result["valid"]["feature_extraction_warm_ratio"] is False
    assert result["valid"]["finetune_epoch_ratio"] is True
    assert any("below the target 0.99" in m for m in result["messages"])
    lenient = bench.run_bench(baseline=Path(__file__), repeats=1, accuracy_target=0.5)
    assert all(lenient["valid"].values()) and lenient["messages"] == []


def test_a_named_two_task_data_set_that_is_missing_is_refused_before_anything_runs(
    measured, monkeypatch
):
    def resolve(name):
        if name == "my_tasks":
            raise UserError("'my_tasks' is not a folder or zip here")
        return type("S", (), {"root": Path("/hoh")})

    monkeypatch.setattr("pipelines.data.resolve_source", resolve)
    with pytest.raises(UserError, match="HydraNet figure's data set: 'my_tasks' is not"):
        bench.run_bench(baseline=Path(__file__), repeats=1, hydra_dataset="my_tasks")
    assert measured == []  # not even the backbone listing


def test_the_cli_passes_hydra_dataset_none_and_prints_a_skipped_figure(monkeypatch, capsys):
    from pipelines.commands import bench as command

    seen = {}

    def fake_run_bench(**kwargs):
        seen.update(kwargs)
        figures = {f: 0.1 for f in bench.FIGURES} | {"hydra_ratio": None, "sweep_ratio": 0.7}
        return {
            "machine": "m",
            "cores": {},
            "settings": {"repeats": 1},
            **figures,
            "spread": {f: None if v is None else [v, v] for f, v in figures.items()},
            "valid": {f: v is not None for f, v in figures.items()},
            "messages": ["hydra_ratio: not measured (no two-task data set given)"],
            "imagenet_val_accuracy": 1.0,
            "seconds": {},
            "megabytes": {},
        }

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["bench", "--hydra-dataset", "none"])
    assert command.run(args) == 0
    assert seen["hydra_dataset"] is None
    out = capsys.readouterr().out
    assert [line.split()[-2:] for line in out.splitlines() if line.startswith("hydra_ratio ")] == [
        ["not", "measured"]
    ]
    assert [line.split()[-1] for line in out.splitlines() if line.startswith("sweep_ratio ")] == [
        "MISSED"
    ]
    only = [line for line in out.splitlines() if line.startswith("finetune_only_epoch_ratio ")]
    assert len(only) == 1 and only[0].endswith("-  (no target)")
    assert "hydra_ratio: not measured (no two-task data set given)" in out


def test_a_missing_baseline_is_refused(tmp_path):
    with pytest.raises(UserError, match="the plain recipe .* is missing"):
        bench.run_bench(baseline=tmp_path / "nope.py")


@pytest.mark.slow
def test_the_whole_bench_on_tiny_data(tiny_data, lite0_handle, tmp_path):
    """Every process for real, once each, on 2 x 12 generated images at 32 px."""
    result = bench.run_bench(
        dataset=tiny_data,
        image_size=32,
        batch_size=8,
        epochs=1,
        finetune_epochs=1,
        scratch_epochs=1,
        repeats=1,
        accuracy_target=0.0,
        sweep_grid=("phase1.lr=1e-3,1e-2",),
        sweep_sets=("phase1.epochs=1", "phase2.epochs=0"),
        hydra_dataset=str(make_two_task_folder(tmp_path / "two", validation=12)),
        hydra_sets=("image_size=32", "batch_size=8", "phase1.epochs=1", "phase2.epochs=1"),
    )
    for figure in bench.FIGURES:
        value, (low, high) = result[figure], result["spread"][figure]
        assert math.isfinite(value) and value > 0, figure
        assert low <= value <= high, figure
        assert result["valid"][figure] is True, figure
    for key in ("machine", "cores", "settings", "seconds", "megabytes", "val_accuracy"):
        assert key in result
    assert result["cores"]["cpu_count"] >= result["cores"]["affinity"] >= 1
    assert result["settings"]["dataset"] == tiny_data


@pytest.mark.slow
def test_measure_sweep_for_real_on_tiny_data(tiny_data, lite0_handle, tmp_path):
    """The sweep figure's two sides for real: one sweep process, then each config alone."""
    env = bench._environment(tmp_path)
    fixed = [f"dataset={tiny_data}", "image_size=32", "batch_size=8", "phase1.epochs=1"]
    fixed.append("phase2.epochs=0")
    out = bench.measure_sweep(
        fixed, env, tmp_path, 600, sweep_first=True, grid=("phase1.lr=1e-3,1e-2",)
    )
    assert out["configs"] == 2 and len(out["separate_walls"]) == 2
    assert out["sweep_wall_s"] > 0 and out["separate_wall_s"] == round(
        sum(out["separate_walls"]), 2
    )
    from pipelines.runs.store import RunStore

    for side, runs in (("sweep", 2), ("separate", 2)):
        store = RunStore(tmp_path / f"runs-{side}")
        assert [r.status for r in store.list_runs()] == ["completed"] * runs
        store.close()
