"""``reuse_blocks``: take over the lowest K blocks of a backbone, drop the rest.

The seminar's rule: take over the lower layers (basic patterns); the more similar source and
target, the more layers to take over. These tests hold the cut to what it claims: exactly the
kept blocks' variables, the same features as the full backbone's activations at that block,
one check of the cut and of the freeze depth within it, and a run that trains on a cut.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.backbones import block_widths, check_cut, load_layer
from pipelines.backbones.blocks import Block, check_reuse_blocks, freeze_report
from pipelines.errors import UserError
from pipelines.training.config import ExperimentConfig, validate_against

SIZE = 64
K = 5  # stem + block_00..block_03: a 40-channel feature map at 1/8 of the input


@pytest.fixture(scope="module")
def full(isolated_engine_dirs):
    return load_layer("efficientnet_lite0", image_size=SIZE, splittable=True)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(-1, 1, (3, SIZE, SIZE, 3)).astype(np.float32)


def test_a_cut_backbone_has_exactly_the_kept_blocks_variables(full):
    cut = load_layer("efficientnet_lite0", image_size=SIZE, reuse_blocks=K)
    assert [b.name for b in cut.blocks] == [b.name for b in full.blocks[:K]]
    kept = [name for block in full.blocks[:K] for name in block.variables]
    assert [v.name for v in cut.module_variables] == kept
    assert {v.name for v in cut.variables} == set(kept)
    dropped = {name for block in full.blocks[K:] for name in block.variables}
    assert not dropped & {v.name for v in cut.variables}
    assert cut.can_split and len(cut.blocks) == K


def test_its_features_are_the_full_backbones_activations_at_that_block(full, images):
    cut = load_layer("efficientnet_lite0", image_size=SIZE, reuse_blocks=K)
    # The full backbone's chain, block by block (layer 0 is the input): its feature map
    # after block K, pooled as the head's input is.
    x = images
    for layer in full.chain.layers[1 : K + 1]:
        x = layer(x, training=False)
    assert full.chain.layers[K].name == full.blocks[K - 1].name
    expected = np.asarray(x).mean(axis=(1, 2))
    got = np.asarray(cut(images, training=False))
    assert got.shape == (3, block_widths("efficientnet_lite0")[K - 1]) == (3, 40)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # ... and the whole backbone is untouched: all 18 blocks, 1280 features.
    assert np.asarray(full(images)).shape == (3, 1280)


def test_the_random_arm_is_cut_at_the_same_point_from_the_same_random_network(isolated_engine_dirs):
    whole = load_layer("efficientnet_lite0", weights="random", seed=4, image_size=SIZE)
    cut = load_layer(
        "efficientnet_lite0", weights="random", seed=4, image_size=SIZE, reuse_blocks=K
    )
    values = {v.name: v.numpy() for v in whole.module_variables}
    assert cut.module_variables
    for v in cut.module_variables:
        np.testing.assert_array_equal(v.numpy(), values[v.name])


def test_fine_tuning_counts_within_the_kept_blocks(isolated_engine_dirs):
    cut = load_layer("efficientnet_lite0", image_size=SIZE, reuse_blocks=K)
    cut.set_unfreeze_blocks(2)
    report = cut.freeze_report()
    assert report["block_count"] == K and report["unfreeze_blocks"] == 2
    assert [r["trainable"] for r in report["blocks"]] == [False] * 3 + [True] * 2
    with pytest.raises(UserError, match="6 is more than this backbone's 5 blocks"):
        cut.set_unfreeze_blocks(6)


def test_backbones_that_cannot_be_cut_are_refused_naming_those_that_can(saved_models):
    with pytest.raises(UserError) as info:
        load_layer(saved_models("three_blocks"), reuse_blocks=2)
    message = str(info.value)
    assert "can't be cut at a block boundary" in message
    assert "efficientnet_lite0, efficientnet_lite1, efficientnet_lite2" in message
    with pytest.raises(UserError, match="only the built-in backbones"):
        check_cut("mobilenet_v2_100_224", 3)
    assert check_cut("mobilenet_v2_100_224", None) is None  # null: nothing is cut


def test_check_cut_knows_the_built_ins_block_counts_without_tensorflow():
    assert len(block_widths("efficientnet_lite0")) == 18
    assert check_cut("efficientnet_lite0", 18) == 18
    with pytest.raises(UserError, match="19 is more than efficientnet_lite0's 18 blocks"):
        check_cut("efficientnet_lite0", 19)
    assert block_widths("mobilenet_v2_100_224") is None


# --- the one check of the cut and of the freeze depth within it -------------------------------

# (reuse_blocks, unfreeze_blocks, phase2.epochs, block count, the message or None for fine)
TABLE = [
    (None, 2, 2, 18, None),
    (None, 18, 2, 18, None),
    (None, 19, 2, 18, "phase2.unfreeze_blocks: 19 is more than this backbone's 18 blocks"),
    (1, 1, 2, 18, None),
    (3, 3, 2, 18, None),
    (3, 2, 2, 18, None),
    (3, 4, 2, 18, "phase2.unfreeze_blocks: 4 is more than the 3 blocks taken over"),
    (3, 9, 0, 18, None),  # no fine-tuning: the depth is not used
    (18, 18, 2, 18, None),
    (19, 2, 2, 18, "reuse_blocks: 19 is more than efficientnet_lite0's 18 blocks"),
    (0, 0, 0, 18, "reuse_blocks: must be at least 1"),
    (-1, 2, 2, 18, "reuse_blocks: must be at least 1"),
    (5, 0, 2, 18, "needs at least one unfrozen block"),
]


@pytest.mark.parametrize("reuse,unfreeze,epochs,count,message", TABLE)
def test_reuse_blocks_times_unfreeze_blocks(reuse, unfreeze, epochs, count, message):
    def check():
        config = ExperimentConfig()
        config.reuse_blocks = reuse
        config.phase2.unfreeze_blocks = unfreeze
        config.phase2.epochs = epochs
        config.validate()
        validate_against(config, block_count=count, train_images=1000)

    if message is None:
        check()
    else:
        with pytest.raises(UserError, match=message.replace("(", r"\(")):
            check()


def test_cli_and_json_use_the_same_key():
    config = ExperimentConfig().with_overrides(["reuse_blocks=3"])
    assert config.reuse_blocks == 3
    assert ExperimentConfig.from_dict(json.loads(config.to_json())).reuse_blocks == 3
    assert ExperimentConfig().with_overrides(["reuse_blocks=null"]).reuse_blocks is None
    with pytest.raises(UserError, match="reuse_blocks: 'three' is not a valid int"):
        ExperimentConfig().with_overrides(["reuse_blocks=three"])


def test_layer_map_draws_dropped_blocks_as_removed():
    blocks = [Block(f"b{i}", [f"b{i}/w"], params=10 * (i + 1)) for i in range(6)]
    for b in blocks:
        b.trainable_params = b.params
    report = freeze_report(blocks, 1, reuse_blocks=4)
    rows = report["blocks"]
    assert [r["removed"] for r in rows] == [False] * 4 + [True] * 2
    assert [r["trainable"] for r in rows] == [False, False, False, True, False, False]
    assert report["reuse_blocks"] == 4 and report["block_count"] == 6
    assert report["kept_params"] == 10 + 20 + 30 + 40
    assert report["trainable_params"] == 40 and report["frozen_params"] == 60
    assert report["removed_params"] == 50 + 60
    whole = freeze_report(blocks, 1)
    assert whole["reuse_blocks"] == 6 and not any(r["removed"] for r in whole["blocks"])
    with pytest.raises(UserError, match="more than the 4 blocks taken over"):
        freeze_report(blocks, 5, reuse_blocks=4)
    assert check_reuse_blocks(6, None) == 6


# --- a run on a cut backbone -------------------------------------------------------------------


def test_a_tiny_run_trains_both_arms_on_a_cut_backbone(tiny_data, lite0_handle, store):
    from pipelines.runs.worker import EXIT_COMPLETED, run_worker
    from pipelines.training.export import build_inference_model
    from tests.conftest_engine import tiny_config

    run_id = store.create_run(tiny_config(tiny_data, "reuse_blocks=6"))
    assert run_worker(run_id, store) == EXIT_COMPLETED
    run = store.get_run(run_id)
    assert run.status == "completed" and run.config.reuse_blocks == 6
    events = " ".join(e["message"] for e in store.events(run_id))
    assert "fine-tuning started, 2 backbone block(s) trainable" in events
    assert "boundary cache: blocks below block_03 ran once" in events  # blocks 4-5 of 6 train
    width = block_widths("efficientnet_lite0")[5]  # block_04's output: 40 channels
    for arm in ("imagenet", "random"):
        assert run.summary["arms"][arm]["epochs"] == 3
        folder = store.artefact_dir(run_id) / arm
        meta = json.loads((folder / "arm.json").read_text())
        assert meta["reuse_blocks"] == 6 and meta["feature_dim"] == width
    # The exported model is the cut one, with the trained weights.
    import tensorflow as tf

    model = tf.saved_model.load(str(build_inference_model(store.artefact_dir(run_id) / "imagenet")))
    probs = model.signatures["serving_default"](images=tf.zeros((2, 32, 32, 3)))["probabilities"]
    assert probs.shape == (2, 2)
