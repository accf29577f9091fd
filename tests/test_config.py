"""The experiment config: defaults, --set parsing, JSON round trip, refusals naming the field."""

import json

import pytest

from pipelines.errors import UserError
from pipelines.training.config import (
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    ExperimentConfig,
    keys,
    validate_against,
)


def test_defaults_are_the_seminar_demo_and_valid():
    c = ExperimentConfig().validate()
    assert c.dataset == "horses_or_humans" and c.backbone == "efficientnet_lite0"
    assert c.arms == ["imagenet", "random"] and c.random_policy == "same"
    assert c.phase1.epochs > 0 and c.phase2.epochs > 0
    assert c.phase2.lr < c.phase1.lr  # fine-tuning at the lower rate


def test_set_uses_dotted_names_and_coerces_types():
    c = ExperimentConfig().with_overrides(
        [
            "phase1.epochs=2",
            "phase2.epochs=1",
            "phase2.unfreeze_blocks=2",
            "phase2.lr=3e-5",
            "train_per_class=10",
            "image_size=null",
            "arms=random,imagenet",
            "augment=true",
            "dropout=0.5",
        ]
    )
    assert (c.phase1.epochs, c.phase2.epochs, c.phase2.unfreeze_blocks) == (2, 1, 2)
    assert c.phase2.lr == 3e-5 and c.train_per_class == 10 and c.image_size is None
    assert c.arms == ["imagenet", "random"] and c.augment is True and c.dropout == 0.5


def test_json_round_trip(tmp_path):
    c = ExperimentConfig().with_overrides(["seed=7", "optimizer=sgd", "arms=imagenet"])
    assert ExperimentConfig.from_dict(json.loads(c.to_json())) == c
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"phase1": {"epochs": 4}, "batch_size": 16}))
    loaded = ExperimentConfig.from_json_file(path)
    assert loaded.phase1.epochs == 4 and loaded.batch_size == 16 and loaded.phase1.lr == 1e-3


def test_keys_cover_every_field():
    assert keys() == [
        "dataset",
        "train_per_class",
        "backbone",
        "image_size",
        "reuse_blocks",
        "arms",
        "random_policy",
        "phase1.epochs",
        "phase1.lr",
        "phase2.epochs",
        "phase2.lr",
        "phase2.unfreeze_blocks",
        "optimizer",
        "batch_size",
        "dropout",
        "augment",
        "seed",
        "tasks",
        "hydra",
    ]


@pytest.mark.parametrize(
    "assignments,field",
    [
        (["phase1.lr=0"], "phase1.lr"),
        (["phase1.lr=-1e-3"], "phase1.lr"),
        (["phase2.lr=nan"], "phase2.lr"),
        (["phase1.lr=1e9"], "phase1.lr"),
        (["phase1.lr=fast"], "phase1.lr"),
        (["phase1.epochs=0", "phase2.epochs=0"], "phase1.epochs and phase2.epochs"),
        (["phase1.epochs=-1"], "phase1.epochs"),
        (["phase1.epochs=1.5"], "phase1.epochs"),
        (["batch_size=0"], "batch_size"),
        (["phase2.unfreeze_blocks=-2"], "phase2.unfreeze_blocks"),
        (["phase2.epochs=2", "phase2.unfreeze_blocks=0"], "phase2.unfreeze_blocks"),
        (["image_size=8"], "image_size"),
        (["reuse_blocks=0"], "reuse_blocks"),
        (["reuse_blocks=2", "phase2.unfreeze_blocks=3"], "phase2.unfreeze_blocks"),
        (["arms="], "arms"),
        (["arms=imagenet,cats"], "arms"),
        (["random_policy=chaos"], "random_policy"),
        (["optimizer=lion"], "optimizer"),
        (["dropout=1"], "dropout"),
        (["augment=maybe"], "augment"),
        (["train_per_class=0"], "train_per_class"),
        (["learning_rate=0.1"], "learning_rate"),
        (["phase3.epochs=1"], "phase3.epochs"),
        (["phase1=3"], "phase1"),
        (["seed"], "key=value"),
    ],
)
def test_refusals_name_the_field(assignments, field):
    with pytest.raises(UserError) as info:
        ExperimentConfig().with_overrides(assignments)
    assert field in str(info.value)


def test_unknown_json_key_and_non_object_are_refused(tmp_path):
    with pytest.raises(UserError, match="unknown config key 'lr'"):
        ExperimentConfig.from_dict({"lr": 0.1})
    with pytest.raises(UserError, match="JSON object"):
        ExperimentConfig.from_dict([1, 2])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        ExperimentConfig.from_json_file(bad)
    with pytest.raises(UserError, match="does not exist"):
        ExperimentConfig.from_json_file(tmp_path / "missing.json")


def test_checks_that_need_the_backbone_and_data():
    c = ExperimentConfig().with_overrides(["phase2.unfreeze_blocks=19", "batch_size=64"])
    with pytest.raises(UserError, match="phase2.unfreeze_blocks: 19 is more than .* 18 blocks"):
        validate_against(c, block_count=18, train_images=1000)
    c.phase2.unfreeze_blocks = 2
    with pytest.raises(UserError, match="batch_size: 64 is larger than the training set"):
        validate_against(c, block_count=18, train_images=24)
    validate_against(c, block_count=18, train_images=64)


def test_image_size_range_is_checked_in_the_config_only():
    for ok in (MIN_IMAGE_SIZE, MAX_IMAGE_SIZE):
        assert ExperimentConfig().with_overrides([f"image_size={ok}"]).image_size == ok
    for bad in (MIN_IMAGE_SIZE - 1, MAX_IMAGE_SIZE + 1):
        with pytest.raises(UserError, match=f"between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE}"):
            ExperimentConfig().with_overrides([f"image_size={bad}"])
