"""The results' insight tabs under AppTest with a real (tiny) finished run, and their pure
figure builders (``dashboard/insight_figures.py``)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from dashboard import insight_figures
from pipelines.runs.worker import EXIT_COMPLETED, run_worker
from tests.conftest_engine import tiny_config

ATTENTION_TAB = "Where each arm looks"
FEATURES_TAB = "Feature space"


def ok(at):
    assert not at.exception, [e.value for e in at.exception]
    return at


def specs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def array(z) -> np.ndarray:
    """An array in a figure's JSON: a (nested) list, or plotly's typed array."""
    if isinstance(z, dict):
        flat = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"])
        return flat.reshape([int(n) for n in str(z.get("shape", len(flat))).split(",")])
    return np.asarray(z)


def shape(z) -> tuple[int, ...]:
    return array(z).shape


def titles(spec: dict) -> list[str]:
    return [a.get("text", "") for a in spec["layout"].get("annotations", [])]


@pytest.fixture
def trained_run(dashboard_env):
    """Both arms trained on the dashboard's tiny horses-or-humans (64 px: a 2 x 2 grid at
    the last block), with fine-tuning, so the backbones' features change."""
    store = dashboard_env.store
    data = str(dashboard_env.datasets / "horses-or-humans")
    run_id = store.create_run(tiny_config(data, "image_size=64"))
    assert run_worker(run_id, store) == EXIT_COMPLETED
    return run_id


@pytest.mark.slow
def test_heat_maps_and_feature_space_of_a_finished_run(app, trained_run):
    at = ok(app(run=trained_run).run())
    curves = len(specs(at)) - 2  # the confusion matrices' tab is open first
    at.session_state["results.tab"] = ATTENTION_TAB
    ok(at.run())
    maps = specs(at)[curves:]
    picked = at.multiselect(key=f"insight.pick.{trained_run}")
    assert picked.value and len(maps) == len(picked.value)  # one figure per chosen image
    for spec in maps:
        heading = titles(spec)
        assert any(t.startswith("ImageNet weights · Grad-CAM on head (2×2)") for t in heading)
        assert any(t.startswith("Random weights · Grad-CAM on head (2×2)") for t in heading)
        heat = [d for d in spec["data"] if d["type"] == "heatmap"]
        assert len(heat) == 2 and shape(heat[0]["z"]) == (64, 64)

    picked.set_value([0]).run()
    ok(at)
    assert len(specs(at)) == curves + 1

    at.session_state["results.tab"] = FEATURES_TAB
    ok(at.run())
    (space,) = specs(at)[curves:]
    heading = titles(space)
    assert len(heading) == 4
    assert heading[0].startswith("ImageNet weights · before training<br>5-NN accuracy")
    assert heading[3].startswith("Random weights · after training<br>5-NN accuracy")
    assert not any("backbone unchanged" in t for t in heading)  # both fine-tuned
    points = [d for d in space["data"] if d["type"] == "scatter"]
    assert sum(len(array(d["x"])) for d in points) == 4 * 8  # 4 panels x 8 validation images
    assert any("k-nearest-neighbour accuracy with k = 5" in c.value for c in at.caption)


def test_a_synthetic_run_without_models_says_so(app, dashboard_env):
    from tests.conftest_dashboard import write_run

    images = dashboard_env.datasets / "horses-or-humans" / "validation"
    run_id = write_run(dashboard_env.store, status="completed", epochs_done=5, images=images)
    at = ok(app(run=run_id).run())
    at.session_state["results.tab"] = ATTENTION_TAB
    ok(at.run())
    assert any("has no trained imagenet model" in e.value for e in at.error)
    at.session_state["results.tab"] = FEATURES_TAB
    ok(at.run())
    assert any("has no trained imagenet model" in e.value for e in at.error)


# --- figure builders ----------------------------------------------------------------------------


def panel(arm: str, method: str = "grad-cam", **extra):
    heat = np.zeros((8, 8), np.float32)
    heat[:4, :4] = 1.0
    return {
        "arm": arm,
        "map": heat,
        "method": method,
        "method_title": {"grad-cam": "Grad-CAM", "smoothgrad": "SmoothGrad"}[method],
        "layer": "head" if method == "grad-cam" else "input pixels",
        "grid": 7 if method == "grad-cam" else 8,
        "predicted_class": "horses",
        "target_class": "horses",
        "probability": 0.98,
        **extra,
    }


def test_attention_figure_names_the_method_and_overlays_each_arm():
    image = np.full((8, 8, 3), 120, np.uint8)
    fig = insight_figures.attention(
        image,
        [panel("imagenet"), panel("random", "smoothgrad", target_class="humans")],
        caption="horse1.png · horses",
    )
    heading = [a.text for a in fig.layout.annotations]
    assert heading[0] == "horse1.png · horses"
    assert heading[1] == "ImageNet weights · Grad-CAM on head (7×7)<br>predicts horses (98%)"
    assert heading[2] == (
        "Random weights · SmoothGrad on input pixels<br>predicts horses (98%) · explains humans"
    )
    kinds = [d.type for d in fig.data]
    assert kinds == ["image", "image", "heatmap", "image", "heatmap"]
    assert [d.showscale for d in fig.data if d.type == "heatmap"] == [False, True]


def test_feature_space_figure_puts_arms_in_columns_and_stages_in_rows():
    space = {
        "classes": ["horses", "humans"],
        "labels": [0, 1, 0],
        "names": ["a.png", "b.png", "c.png"],
        "panels": [
            {
                "arm": arm,
                "stage": stage,
                "points": [[0, 0], [1, 1], [0, 1]],
                "knn_accuracy": 0.5 if arm == "random" else 1.0,
                "k": 3,
                "folds": 2,
                "unchanged": stage == "after",
            }
            for arm in ("imagenet", "random")
            for stage in ("before", "after")
        ],
    }
    fig = insight_figures.feature_space(space, labels={"imagenet": "ImageNet-Gewichte"})
    heading = [a.text for a in fig.layout.annotations]
    assert heading == [
        "ImageNet-Gewichte · before training<br>3-NN accuracy 100%",
        "Random weights · before training<br>3-NN accuracy 50%",
        "ImageNet-Gewichte · after training<br>3-NN accuracy 100% (backbone unchanged)",
        "Random weights · after training<br>3-NN accuracy 50% (backbone unchanged)",
    ]
    horses = fig.data[0]
    assert horses.name == "horses" and list(horses.text) == ["a.png", "c.png"]
    assert list(horses.customdata) == [0, 2] and horses.showlegend
    assert sum(d.showlegend for d in fig.data) == 2  # one legend entry per class
