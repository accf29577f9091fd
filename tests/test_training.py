"""The experiment engine end to end on a tiny generated data set, with the real backbone.

Lite0 at 32 px on 2 classes x 12 images: each run takes seconds, and exercises the same
code the seminar's 224 px runs do.
"""

import os
import signal
import time

import numpy as np
import pytest

from pipelines.runs.jobs import JobManager
from pipelines.runs.worker import EXIT_COMPLETED, run_worker
from tests.conftest_engine import tiny_config as _config


def test_full_run_stores_consistent_metrics(finished_run):
    store, run_id = finished_run
    run = store.get_run(run_id)
    assert run.status == "completed"
    epochs = store.curves(run_id, kind="epoch")
    for arm in ("imagenet", "random"):
        rows = epochs[epochs["arm"] == arm].sort_values("epoch")
        assert rows["epoch"].tolist() == [0, 1, 2]
        assert rows["phase"].tolist() == ["feature_extraction"] * 2 + ["fine_tuning"]
        assert rows[["loss", "accuracy", "val_loss", "val_accuracy"]].notna().all().all()
        assert ((rows["val_accuracy"] >= 0) & (rows["val_accuracy"] <= 1)).all()
        result = store.result(run_id, arm)
        assert result["classes"] == ["cats", "dogs"]
        assert np.array(result["confusion"]).sum() == 8  # every validation image once
        assert len(result["predictions"]) == 8
        assert all(abs(sum(p["probabilities"]) - 1) < 1e-3 for p in result["predictions"])
        # Balanced accuracy of the last epoch: the mean recall of the stored confusion matrix
        # (made from the same validation pass).
        confusion = np.array(result["confusion"])
        recall = confusion.diagonal() / confusion.sum(axis=1)
        last = rows.iloc[-1]
        assert last["val_balanced_accuracy"] == pytest.approx(recall.mean())
        summary = run.summary["arms"][arm]
        assert summary["final_val_balanced_accuracy"] == pytest.approx(recall.mean())
        assert summary["best_val_balanced_accuracy"] == pytest.approx(
            rows["val_balanced_accuracy"].max()
        )
        assert summary["final_val_accuracy"] == pytest.approx(rows["val_accuracy"].iloc[-1])
        assert summary["best_val_accuracy"] == pytest.approx(rows["val_accuracy"].max())
        assert summary["epochs"] == 3
        artefacts = store.artefact_dir(run_id) / arm
        assert (artefacts / "arm.json").is_file() and (artefacts / "head.npz").is_file()
        assert (artefacts / "backbone.npz").is_file()  # fine-tuned: its variables are kept
        assert list((store.artefact_dir(run_id) / "tensorboard" / arm).glob("events.out.*"))
    assert run.summary["val_class_counts"] == [4, 4]
    assert run.summary["chance_accuracy"] == pytest.approx(0.5)
    batches = store.curves(run_id, kind="batch")
    assert len(batches) >= 6
    events = " ".join(e["message"] for e in store.events(run_id))
    assert "fine-tuning started, 2 backbone block(s) trainable" in events
    assert "feature cache: train 0/24 cached" in events
    assert "boundary cache: blocks below block_15 ran once" in events


def test_the_imagenet_arm_learns_the_tiny_task(finished_run):
    store, run_id = finished_run
    assert store.get_run(run_id).summary["arms"]["imagenet"]["best_val_accuracy"] >= 0.75


def test_arms_train_in_lockstep_on_identical_batches(finished_run):
    store, run_id = finished_run
    arms = store.get_run(run_id).summary["arms"]
    assert arms["imagenet"]["batches_digest"] == arms["random"]["batches_digest"]
    batches = store.curves(run_id, kind="batch")
    seq = {
        arm: batches[batches["arm"] == arm][["phase", "epoch", "step"]].values.tolist()
        for arm in ("imagenet", "random")
    }
    assert seq["imagenet"] == seq["random"]


def test_lockstep_order_changes_with_the_seed(tiny_data, lite0_handle, store):
    """The digest really depends on the batches: another seed, another order."""
    ids = []
    for seed in (0, 1):
        run_id = store.create_run(
            _config(tiny_data, f"seed={seed}", "phase2.epochs=0", "arms=imagenet")
        )
        assert run_worker(run_id, store) == EXIT_COMPLETED
        ids.append(run_id)
    digests = [store.get_run(i).summary["arms"]["imagenet"]["batches_digest"] for i in ids]
    assert digests[0] != digests[1]


def test_scratch_policy_trains_everything_from_the_start(tiny_data, lite0_handle, store):
    run_id = store.create_run(_config(tiny_data, "arms=random", "random_policy=scratch"))
    assert run_worker(run_id, store) == EXIT_COMPLETED
    events = " ".join(e["message"] for e in store.events(run_id))
    assert "feature extraction started, all backbone block(s) trainable" in events
    assert "feature cache" not in events and "boundary cache" not in events


def test_bad_inputs_fail_the_run_with_the_message(tiny_data, lite0_handle, store):
    run_id = store.create_run(_config(tiny_data, "phase2.unfreeze_blocks=40"))
    assert run_worker(run_id, store) != EXIT_COMPLETED
    run = store.get_run(run_id)
    assert run.status == "failed" and "phase2.unfreeze_blocks" in run.error
    run_id = store.create_run(_config(tiny_data, "batch_size=100"))
    run_worker(run_id, store)
    assert "batch_size: 100 is larger than the training set" in store.get_run(run_id).error


def _wait_for_epoch_rows(store, run_id, count, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = store.get_run(run_id).status
        assert status in ("queued", "running"), store.get_run(run_id)
        if len(store.curves(run_id, kind="epoch")) >= count:
            return
        time.sleep(0.2)
    raise AssertionError("no epoch rows in time")


@pytest.mark.slow
def test_stop_mid_run_keeps_what_exists(tiny_data, lite0_handle, store):
    jobs = JobManager(store)
    run_id = jobs.start(_config(tiny_data, "phase1.epochs=200", "phase2.epochs=0"))
    _wait_for_epoch_rows(store, run_id, 2)
    asked = time.monotonic()
    assert jobs.stop(run_id, timeout=30) == "stopped"
    assert time.monotonic() - asked < 15
    run = store.get_run(run_id)
    assert run.summary["stopped"] is True
    assert 1 <= run.summary["arms"]["imagenet"]["epochs"] < 200
    assert (store.artefact_dir(run_id) / "imagenet" / "head.npz").is_file()


@pytest.mark.slow
def test_sigkilled_worker_leaves_an_interrupted_run_with_its_rows(tiny_data, lite0_handle, store):
    jobs = JobManager(store)
    run_id = jobs.start(_config(tiny_data, "phase1.epochs=200", "phase2.epochs=0"))
    _wait_for_epoch_rows(store, run_id, 2)
    os.kill(store.get_run(run_id).worker_pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while jobs.status(run_id).status == "running" and time.monotonic() < deadline:
        time.sleep(0.2)  # the job manager reaps it once the process is gone
    assert store.get_run(run_id).status == "interrupted"
    assert len(store.curves(run_id, kind="epoch")) >= 2


def test_boundary_cache_gives_the_same_training_as_the_full_pass(
    tiny_data, lite0_handle, store, monkeypatch
):
    """Fine-tuning on cached bottom activations is the same maths as the full forward pass."""
    import pipelines.training.arms

    extra = ("dropout=0", "arms=imagenet", "phase2.epochs=2", "phase2.lr=1e-3", "seed=3")
    fast = store.create_run(_config(tiny_data, *extra))
    assert run_worker(fast, store) == EXIT_COMPLETED
    monkeypatch.setattr(pipelines.training.arms, "BOUNDARY_MAX_BYTES", 0)  # force the full pass
    full = store.create_run(_config(tiny_data, *extra))
    assert run_worker(full, store) == EXIT_COMPLETED
    assert "boundary cache" in " ".join(e["message"] for e in store.events(fast))
    assert "would need" in " ".join(e["message"] for e in store.events(full))
    a, b = (store.curves(r, kind="epoch") for r in (fast, full))
    cols = ["loss", "accuracy", "val_loss", "val_accuracy"]
    np.testing.assert_allclose(
        a[cols].to_numpy(float), b[cols].to_numpy(float), rtol=1e-3, atol=1e-4
    )
