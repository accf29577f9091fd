"""The sweep's space and spec (pipelines/sweeps/space.py): parsing, grids, files, and every
bad input of the issue refused before anything starts, with one clear message; on the CLI
as ``error: ...`` and exit 2, no traceback, and no sweep created."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from pipelines.__main__ import main
from pipelines.errors import UserError
from pipelines.sweeps import (
    MAX_GRID,
    Param,
    SweepSpec,
    list_sweeps,
    load_space,
    parse_param,
    start_sweep,
)


def spec(*params: str, **changes) -> SweepSpec:
    return SweepSpec(params=tuple(parse_param(p) for p in params), **changes)


def test_the_three_forms_of_a_parameter():
    assert parse_param("phase2.unfreeze_blocks=0:6") == Param("phase2.unfreeze_blocks", "int", 0, 6)
    assert parse_param("phase1.lr=1e-4:1e-2:log") == Param("phase1.lr", "float", 1e-4, 1e-2, True)
    tpc = parse_param("train_per_class=10,50,all")
    assert tpc.kind == "categorical" and tpc.choices == (10, 50, None)
    assert parse_param("arms=imagenet+random,imagenet").choices == ("imagenet,random", "imagenet")
    assert parse_param("augment=true,false").choices == (True, False)
    assert parse_param("backbone=efficientnet_lite0").choices == ("efficientnet_lite0",)


def test_grid_size_order_and_configs():
    s = spec(
        "phase2.unfreeze_blocks=1:3",
        "phase1.lr=1e-3,1e-2",
        fixed={"phase2.epochs": 1},
        sampler="grid",
    )
    assert s.validate().grid_size() == 6 and s.budget() == 6
    points = list(s.grid_points())
    assert points[:3] == [
        {"phase2.unfreeze_blocks": 1, "phase1.lr": 1e-3},
        {"phase2.unfreeze_blocks": 1, "phase1.lr": 1e-2},
        {"phase2.unfreeze_blocks": 2, "phase1.lr": 1e-3},
    ]
    config = s.config_for(points[-1])
    assert (config.phase2.unfreeze_blocks, config.phase1.lr, config.phase2.epochs) == (3, 1e-2, 1)
    assert spec("phase1.lr=1e-4:1e-2:log").grid_size() is None
    assert spec("phase1.lr=1e-4:1e-2:log", sampler="random").budget() == 20


def test_a_spec_round_trips_through_json():
    s = spec("phase1.lr=1e-4:1e-2:log", "train_per_class=10,all", sampler="tpe", trials=7, seed=3)
    again = SweepSpec.from_dict(json.loads(s.to_json()))
    assert again == s and again.validate() == s


def test_fixed_takes_set_style_keys_or_a_whole_config(tiny_data):
    from pipelines.training.config import ExperimentConfig

    whole = ExperimentConfig().to_dict()
    whole["phase1"]["epochs"] = 7
    a = spec("phase1.lr=1e-3,1e-2", fixed=whole).base_config()
    b = spec("phase1.lr=1e-3,1e-2", fixed={"phase1.epochs": "7"}).base_config()
    assert a.phase1.epochs == b.phase1.epochs == 7


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_load_space_from_json_or_toml(tmp_path: Path, suffix: str):
    path = tmp_path / f"space{suffix}"
    if suffix == ".json":
        path.write_text(
            json.dumps(
                {
                    "params": {"phase1.lr": "1e-4:1e-2:log", "train_per_class": [10, 50, "all"]},
                    "fixed": {"phase1.epochs": 2},
                    "sampler": "random",
                    "trials": 5,
                }
            )
        )
    else:
        path.write_text(
            'sampler = "random"\ntrials = 5\n[params]\n"phase1.lr" = "1e-4:1e-2:log"\n'
            '"train_per_class" = [10, 50, "all"]\n[fixed]\n"phase1.epochs" = 2\n'
        )
    s = load_space(path).validate()
    assert s.sampler == "random" and s.trials == 5 and s.base_config().phase1.epochs == 2
    assert s.params == (
        parse_param("phase1.lr=1e-4:1e-2:log"),
        parse_param("train_per_class=10,50,all"),
    )


# --- bad input: one message naming the problem and what to do ----------------------------------

BAD = [
    ("empty space", dict(params=()), "search space is empty"),
    ("unknown key", dict(params=("phase3.lr=1:2",)), "unknown config key 'phase3.lr'"),
    ("no value", dict(params=("phase1.lr=",)), "give a range low:high or a list"),
    ("low > high", dict(params=("phase2.unfreeze_blocks=5:2",)), "low 5 is above high 2"),
    ("log at 0", dict(params=("phase1.lr=0:1e-2:log",)), "log scale needs both ends above 0"),
    ("log below 0", dict(params=("dropout=-0.1:0.5:log",)), "log scale needs both ends above 0"),
    ("range of a word", dict(params=("backbone=1:3",)), "a range low:high needs a number key"),
    ("bad range", dict(params=("phase1.lr=1:2:lin",)), "low:high or low:high:log"),
    ("fraction on int", dict(params=("batch_size=1.5:8",)), "takes whole numbers"),
    (
        "bad list value",
        dict(params=("batch_size=8,many",)),
        "batch_size: 'many' is not a valid int",
    ),
    ("twice", dict(params=("phase1.lr=1e-3,1e-2", "phase1.lr=1e-4,1e-3")), "given twice"),
    (
        "grid too big",
        dict(params=("seed=0:99", "batch_size=1:11"), sampler="grid"),
        f"the grid has 1100 points, more than {MAX_GRID}",
    ),
    (
        "float range on a grid",
        dict(params=("phase1.lr=1e-4:1e-2:log",), sampler="grid"),
        "has no grid",
    ),
    ("budget 0", dict(params=("phase1.lr=1e-3,1e-2",), trials=0), "budget must be at least 1"),
    (
        "budget above grid",
        dict(params=("phase1.lr=1e-3,1e-2",), sampler="grid", trials=3),
        "at most 2",
    ),
    ("unknown sampler", dict(params=("phase1.lr=1e-3,1e-2",), sampler="bayes"), "sampler: 'bayes'"),
    (
        "unknown pruner",
        dict(params=("phase1.lr=1e-3,1e-2",), pruner="hyperband"),
        "pruner: 'hyperband'",
    ),
    (
        "unknown objective",
        dict(params=("phase1.lr=1e-3,1e-2",), objective="loss"),
        "objective: 'loss'",
    ),
    (
        "gap with one arm",
        dict(params=("phase1.lr=1e-3,1e-2",), objective="gap", fixed={"arms": "imagenet"}),
        "objective gap needs both arms",
    ),
    (
        "gap with arms varied",
        dict(params=("arms=imagenet+random,random",), objective="gap"),
        "objective gap needs both arms",
    ),
    (
        "a trial the config refuses",
        dict(params=("dropout=0.2,1.5",), sampler="grid"),
        "the trial dropout=1.5 is refused",
    ),
    (
        "bad fixed key",
        dict(params=("phase1.lr=1e-3,1e-2",), fixed={"phase9": 1}),
        "unknown config key",
    ),
    ("negative seed", dict(params=("phase1.lr=1e-3,1e-2",), seed=-1), "seed: must be"),
]


def test_depth_zero_of_a_freeze_depth_axis_is_feature_extraction_only():
    """The issue's own example, ``phase2.unfreeze_blocks=0:6``: depth 0 skips phase 2."""
    spec = SweepSpec(params=(parse_param("phase2.unfreeze_blocks=0:2"),), sampler="grid")
    spec = spec.validate()
    configs = [spec.config_for(point) for point in spec.grid_points()]
    assert [c.phase2.unfreeze_blocks for c in configs] == [0, 1, 2]
    assert configs[0].phase2.epochs == 0
    assert configs[1].phase2.epochs == configs[2].phase2.epochs > 0


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_spec_is_refused_with_one_message(case):
    _, fields, expected = case
    fields = dict(fields)
    params = fields.pop("params")
    with pytest.raises(UserError, match=None) as info:
        spec(*params, **fields).validate()
    assert expected in str(info.value)


def _cli_args(fields: dict) -> list[str]:
    argv = ["sweep", "--workers", "0"]
    for p in fields.get("params", ()):
        argv += ["--param", p]
    for key in ("sampler", "pruner", "objective", "trials", "seed"):
        if key in fields:
            argv += [f"--{key}", str(fields[key])]
    for key, value in fields.get("fixed", {}).items():
        argv += ["--set", f"{key}={value}"]
    return argv


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_the_cli_refuses_bad_input_with_exit_2_and_creates_nothing(case, runs_dir, capsys):
    _, fields, expected = case
    assert main(_cli_args(fields)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and "Traceback" not in err
    assert list_sweeps() == []


def test_a_missing_or_broken_space_file_is_refused(tmp_path: Path, runs_dir, capsys):
    assert main(["sweep", "--space", str(tmp_path / "nope.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("params = [")
    assert main(["sweep", "--space", str(tmp_path / "bad.toml")]) == 2
    assert "is not valid TOML" in capsys.readouterr().err


def test_an_unreachable_storage_fails_within_10_s_without_its_password(runs_dir, tiny_data):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://sweeper:s3cret@127.0.0.1:{port}/sweeps"
    started = time.monotonic()
    with pytest.raises(UserError) as info:
        start_sweep(spec("phase1.lr=1e-3,1e-2", fixed={"dataset": tiny_data}), storage=url)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert f"postgresql://sweeper:***@127.0.0.1:{port}/sweeps" in message
    assert "s3cret" not in message


def test_an_unknown_sweep_is_named(runs_dir):
    from pipelines.sweeps import sweep_trials

    with pytest.raises(UserError, match="no sweep 'sweep-nope'"):
        sweep_trials("sweep-nope")


def test_validate_types_a_hand_made_space_for_its_keys():
    raw = SweepSpec(
        params=(
            Param("train_per_class", "categorical", choices=("10", "all")),
            Param("phase2.unfreeze_blocks", "float", 1.0, 3.0),
        ),
        sampler="grid",
    )
    assert raw.grid_size() == 6
    typed = raw.validate()
    assert typed.params == (
        Param("train_per_class", "categorical", choices=(10, None)),
        Param("phase2.unfreeze_blocks", "int", 1, 3),
    )
    assert (
        typed.config_for(
            {"train_per_class": None, "phase2.unfreeze_blocks": 3}
        ).phase2.unfreeze_blocks
        == 3
    )
