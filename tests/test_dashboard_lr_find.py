"""The learning-rate finder in the Setup form: its chart (``dashboard/lr_figures.py``), a
finished finder's chart and "Use this rate" under AppTest, and (slow) the whole way from
the button through the background process to the filled rate."""

from __future__ import annotations

import json
import time

import pytest

from dashboard import form
from dashboard.lr_figures import lr_curve
from pipelines import settings
from pipelines.runs import lr_jobs
from tests.test_dashboard_app import errors, ok, widget

RESULT = {
    "phase": 1,
    "arm": "imagenet",
    "suggested_lr": 4.2e-3,
    "rule": "min/10",
    "ended": "diverged",
    "head": "new",
    "lrs": [1e-5, 1e-4, 1e-3, 1e-2, 4.2e-2, 1e-1, 1.0],
    "losses": [0.70, 0.69, 0.60, 0.30, 0.15, 0.40, 3.0],
    "smoothed": [0.70, 0.69, 0.65, 0.45, 0.30, 0.35, 1.5],
}


def test_the_chart_has_a_log_rate_axis_and_marks_the_suggestion_with_its_rule():
    fig = lr_curve(RESULT)
    assert fig.layout.xaxis.type == "log"
    raw, smoothed, marker = fig.data
    assert list(raw.x) == RESULT["lrs"] and list(smoothed.y) == RESULT["smoothed"]
    assert set(marker.x) == {4.2e-3}
    assert "4.2e-03" in marker.name and "÷ 10" in marker.name
    # Without a suggestion (stopped, too short) nothing is marked.
    assert len(lr_curve({**RESULT, "suggested_lr": None}).data) == 2


def finished_finder(result: dict, phase: int) -> str:
    """A finder's folder as the background process leaves it, written directly."""
    job_id = "20261202-120000-abcdef"
    folder = settings.runs_dir() / lr_jobs.FOLDER / job_id
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"pid": 1, "started": 0.0, "phase": phase}))
    (folder / "result.json").write_text(json.dumps({**result, "phase": phase}))
    return job_id


@pytest.mark.parametrize("phase", [1, 2])
def test_use_this_rate_fills_the_phases_learning_rate(app, phase):
    at = app()
    at.session_state[f"lr_find.job.{phase}"] = finished_finder(RESULT, phase)
    ok(at.run())
    assert at.button(key=f"lr_find.start.{phase}")
    assert at.get("plotly_chart")
    captions = " | ".join(c.value for c in at.caption)
    assert (
        "suggested 4.2e-03 (the smoothed loss's minimum, where a flat floor starts, divided by 10)"
        in captions
    )
    at.button(key=f"lr_find.use.{phase}").click()
    ok(at.run())
    assert widget(at, "select_slider", f"phase{phase}.lr").value == form.nearest_lr(4.2e-3) == 5e-3
    assert f"phase{phase}.lr set to 5e-03." in [s.value for s in at.success]
    assert not errors(at)


def test_a_failed_finder_says_why_and_offers_no_rate(app):
    at = app()
    failed = {"ended": "failed", "error": "phase2.unfreeze_blocks is 0: ..."}
    at.session_state["lr_find.job.2"] = finished_finder(failed, 2)
    ok(at.run())
    assert any("phase2.unfreeze_blocks is 0" in e for e in errors(at))
    assert "lr_find.use.2" not in [b.key for b in at.button]


def test_a_finder_refused_at_start_is_a_message_in_the_form(app):
    at = ok(app().run())
    at.number_input(key="phase2.epochs").set_value(0)
    at.slider(key="phase2.unfreeze_blocks").set_value(0)
    ok(at.run())
    at.button(key="lr_find.start.2").click()
    ok(at.run())
    assert any("needs blocks to unfreeze" in e for e in errors(at))
    assert "lr_find.job.2" not in at.session_state


@pytest.mark.slow
def test_find_a_learning_rate_runs_in_the_background_and_fills_the_rate(app):
    at = ok(app().run())
    at.number_input(key="image_size").set_value(32)
    at.number_input(key="batch_size").set_value(8)
    ok(at.run())
    at.button(key="lr_find.start.1").click()
    ok(at.run())
    job = at.session_state["lr_find.job.1"]
    assert at.button(key="lr_find.start.1").disabled  # one finder per phase at a time
    deadline = time.monotonic() + 300
    while lr_jobs.read(job)["ended"] not in lr_jobs.FINAL:
        assert time.monotonic() < deadline
        time.sleep(1)
        ok(at.run())  # the page stays usable meanwhile
    ok(at.run())
    result = lr_jobs.read(job)
    assert result["suggested_lr"] is not None, result
    at.button(key="lr_find.use.1").click()
    ok(at.run())
    wanted = form.nearest_lr(result["suggested_lr"])
    assert widget(at, "select_slider", "phase1.lr").value == wanted
