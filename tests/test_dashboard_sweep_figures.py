"""The Sweep page's figures: pure functions of trial dicts (synthetic here, shaped like
``pipelines.sweeps.sweep_trials``)."""

from __future__ import annotations

import plotly.graph_objects as go

from dashboard import sweep_figures as sf

BLOCKS = "phase2.unfreeze_blocks"
LR = "phase1.lr"


def trial(number, state="COMPLETE", value=None, curves=None, **params):
    params = {k.replace("__", "."): v for k, v in params.items()}
    return {
        "number": number,
        "state": state,
        "params": params,
        "value": value,
        "run_id": f"run{number}",
        "started": 1000.0 + number,
        "finished": 1010.0 + number if state != "RUNNING" else None,
        "curves": curves if curves is not None else {"imagenet": [], "random": []},
    }


def grid_trials():
    """A 2 x 3 grid of blocks x lr: 3 complete, 1 running, 1 pruned, 1 failed."""
    return [
        trial(0, value=0.8, phase2__unfreeze_blocks=0, phase1__lr=1e-4),
        trial(1, value=0.9, phase2__unfreeze_blocks=2, phase1__lr=1e-4),
        trial(2, value=0.7, phase2__unfreeze_blocks=0, phase1__lr=1e-3),
        trial(
            3,
            "RUNNING",
            curves={"imagenet": [0.6, 0.65], "random": [0.5]},
            phase2__unfreeze_blocks=2,
            phase1__lr=1e-3,
        ),
        trial(
            4,
            "PRUNED",
            curves={"imagenet": [0.55], "random": [0.5]},
            phase2__unfreeze_blocks=0,
            phase1__lr=1e-2,
        ),
        trial(5, "FAIL", phase2__unfreeze_blocks=2, phase1__lr=1e-2),
    ]


def cell(fig: go.Figure, trace: int, x: str, y: str):
    data = fig.data[trace]
    return data.z[list(data.y).index(y)][list(data.x).index(x)], data.text[list(data.y).index(y)][
        list(data.x).index(x)
    ]


def test_heat_map_colours_complete_cells_and_names_the_other_states():
    fig = sf.heat_map(grid_trials(), LR, BLOCKS)
    assert list(fig.data[0].x) == ["0.0001", "0.001", "0.01"]
    assert list(fig.data[0].y) == ["0", "2"]
    assert cell(fig, 0, "0.0001", "2") == (0.9, "90.0%")
    assert cell(fig, 0, "0.001", "0")[0] == 0.7
    # running, pruned, failed: no objective colour; a state colour and the state's word
    for x, y, word in (("0.001", "2", "running"), ("0.01", "0", "pruned"), ("0.01", "2", "failed")):
        assert cell(fig, 0, x, y) == (None, "")
        state, text = cell(fig, 1, x, y)
        assert state is not None and text.startswith(word), (x, y, text)
    assert cell(fig, 1, "0.001", "2")[1] == "running · 65.0%"  # its value so far
    assert cell(fig, 1, "0.0001", "2") == (None, "")  # complete: no state layer


def test_a_pruned_trials_value_is_its_value_so_far_not_a_result():
    pruned = trial(0, "PRUNED", value=0.95, phase2__unfreeze_blocks=0, phase1__lr=1e-4)
    fig = sf.heat_map([pruned, grid_trials()[1]], LR, BLOCKS)
    assert cell(fig, 0, "0.0001", "0") == (None, "")
    state, text = cell(fig, 1, "0.0001", "0")
    assert state is not None and text == "pruned · 95.0%"
    assert [d.name for d in sf.history([pruned]).data] == ["pruned"]  # no best-so-far line


def test_heat_map_shows_a_grids_points_before_their_trials_exist():
    trials = grid_trials()[:1]
    fig = sf.heat_map(trials, LR, BLOCKS, axes={LR: [1e-4, 1e-3], BLOCKS: [0, 2, 4]})
    assert list(fig.data[0].y) == ["0", "2", "4"] and list(fig.data[0].x) == ["0.0001", "0.001"]
    values = [v for row in fig.data[0].z for v in row if v is not None]
    assert values == [0.8]


def test_heat_map_keeps_the_best_of_repeated_cells_and_all_last():
    trials = [
        trial(0, value=0.6, train_per_class=None, arms="imagenet"),
        trial(1, value=0.7, train_per_class=10, arms="imagenet"),
        trial(2, value=0.75, train_per_class=10, arms="imagenet"),
        trial(3, value=0.5, train_per_class=10, arms="random"),
    ]
    fig = sf.heat_map(trials, "train_per_class", "arms")
    assert list(fig.data[0].x) == ["10", "all"]
    assert cell(fig, 0, "10", "imagenet") == (0.75, "75.0% (×2)")


def test_heat_map_of_many_sampled_floats_draws_points_on_log_axes():
    trials = [
        trial(i, value=0.5 + i / 100, phase1__lr=10 ** (-5 + i / 10), phase2__lr=10 ** (-6 + i / 7))
        for i in range(20)
    ] + [trial(20, "PRUNED", phase1__lr=1e-3, phase2__lr=1e-5)]
    fig = sf.heat_map(trials, LR, "phase2.lr", log_keys=[LR, "phase2.lr"])
    assert fig.data[0].type == "scatter" and len(fig.data[0].x) == 20
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert [d.name for d in fig.data[1:]] == ["pruned"]


def test_gap_values_read_as_percentage_points():
    assert sf.format_value(0.125, "gap") == "+12.5 pp"
    assert sf.format_value(-0.03, "gap") == "-3.0 pp"
    assert sf.format_value(0.875) == "87.5%"
    assert sf.format_value(None) == "–"
    assert sf.partial_value({"curves": {"imagenet": [0.6, 0.8], "random": [0.5, 0.55]}}, "gap") == (
        0.8 - 0.55
    )
    assert sf.partial_value({"curves": {"imagenet": [0.6, 0.8, 0.7]}}, "final") == 0.7
    assert sf.partial_value({"curves": {"random": [0.6]}}) == 0.6  # a random-only trial
    assert sf.partial_value({"curves": {}}) is None
    assert sf.partial_value({"state": "PRUNED", "value": 0.4, "curves": {"imagenet": [0.9]}}) == 0.4


def test_parallel_coordinates_draw_complete_trials_and_count_the_rest():
    trials = [
        trial(0, value=0.8, phase1__lr=1e-4, phase2__unfreeze_blocks=0, optimizer="adam"),
        trial(1, value=0.9, phase1__lr=1e-2, phase2__unfreeze_blocks=4, optimizer="sgd"),
        trial(2, value=0.6, phase1__lr=1e-3, phase2__unfreeze_blocks=2, optimizer="adam"),
        trial(3, "PRUNED", phase1__lr=1e-3, phase2__unfreeze_blocks=2, optimizer="sgd"),
        trial(4, "FAIL", phase1__lr=1e-3, phase2__unfreeze_blocks=2, optimizer="sgd"),
    ]
    fig = sf.parallel_coordinates(trials, [LR, BLOCKS, "optimizer"], log_keys=[LR])
    dims = fig.data[0].dimensions
    assert [d.label for d in dims][:3] == [LR, BLOCKS, "optimizer"]
    assert [round(v, 6) for v in dims[0].values] == [-4, -2, -3]  # log10
    assert list(dims[0].ticktext) == ["0.0001", "0.001", "0.01"]
    assert list(dims[2].values) == [0, 1, 0] and list(dims[2].ticktext) == ["adam", "sgd"]
    assert list(dims[3].values) == [0.8, 0.9, 0.6]
    assert "2 trial(s) without a value" in fig.layout.annotations[0].text


def test_history_marks_states_and_draws_the_best_so_far():
    trials = [
        trial(0, value=0.7),
        trial(1, value=0.6),
        trial(2, "PRUNED", curves={"imagenet": [0.5, 0.55], "random": []}),
        trial(3, value=0.9),
        trial(4, "FAIL"),
        trial(5, "RUNNING", curves={"imagenet": [0.4], "random": []}),
    ]
    fig = sf.history(trials)
    best = fig.data[0]
    assert best.name == "best so far" and best.line.shape == "hv"
    assert list(best.x) == [0, 1, 3, 5] and list(best.y) == [0.7, 0.7, 0.9, 0.9]
    by_name = {d.name: d for d in fig.data[1:]}
    assert set(by_name) == {"complete", "pruned", "failed", "running"}
    assert list(by_name["complete"].y) == [0.7, 0.6, 0.9]
    assert list(by_name["pruned"].y) == [0.55]  # its best so far
    assert list(by_name["running"].y) == [0.4]
    assert list(by_name["failed"].y) == [0.4]  # no value: on the floor of what is drawn
    assert by_name["failed"].marker.symbol == "x"


def test_a_trial_a_user_stopped_reads_stopped_not_failed():
    stopped = {
        **trial(1, "FAIL", phase2__unfreeze_blocks=2, phase1__lr=1e-4),
        "stopped_by_user": True,
    }
    failed = trial(2, "FAIL", phase2__unfreeze_blocks=0, phase1__lr=1e-4)
    assert sf.state_of(stopped) == "STOPPED" and sf.state_of(failed) == "FAIL"
    by_name = {d.name: d for d in sf.history([trial(0, value=0.7), stopped, failed]).data[1:]}
    assert set(by_name) == {"complete", "stopped", "failed"}
    assert by_name["stopped"].marker.symbol != by_name["failed"].marker.symbol
    fig = sf.heat_map([stopped, failed], LR, BLOCKS)
    assert cell(fig, 1, "0.0001", "2")[1] == "stopped"
    assert cell(fig, 1, "0.0001", "0")[1] == "failed"


def test_one_param_and_small_multiples():
    trials = [
        trial(0, value=0.7, curves={"imagenet": [0.6, 0.7], "random": [0.5, 0.5]}, seed=0),
        trial(1, value=0.8, curves={"imagenet": [0.7, 0.8], "random": [0.5, 0.6]}, seed=1),
        trial(2, "PRUNED", curves={"imagenet": [0.4], "random": [0.5]}, seed=2),
    ]
    fig = sf.one_param(trials, "seed")
    assert {d.name for d in fig.data} == {"complete", "pruned"}
    small = sf.trial_curves(trials, ["seed"], columns=2)
    assert len(small.data) == 6  # 3 trials x 2 arms
    titles = [a.text for a in small.layout.annotations]
    assert titles[2].startswith("#2 pruned") and "seed=2" in titles[2]
    assert small.data[4].line.dash == "dot"  # the pruned trial's curves are dotted


def test_nothing_yet_is_a_note_not_an_error():
    for fig in (
        sf.history([]),
        sf.parallel_coordinates([], ["a", "b", "c"]),
        sf.trial_curves([], []),
        sf.one_param([], "seed"),
    ):
        assert fig.layout.annotations[0].text == "No trials yet"
    assert not sf.has_value({"value": float("nan")})


def test_varying_keys_and_labels():
    trials = grid_trials()
    assert sf.varying_keys(trials) == [BLOCKS, LR]
    assert sf.varying_keys([trial(0, seed=1), trial(1, seed=1)]) == []
    fig = sf.history(grid_trials(), labels={"best_so_far": "bisher bestes"})
    assert fig.data[0].name == "bisher bestes"
