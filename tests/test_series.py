"""The near-or-far series: its configs, its table on fake runs, queueing through the job
manager (a test workload), and one tiny real series through ``python -m pipelines near-far``."""

from __future__ import annotations

import json

import pytest

from pipelines.__main__ import main
from pipelines.errors import UserError
from pipelines.runs import lifecycle
from pipelines.runs.run import Run
from pipelines.runs.series import (
    NEAR_FAR_CUTS,
    NEAR_FAR_DATASETS,
    ROW_KEYS,
    depth_table,
    format_table,
    near_far_base,
    near_far_configs,
    new_sweep_id,
    start_series,
)
from pipelines.training.config import ExperimentConfig
from tests.conftest_engine import TINY

# --- configs --------------------------------------------------------------------------------


def test_the_lessons_base_config() -> None:
    base = near_far_base()
    assert base.backbone == "efficientnet_lite0" and base.image_size == 160
    assert base.train_per_class == 100 and base.arms == ["imagenet", "random"]
    assert (base.phase1.epochs, base.phase2.epochs) == (5, 0)  # feature extraction only
    assert near_far_base(["phase1.epochs=2"]).phase1.epochs == 2
    assert NEAR_FAR_CUTS == (3, 6, 9, 12, 15, 18)
    assert NEAR_FAR_DATASETS == ("horses_or_humans", "chest_xray_pneumonia")


def test_configs_are_a_validated_grid_data_set_major(tiny_data) -> None:
    base = near_far_base(["phase1.epochs=1"])
    configs = near_far_configs(base, ["horses_or_humans", tiny_data], [6, 3, 6])
    assert [(c.dataset, c.reuse_blocks) for c in configs] == [
        ("horses_or_humans", 3),
        ("horses_or_humans", 6),
        (tiny_data, 3),
        (tiny_data, 6),
    ]
    assert all(c.phase1.epochs == 1 and c.image_size == 160 for c in configs)
    assert base.reuse_blocks is None and base.dataset == "horses_or_humans"  # base untouched
    configs[0].seed = 7
    assert configs[1].seed == 0  # each config its own object


@pytest.mark.parametrize(
    ("datasets", "cuts", "message"),
    [
        ([], [3], "at least one data set"),
        (["horses_or_humans"], [], "at least one cut"),
        (["no_such_set"], [3], "unknown data set 'no_such_set'"),
        (["horses_or_humans"], [0, 3], "reuse_blocks: must be at least 1"),
        (["horses_or_humans"], [3, 19], "19 is more than efficientnet_lite0's 18 blocks"),
    ],
)
def test_bad_series_are_refused(datasets, cuts, message) -> None:
    with pytest.raises(UserError, match=message):
        near_far_configs(near_far_base(), datasets, cuts)


def test_sweep_ids_name_the_series() -> None:
    first, second = new_sweep_id("Near far!"), new_sweep_id("near-far")
    assert first.startswith("near-far-") and first != second
    assert len(first.split("-")) == 5  # near, far, date, time, random


# --- the table ------------------------------------------------------------------------------


def _run(run_id, dataset, cut, status="completed", arms=("imagenet", "random"), summary=True):
    config = ExperimentConfig(dataset=dataset, reuse_blocks=cut, arms=list(arms)).to_dict()
    done = {
        "arms": {
            arm: {
                "best_val_accuracy": 0.5 + (cut or 18) / 100 + (0.1 if arm == "imagenet" else 0),
                "best_val_balanced_accuracy": 0.5 + (cut or 18) / 200,
            }
            for arm in arms
        },
        "chance_accuracy": 0.626 if dataset == "chest" else 0.5,
    }
    return Run.from_dict(
        {
            "run_id": run_id,
            "status": status,
            "config": config,
            "created": 0.0,
            "updated": 0.0,
            "summary": done if summary else None,
            "sweep_id": "s",
            "trial": 0,
        }
    )


def test_depth_table_one_row_per_run_and_arm_sorted() -> None:
    runs = [
        _run("c", "chest", 6),
        _run("b", "horses", None),  # the whole backbone: its block count
        _run("a", "horses", 3),
        _run("d", "chest", 3, arms=("imagenet",)),
    ]
    rows = depth_table(runs)
    assert all(tuple(r) == ROW_KEYS for r in rows)
    assert [(r["dataset"], r["arm"], r["reuse_blocks"]) for r in rows] == [
        ("chest", "imagenet", 3),
        ("chest", "imagenet", 6),
        ("chest", "random", 6),
        ("horses", "imagenet", 3),
        ("horses", "imagenet", 18),
        ("horses", "random", 3),
        ("horses", "random", 18),
    ]
    first = rows[0]
    assert first["best_val_accuracy"] == pytest.approx(0.63)
    assert first["best_val_balanced_accuracy"] == pytest.approx(0.515)
    assert first["chance_accuracy"] == 0.626 and first["run_id"] == "d"
    assert first["status"] == "completed"
    assert json.loads(json.dumps(rows)) == rows


def test_depth_table_of_runs_still_going() -> None:
    queued = _run("q", "horses", 3, status="queued", summary=False)
    rows = depth_table([queued])
    assert [r["arm"] for r in rows] == ["imagenet", "random"]
    assert all(r["best_val_accuracy"] is None and r["chance_accuracy"] is None for r in rows)
    best = {"val_accuracy": {"q": {"imagenet": 0.7}}, "val_balanced_accuracy": {}}
    rows = depth_table([queued], best)
    assert rows[0]["best_val_accuracy"] == 0.7 and rows[1]["best_val_accuracy"] is None
    assert rows[0]["best_val_balanced_accuracy"] is None
    assert depth_table([]) == []


def test_format_table_aligned() -> None:
    text = format_table(depth_table([_run("a", "horses", 3), _run("b", "horses", None)]))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["dataset", "arm", "blocks"]
    assert len(lines) == 5 and "63.0 %" in text and "50.0 %" in text
    assert len({line.index("completed") for line in lines[1:]}) == 1  # one column


# --- queueing through the job manager -------------------------------------------------------


def test_start_series_tags_every_run(job_manager, workload, tiny_data) -> None:
    workload("steady_workload", steps=2, step_s=0.01)
    configs = near_far_configs(near_far_base(), [tiny_data], [2, 4])
    sweep_id, run_ids = start_series(job_manager, configs, "near-far")
    assert sweep_id.startswith("near-far-") and len(run_ids) == 2
    runs = job_manager.store.runs_in_sweep(sweep_id)
    assert [r.run_id for r in runs] == run_ids
    assert [(r.trial, r.config.reuse_blocks) for r in runs] == [(0, 2), (1, 4)]
    for run_id in run_ids:
        assert job_manager.wait(run_id, timeout=120).status == "completed"
    assert job_manager.store.sweep_ids() == [sweep_id]


# --- a tiny real series through the command line --------------------------------------------


def test_tiny_series_through_the_cli(tiny_data, lite0_handle, store, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FEATURE_CACHE_DIR", str(store.root / "features"))
    sets = [f"--set={s}" for s in [*TINY, "phase2.epochs=0", "train_per_class=null"]]
    code = main(["near-far", *sets, "--cuts", "2,4", "--datasets", tiny_data, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = json.loads(captured.out)
    assert [(r["arm"], r["reuse_blocks"]) for r in rows] == [
        ("imagenet", 2),
        ("imagenet", 4),
        ("random", 2),
        ("random", 4),
    ]
    assert all(r["status"] == "completed" and r["dataset"] == tiny_data for r in rows)
    assert all(0 <= r["best_val_accuracy"] <= 1 for r in rows)
    assert all(r["chance_accuracy"] == 0.5 for r in rows)  # 4 + 4 validation images
    runs = store.list_runs()
    assert len(runs) == 2 and len({r.sweep_id for r in runs}) == 1
    assert sorted(r.trial for r in runs) == [0, 1]
    assert "series near-far-" in captured.err
    assert not lifecycle.reap(store)  # nothing left queued or running


def test_cli_text_table(store, monkeypatch, capsys) -> None:
    """Without --json: the aligned table (the series' runs faked as already done)."""
    import pipelines.runs.worker as worker

    def finish(run_id, store_, **_):
        store_.set_summary(run_id, {"arms": {"imagenet": {"best_val_accuracy": 0.9}}})
        lifecycle.finish(store_._store, run_id, "completed")
        return worker.EXIT_COMPLETED

    monkeypatch.setattr(worker, "run_worker", lambda run_id, s, **kw: finish(run_id, s, **kw))
    code = main(["near-far", "--set=arms=imagenet", "--cuts=3", "--datasets=horses_or_humans"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].startswith("series near-far-")
    assert "horses_or_humans  imagenet" in out and "90.0 %" in out
