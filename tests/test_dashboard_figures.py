"""The dashboard's plotly figure builders: pure functions of metric frames and reports."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard import figures

ARMS = ("imagenet", "random")


def arm_curves(*args, **kwargs) -> go.Figure:
    """The live view's side-by-side curves as the figure the browser draws."""
    return go.Figure(figures.arm_curves_spec(*args, **kwargs))


def overlay_curves(*args, **kwargs) -> go.Figure:
    return go.Figure(figures.overlay_curves_spec(*args, **kwargs))


def epoch_rows(epochs: int = 3, arms=ARMS) -> pd.DataFrame:
    rows = []
    for arm in arms:
        for e in range(epochs):
            rows.append(
                {
                    "arm": arm,
                    "phase": "feature_extraction" if e < 2 else "fine_tuning",
                    "epoch": e,
                    "loss": 1.0 / (e + 1),
                    "accuracy": 0.5 + 0.1 * e,
                    "val_loss": 1.2 / (e + 1),
                    "val_accuracy": 0.55 + 0.1 * e if arm == "imagenet" else 0.5,
                    "epoch_s": 1.0,
                    "images_per_s": 10.0,
                }
            )
    return pd.DataFrame(rows)


def batch_rows(epochs: int = 2, steps: int = 4) -> pd.DataFrame:
    rows = [
        {"arm": arm, "epoch": e, "step": s, "loss": 1.0, "accuracy": 0.5}
        for arm in ARMS
        for e in range(epochs)
        for s in range(steps)
    ]
    return pd.DataFrame(rows)


def test_x_positions_are_epochs_completed():
    frame = pd.DataFrame({"epoch": [0, 1, 2], "step": [0, 1, 3]})
    assert list(figures.epoch_x(frame)) == [1.0, 2.0, 3.0]
    assert list(figures.batch_x(frame, 4)) == [0.25, 1.5, 3.0]


def test_phase2_starts_after_phase1_epochs_only_when_both_phases_run():
    assert figures.phase2_start({"phase1": {"epochs": 3}, "phase2": {"epochs": 2}}) == 3.0
    assert figures.phase2_start({"phase1": {"epochs": 3}, "phase2": {"epochs": 0}}) is None
    assert figures.phase2_start({"phase1": {"epochs": 0}, "phase2": {"epochs": 2}}) is None


def test_arm_curves_puts_each_arm_in_its_own_column_with_shared_y():
    fig = arm_curves(epoch_rows(), ARMS, phase2_at=2.0, epochs_total=5, revision="r1")
    # 2 arms x 2 metrics x (train, validation)
    assert len(fig.data) == 8
    first = fig.data[0]
    assert first.name == "train" and list(first.x) == [1.0, 2.0, 3.0]
    assert list(first.y) == pytest.approx([1.0, 0.5, 1 / 3])
    # column 2 is the random arm and shares the y axis of column 1 in the same row
    assert [a.text for a in fig.layout.annotations[:2]] == ["ImageNet weights", "Random weights"]
    assert fig.layout.yaxis3.range == (0, 1.02)  # accuracy row
    assert fig.layout.xaxis.range == (0, 5.15)
    assert fig.layout.yaxis.autorange is True  # else plotly.js shows the loss on [0, 4]
    assert fig.layout.uirevision == "r1"


def test_arm_curves_shares_y_axes_along_each_row():
    fig = arm_curves(epoch_rows(), ARMS)
    assert fig.layout.yaxis2.matches == "y"
    assert fig.layout.yaxis4.matches == "y3"


def test_arm_curves_marks_where_phase2_starts_in_every_subplot():
    fig = arm_curves(epoch_rows(), ARMS, phase2_at=2.0)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 4 and all(s.x0 == s.x1 == 2.0 for s in lines)
    assert any(a.text.strip().startswith("fine-tuning starts") for a in fig.layout.annotations)
    assert not arm_curves(epoch_rows(), ARMS).layout.shapes


def test_arm_curves_adds_batch_traces_and_exact_hover():
    fig = arm_curves(epoch_rows(2), ARMS, batches=batch_rows(), steps_per_epoch=4)
    assert len(fig.data) == 12
    batch = [t for t in fig.data if t.name == "train (per batch)"][0]
    assert list(batch.x)[:4] == [0.25, 0.5, 0.75, 1.0]
    assert "%{y:.4f}" in fig.data[0].hovertemplate
    assert "%{y:.2%}" in fig.data[3].hovertemplate  # train accuracy of the first arm
    assert fig.layout.hovermode == "x unified"


def test_arm_curves_of_an_empty_run_has_empty_traces():
    empty = pd.DataFrame(columns=["arm", "epoch", "loss", "accuracy", "val_loss", "val_accuracy"])
    fig = arm_curves(empty, ARMS, epochs_total=4)
    assert len(fig.data) == 8 and all(len(t.x) == 0 for t in fig.data)
    fig = arm_curves(None, ["imagenet"])
    assert len(fig.data) == 4


def test_arm_curves_uses_given_labels():
    fig = arm_curves(epoch_rows(), ARMS, labels={"train": "Training", "imagenet": "IN"})
    assert fig.data[0].name == "Training"
    assert fig.layout.annotations[0].text == "IN"


def test_overlay_draws_both_arms_on_the_same_axes():
    fig = overlay_curves(epoch_rows(), ARMS, phase2_at=2.0)
    # 2 metrics x 2 arms x (validation, train)
    assert len(fig.data) == 8
    loss = [t for t in fig.data if t.xaxis == "x"]
    assert {t.line.color for t in loss} == set(figures.ARM_COLORS.values())
    assert [s.x0 for s in fig.layout.shapes] == [2.0, 2.0]


def test_layer_map_colours_frozen_and_trainable_blocks():
    from pipelines.backbones.blocks import Block, freeze_report

    blocks = [Block(f"block_{i}", [f"v{i}"], 10 * (i + 1), 10 * (i + 1)) for i in range(5)]
    fig = figures.layer_map(freeze_report(blocks, 2))
    frozen, trainable = fig.data
    assert list(frozen.y) == ["block_0", "block_1", "block_2"]
    assert list(trainable.y) == ["block_3", "block_4"]
    assert frozen.marker.color == figures.FROZEN_COLOR
    assert trainable.marker.color == figures.TRAINABLE_COLOR
    assert list(fig.layout.yaxis.categoryarray) == [f"block_{i}" for i in range(5)]
    assert trainable.text[-1] == "block_4 · 50"
    assert list(trainable.customdata[0]) == [40, 40]


def test_layer_map_with_nothing_trainable():
    from pipelines.backbones.blocks import Block, freeze_report

    blocks = [Block("a", ["x"], 1_500_000, 1_500_000), Block("b", ["y"], 2_000, 2_000)]
    fig = figures.layer_map(freeze_report(blocks, 0))
    assert len(fig.data[1].y) == 0
    assert list(fig.data[0].text) == ["a · 1.50 M", "b · 2.0 k"]


def test_confusion_matrix_heatmap():
    fig = figures.confusion_matrix([[5, 1], [2, 4]], ["cats", "dogs"], title="ImageNet")
    heat = fig.data[0]
    assert [list(r) for r in heat.z] == [[5, 1], [2, 4]]
    assert list(heat.x) == list(heat.y) == ["cats", "dogs"]
    assert fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.title.text == "ImageNet"


def test_runs_overlay_one_line_per_run_and_arm():
    curves = {"run-a": epoch_rows(3), "run-b": epoch_rows(2, arms=("imagenet",))}
    fig = figures.runs_overlay(curves, metric="val_accuracy")
    assert [t.name for t in fig.data] == [
        "run-a · ImageNet weights",
        "run-a · Random weights",
        "run-b · ImageNet weights",
    ]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    assert fig.data[1].line.dash == "dash"
    assert list(fig.data[2].y) == pytest.approx([0.55, 0.65])
    assert fig.layout.yaxis.tickformat == ".0%"
    assert not figures.runs_overlay({}, metric="loss").data


def test_probabilities_bar_sorted_most_likely_on_top():
    fig = figures.probabilities_bar(["cats", "dogs", "birds"], [0.2, 0.7, 0.1])
    assert list(fig.data[0].y) == ["birds", "cats", "dogs"]


@pytest.mark.parametrize(("n", "text"), [(992, "992"), (37_100, "37.1 k"), (1_017_600, "1.02 M")])
def test_count(n, text):
    assert figures.count(n) == text


def test_curves_share_a_cached_layout_but_never_data():
    """The layout is built once per shape and cached; data and later edits stay per figure."""
    small = arm_curves(epoch_rows(2), ARMS, phase2_at=2.0, epochs_total=5)
    big = arm_curves(epoch_rows(4), ARMS, phase2_at=2.0, epochs_total=5)
    assert list(small.data[0].x) == [1.0, 2.0] and list(big.data[0].x) == [1.0, 2.0, 3.0, 4.0]
    small.update_layout(title_text="changed")
    again = arm_curves(epoch_rows(2), ARMS, phase2_at=2.0, epochs_total=5)
    assert again.layout.title.text is None
    assert (
        again.to_dict() == arm_curves(epoch_rows(2), ARMS, phase2_at=2.0, epochs_total=5).to_dict()
    )


def test_overlay_layout_follows_the_labels():
    de = overlay_curves(epoch_rows(), ARMS, labels={"imagenet": "ImageNet-Gewichte"})
    en = overlay_curves(epoch_rows(), ARMS)
    assert de.data[0].name.startswith("ImageNet-Gewichte") and en.data[0].name.startswith(
        "ImageNet"
    )
    assert de.data[0].name != en.data[0].name


def with_balanced(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(val_balanced_accuracy=[0.5 + 0.05 * i for i in range(len(frame))])


def test_chance_level_is_a_dotted_line_on_the_accuracy_axes_only():
    fig = arm_curves(epoch_rows(), ARMS, chance=0.626)
    lines = [s for s in fig.layout.shapes if s.y0 == s.y1]
    assert [s.y0 for s in lines] == [0.626, 0.626]  # one per arm's accuracy subplot
    assert {s.line.dash for s in lines} == {"dot"}
    assert {s.yref for s in lines} == {"y3", "y4"}  # row 2: accuracy
    assert any("62.6%" in (a.text or "") for a in fig.layout.annotations)
    overlay = overlay_curves(epoch_rows(), ARMS, chance=0.626)
    (line,) = [s for s in overlay.layout.shapes if s.y0 == s.y1]
    assert line.y0 == 0.626 and line.yref == "y2"  # the accuracy axes
    assert not [s for s in arm_curves(epoch_rows(), ARMS).layout.shapes if s.y0 == s.y1]


def test_balanced_accuracy_joins_the_accuracy_curves_when_asked():
    rows = with_balanced(epoch_rows())
    plain = arm_curves(rows, ARMS)
    fig = arm_curves(rows, ARMS, balanced=True)
    assert len(fig.data) == len(plain.data) + 2  # one per arm, accuracy row only
    extra = [t for t in fig.data if t.name == "validation, balanced"]
    assert len(extra) == 2 and {t.yaxis for t in extra} == {"y3", "y4"}
    imagenet = rows[rows["arm"] == "imagenet"]
    assert list(extra[0].y) == pytest.approx(imagenet["val_balanced_accuracy"].tolist())
    overlay = overlay_curves(rows, ARMS, balanced=True)
    balanced = [t for t in overlay.data if t.name.endswith("validation, balanced")]
    assert len(balanced) == 2 and {t.line.dash for t in balanced} == {"dashdot"}
    assert all(t.showlegend for t in balanced)
