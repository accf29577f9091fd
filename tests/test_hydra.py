"""HydraNets: one shared backbone with a head per task, against one network per task.

The data (``tests/conftest_hydra.py``) has two tasks decided by different, known image
features (overall brightness; red vs blue), with some labels missing for each task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from pipelines.errors import UserError
from pipelines.runs.store import RunStore
from pipelines.runs.worker import EXIT_COMPLETED, run_worker
from pipelines.training.config import ExperimentConfig
from pipelines.training.hydra import HydraArm, build_heads, masked_losses
from pipelines.training.preflight import check_experiment
from tests.conftest_engine import tiny_config
from tests.conftest_hydra import make_two_task_folder


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory) -> str:
    return str(make_two_task_folder(tmp_path_factory.mktemp("hydra") / "two", validation=12))


def _run(two_tasks, tmp_path_factory, hydra: str) -> tuple[RunStore, str]:
    store = RunStore(tmp_path_factory.mktemp("runs"))
    run_id = store.create_run(tiny_config(two_tasks, f"hydra={hydra}", "phase1.epochs=3"))
    with pytest.MonkeyPatch.context() as mp:  # a cold feature cache of its own
        mp.setenv("FEATURE_CACHE_DIR", str(tmp_path_factory.mktemp("features")))
        assert run_worker(run_id, store) == EXIT_COMPLETED, store.get_run(run_id).error
    return store, run_id


@pytest.fixture(scope="module")
def shared_run(two_tasks, lite0_handle, tmp_path_factory):
    return _run(two_tasks, tmp_path_factory, "shared")


def test_config_validates_hydra_and_tasks(tiny_data):
    assert ExperimentConfig().hydra == "shared" and ExperimentConfig().tasks == []
    with pytest.raises(UserError, match="hydra: 'both' is not one of shared, separate"):
        ExperimentConfig().with_overrides(["hydra=both"])
    with pytest.raises(UserError, match="tasks: name each task once"):
        ExperimentConfig().with_overrides(["tasks=a,a"])
    config = ExperimentConfig().with_overrides(["tasks=colour, light"])
    assert config.tasks == ["colour", "light"]
    with pytest.raises(UserError, match="has one task"):
        check_experiment(tiny_config(tiny_data, "tasks=colour"))


def test_a_head_without_labels_in_a_batch_gets_no_gradient():
    heads = build_heads(8, [("a", 2), ("b", 3)], 0.0, seed=0)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 8)), tf.float32)
    y = tf.constant([[0, -1], [1, -1], [1, -1], [0, -1]])  # task b: every label missing
    with tf.GradientTape() as tape:
        total, losses, _, counts = masked_losses(heads(x), y)
    a, b = heads.get_layer("a").trainable_variables, heads.get_layer("b").trainable_variables
    grads = tape.gradient(total, a + b)
    assert all(np.any(g.numpy() != 0) for g in grads[:2])
    assert all(np.all(g.numpy() == 0) for g in grads[2:])
    assert float(losses[1]) == 0.0 and [float(c) for c in counts] == [4.0, 0.0]
    # a missing label never enters a loss: changing what stands in for it changes nothing
    with tf.GradientTape() as tape:
        again, *_ = masked_losses(heads(x), tf.constant([[0, -7], [1, -1], [1, -2], [0, -1]]))
    assert float(again) == float(total)


def test_the_optimizer_does_not_step_a_head_without_labels():
    """With Adam's momentum from earlier batches, a zero gradient would still move a
    head; the step leaves such a head's weights exactly as they were."""
    arm = HydraArm("imagenet", ExperimentConfig(), None, 32, 2, task_classes=[("a", 2), ("b", 2)])
    arm.head = arm._net = build_heads(6, arm.task_classes, 0.0, seed=0)
    arm._compile(0.05)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(8, 6)), tf.float32)
    for _ in range(3):  # both heads learn: momentum builds up
        arm.train_step(x, np.stack([rng.integers(0, 2, 8), rng.integers(0, 2, 8)], axis=1))
    before = {v.name: v.numpy().copy() for v in arm.head.variables}
    y = np.stack([rng.integers(0, 2, 8), np.full(8, -1)], axis=1)
    loss, losses, hits, counts = arm.train_step(x, y)
    after = {v.name: v.numpy() for v in arm.head.variables}
    for layer, moved in (("a", True), ("b", False)):
        for v in arm.head.get_layer(layer).variables:
            assert np.any(before[v.name] != after[v.name]) == moved, v.name
    assert counts.tolist() == [8.0, 0.0] and losses[1] == 0.0


def test_a_shared_hydranet_learns_both_tasks(shared_run):
    store, run_id = shared_run
    summary = store.get_run(run_id).summary
    assert summary["hydra"] == "shared" and set(summary["tasks"]) == {"light", "colour"}
    for task in ("light", "colour"):
        chance = summary["tasks"][task]["chance_accuracy"]
        acc = summary["arms"]["imagenet"]["tasks"][task]["final_val_accuracy"]
        assert acc >= 0.9 > chance + 0.2, (task, acc, chance)
    # per-task metric rows for both arms, every epoch; labelled images only
    rows = store.curves(run_id)
    assert set(zip(rows["arm"], rows["task"], strict=True)) == {
        (a, t) for a in ("imagenet", "random") for t in ("light", "colour")
    }
    assert len(rows) == 2 * 2 * 4
    assert set(store.curves(run_id, kind="batch")["task"]) == {"light", "colour"}
    result = store.result(run_id, "imagenet")
    light = result["tasks"]["light"]
    assert light["classes"] == ["bright", "dark"]
    assert sum(map(sum, light["confusion"])) == 11  # 12 validation images, 1 unlabelled
    assert sum(map(sum, result["tasks"]["colour"]["confusion"])) == 10
    cost = summary["cost"]
    assert cost["networks"] == 2 and cost["backbone_forward_images"] > 0
    assert cost["model_bytes"] == 4 * cost["parameters"] > 0


def test_the_export_has_one_named_output_per_task_and_matches_tensorflow(shared_run, tmp_path):
    from pipelines.training.export import export

    store, run_id = shared_run
    info = export(store, run_id, "imagenet", "onnx", tmp_path / "hydra.onnx")
    assert sorted(info["outputs"]) == ["colour", "light"]
    assert info["parity_max_abs_diff"] < 1e-4 and info["parity_images"] > 0
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "hydra.onnx"))
    shapes = {o.name: o.shape[-1] for o in session.get_outputs()}
    assert shapes == {"colour": 2, "light": 2}
    saved = tf.saved_model.load(
        str(export(store, run_id, "random", "savedmodel", tmp_path / "sm")["path"])
    )
    out = saved.serve(tf.zeros((1, 32, 32, 3)))
    assert set(out) == {"colour", "light"}
    assert np.allclose(out["light"].numpy().sum(axis=1), 1.0)


def test_the_cli_reports_each_task_and_arm(shared_run, capsys, monkeypatch):
    """The summary the CLI prints as JSON (``train --json``) holds each task per arm."""
    from types import SimpleNamespace

    from pipelines.commands import train

    store, run_id = shared_run
    monkeypatch.setenv("RUNS_DIR", str(store.root))
    monkeypatch.setattr("pipelines.runs.worker.run_worker", lambda rid, s: EXIT_COMPLETED)
    monkeypatch.setattr(train, "_claimed_here", lambda store, rid: True)  # it has finished
    monkeypatch.setattr(RunStore, "create_run", lambda self, config: run_id)
    config = store.get_run(run_id).config
    args = SimpleNamespace(config=None, set=[f"dataset={config.dataset}", "image_size=32"])
    args.json = True
    assert train.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    for arm in ("imagenet", "random"):
        tasks = out["arms"][arm]["tasks"]
        assert set(tasks) == {"light", "colour"}
        assert all(0 <= t["final_val_balanced_accuracy"] <= 1 for t in tasks.values())
    assert out["hydra"] == "shared" and out["cost"]["networks"] == 2


@pytest.mark.slow
def test_separate_networks_train_each_task_on_its_own_labels(
    two_tasks, lite0_handle, tmp_path_factory, tmp_path
):
    from pipelines.training.export import export

    store, run_id = _run(two_tasks, tmp_path_factory, "separate")
    summary = store.get_run(run_id).summary
    assert summary["cost"]["networks"] == 4  # 2 arms x 2 tasks
    for task in ("light", "colour"):
        assert summary["arms"]["imagenet"]["tasks"][task]["final_val_accuracy"] >= 0.9
    info = export(store, run_id, "imagenet", "onnx", tmp_path / "separate.onnx")
    assert sorted(info["outputs"]) == ["colour", "light"] and info["parity_max_abs_diff"] < 1e-4
