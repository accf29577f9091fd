"""``run_bench`` without training: which processes it starts, and how it computes the ratios."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import bench
from pipelines.errors import UserError


@pytest.fixture
def measured(monkeypatch, tmp_path):
    """Stand-ins for the measured processes; returns the calls they saw."""
    calls: list[tuple[str, list[str], str]] = []

    def measure(cmd, env, timeout):
        calls.append(("plain", cmd, env["FEATURE_CACHE_DIR"]))
        if cmd[-2:] == ["backbones", "--json"]:
            return {"out": [{"id": "efficientnet_lite0", "handle": "/lite0"}]}
        mode = cmd[cmd.index("--mode") + 1]
        wall, rss = (20.0, 1000.0) if mode == "frozen" else (30.0, 900.0)
        out = {"epoch_s": [4.0, 2.0], "train_images": 16, "val_accuracy": [0.5, 0.75]}
        return {"wall_s": wall, "peak_rss_mb": rss, "out": out}

    def engine(sets, env, timeout):
        calls.append(("engine", sets, env["FEATURE_CACHE_DIR"]))
        arms = {"imagenet": {"final_val_accuracy": 0.9, "prep_s": {"fine_tuning": 1.0}}}
        curves = [{"phase": "feature_extraction", "epoch_s": 0.5}]
        curves += [{"phase": "fine_tuning", "epoch_s": 1.0}] * 2
        return {"wall_s": 5.0, "peak_rss_mb": 1200.0, "summary": {"arms": arms}, "curves": curves}

    monkeypatch.setattr(bench, "_measure", measure)
    monkeypatch.setattr(bench, "_engine", engine)
    monkeypatch.setattr(bench.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "work"))
    monkeypatch.setattr(
        "pipelines.data.resolve_source", lambda name: type("S", (), {"root": Path("/hoh")})
    )
    return calls


def test_both_sides_run_on_the_same_settings_and_ratios_follow(measured, tmp_path):
    result = bench.run_bench(baseline=Path(__file__), image_size=64, batch_size=8, epochs=2)
    plain = [c for c in measured if c[0] == "plain"][1:]  # after the backbones listing
    engine = [c for c in measured if c[0] == "engine"]
    assert [c[1][c[1].index("--mode") + 1] for c in plain] == ["frozen", "scratch"]
    for _, cmd, _ in plain:
        assert cmd[cmd.index("--handle") + 1] == "/lite0" and "/hoh" in cmd
        assert cmd[cmd.index("--image-size") + 1] == "64"
        assert cmd[cmd.index("--batch-size") + 1] == "8"
    assert len(engine) == 5 and engine[0][1] == engine[1][1]  # cold, then warm: same run
    for _, sets, _ in engine:
        assert {"dataset=/hoh", "image_size=64", "batch_size=8"} <= set(sets)
    caches = [cache for _, _, cache in engine]
    assert caches[:4] == [str(tmp_path / "work" / "features")] * 4
    assert caches[4] == str(tmp_path / "work" / "features-memory")  # both arms: a cold cache
    assert result["feature_extraction_cold_ratio"] == 0.25  # 5 s / 20 s
    assert result["finetune_epoch_ratio"] == round((1.0 + 2.0) / 2 / 3.0, 3)
    assert result["scratch_epoch_ratio"] == 0.5  # 1 s / 2 s, the last epochs
    assert result["memory_ratio"] == 1.2
    assert result["settings"]["train_images"] == 16
    assert result["val_accuracy"]["engine_both_arms"] == {"imagenet": 0.9}


def test_a_missing_baseline_is_refused(tmp_path):
    with pytest.raises(UserError, match="the plain recipe .* is missing"):
        bench.run_bench(baseline=tmp_path / "nope.py")
