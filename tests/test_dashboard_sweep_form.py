"""The sweep form as data (dashboard/sweep_form.py): widget values -> SweepSpec, presets,
the time estimate. No Streamlit."""

from __future__ import annotations

import pytest

from dashboard import sweep_form as sf
from pipelines.errors import UserError
from pipelines.training.config import ExperimentConfig

DIMS = sf.dimensions(18, ["efficientnet_lite0"], ["horses_or_humans"])


def values(**modes) -> dict:
    """Default widget values with ``key=(mode, value)`` changes (dots as ``__``)."""
    out = sf.default_values(DIMS, ExperimentConfig())
    for name, (mode, value) in modes.items():
        key = name.replace("__", ".")
        out[sf.mode_key(key)] = mode
        out[(sf.range_key if mode == "range" else sf.list_key)(key)] = value
    return out


def test_defaults_fix_every_key_around_setups_values():
    out = sf.default_values(DIMS, ExperimentConfig())
    assert all(out[sf.mode_key(d.key)] == "fixed" for d in DIMS)
    assert out[sf.list_key("train_per_class")] == ["all"]
    assert out[sf.list_key("arms")] == ["imagenet,random"]
    assert out[sf.range_key("phase1.lr")] == (1e-4, 1e-2)  # 3 log steps either side of 1e-3
    assert out[sf.log_key("phase1.lr")] is True and out[sf.log_key("dropout")] is False
    assert out[sf.range_key("phase2.unfreeze_blocks")] == (2, 5)
    with pytest.raises(UserError, match="the search space is empty"):
        sf.spec_from_values(out, DIMS, ExperimentConfig())


def test_widgets_map_onto_typed_params_and_the_setups_config_is_fixed():
    fixed = ExperimentConfig()
    fixed.phase1.epochs = 1
    spec = sf.spec_from_values(
        values(
            train_per_class=("list", [10, "all"]),
            phase2__unfreeze_blocks=("range", (1, 3)),
            arms=("list", ["imagenet", "imagenet,random"]),
        ),
        DIMS,
        fixed,
    )
    params = {p.key: p for p in spec.params}
    assert params["train_per_class"].choices == (10, None)  # "all" is null
    assert (params["phase2.unfreeze_blocks"].kind, params["phase2.unfreeze_blocks"].low) == (
        "int",
        1,
    )
    assert spec.grid_size() == 2 * 3 * 2 and spec.budget() == 12
    assert spec.base_config().phase1.epochs == 1
    assert sf.axes(spec)["phase2.unfreeze_blocks"] == [1, 2, 3]
    # a learning-rate range is a log-scale float range: TPE, not a grid
    out = values(phase1__lr=("range", (1e-4, 1e-2)))
    out["sweep.sampler"] = "tpe"
    out["sweep.trials"] = 6
    spec = sf.spec_from_values(out, DIMS, fixed)
    assert spec.params[0].kind == "float" and spec.params[0].log and spec.budget() == 6
    assert sf.log_keys(spec) == ["phase1.lr"]


def test_presets_vary_their_keys_and_fix_the_rest():
    out = sf.preset_values("depth_lr", DIMS, ExperimentConfig())
    varied = [d.key for d in DIMS if out[sf.mode_key(d.key)] != "fixed"]
    assert varied == ["phase2.lr", "phase2.unfreeze_blocks"]
    spec = sf.spec_from_values(out, DIMS, ExperimentConfig())
    assert spec.grid_size() == 12 and spec.pruner == "median"
    spec = sf.spec_from_values(
        sf.preset_values("little_data", DIMS, ExperimentConfig()), DIMS, ExperimentConfig()
    )
    assert spec.grid_size() == 12 and spec.pruner == "none"


def test_the_estimate_scales_a_past_runs_cost_by_epochs_arms_images_and_workers():
    past_config = ExperimentConfig()  # 3 + 2 epochs, 2 arms
    past = [sf.PastRun(past_config, 100.0)]  # 100 images -> 0.1 s per epoch, arm and image

    def images(config):
        return 100 if config.train_per_class is None else 2 * config.train_per_class

    spec = sf.spec_from_values(
        values(train_per_class=("list", [25, "all"])), DIMS, ExperimentConfig()
    )
    seconds, runs = sf.estimate_seconds(spec, past, images, workers=1)
    # trials of 50 and 100 images, 5 epochs, 2 arms: 50 s and 100 s, one after another
    assert runs == 1 and seconds == pytest.approx(150.0)
    seconds, _ = sf.estimate_seconds(spec, past, images, workers=2)
    assert seconds == pytest.approx(75.0)  # the mean trial, one round
    assert sf.estimate_seconds(spec, [], images, workers=1) is None
