"""``python -m pipelines bench``: the engine against the plain TF Hub recipe, in one run.

Every measurement is a fresh process, the plain recipe's and the engine's alike, started
back to back on the same data (Horses or Humans), backbone (the built-in's SavedModel path
from ``python -m pipelines backbones --json``), image size, batch size and epochs. Wall time
runs from process start to exit; peak memory is the largest sum of RSS over the process
tree, sampled every 50 ms. Ratios are engine / plain, so smaller is better.

=========================  ===========================================================
ratio                      measured as
=========================  ===========================================================
feature_extraction_cold    engine wall, empty feature cache / plain frozen wall
feature_extraction_warm    the same engine run again (warm cache) / plain frozen wall
finetune_epoch             engine's fine-tuning phase time per epoch (the one-off bottom
                           pass included) / plain frozen time per epoch
scratch_epoch              engine ``scratch`` random arm, last epoch / plain
                           ``--mode scratch``, last epoch
memory                     engine experiment with both arms, peak RSS / plain frozen peak
=========================  ===========================================================
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from pipelines import settings
from pipelines.errors import UserError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = REPO.parent / "shared" / "bench" / "plain_keras_baseline.py"


def _measure(cmd: list[str], env: dict[str, str], timeout: float) -> dict:
    """Run ``cmd``; return wall seconds, peak tree RSS (MB) and stdout's last JSON line."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise UserError(
            f"benchmark step timed out after {timeout:.0f} s: {' '.join(cmd[:4])} ..."
        ) from None
    finally:
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise UserError(f"benchmark step failed ({' '.join(cmd[:5])} ...): {err.strip()[-500:]}")
    try:
        parsed = json.loads(out)
    except json.JSONDecodeError:  # the plain recipe prints log lines before its JSON line
        parsed = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak[0] / 2**20, 1), "out": parsed}


def _engine(sets: list[str], env: dict[str, str], timeout: float) -> dict:
    cmd = [sys.executable, "-m", "pipelines", "train", "--json"]
    for s in sets:
        cmd += ["--set", s]
    result = _measure(cmd, env, timeout)
    from pipelines.runs.store import RunStore

    run = RunStore(Path(env["RUNS_DIR"])).get_run(result["out"]["run_id"])
    result["summary"] = run.summary
    result["curves"] = RunStore(Path(env["RUNS_DIR"])).curves(run.run_id).to_dict("records")
    return result


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def run_bench(
    *,
    baseline: Path = DEFAULT_BASELINE,
    image_size: int = 224,
    epochs: int = 5,
    batch_size: int = 32,
    finetune_epochs: int = 3,
    scratch_epochs: int = 2,
    train_per_class: int | None = None,
    timeout: float = 1800,
    say=lambda message: None,
) -> dict:
    """Run every measurement and return the numbers behind each ratio."""
    from pipelines.data import resolve_source

    # The plain recipe, the data set and a scratch folder for runs and caches.
    if not baseline.is_file():
        raise UserError(
            f"the plain recipe {baseline} is missing; give its path with --baseline "
            "(it ships in shared/bench/ beside the repository)"
        )
    data = resolve_source("horses_or_humans").root
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    env = _environment(work)
    if train_per_class:  # the smoke test's tiny version: a subset folder for both sides
        data = _subset(data, work / "subset", train_per_class)

    # Both sides on the same backbone file, data, image size and batch size.
    say("resolving the built-in backbone's SavedModel path")
    bench = _Bench(
        baseline, _builtin_handle(env, timeout), data, image_size, batch_size, env, timeout
    )
    fe_sets = bench.feature_extraction_sets(epochs)

    # The measurements, each a fresh process, back to back.
    say("plain recipe, frozen")
    plain_frozen = bench.plain("frozen", epochs)
    say("engine, feature extraction, cold cache")
    cold = bench.engine(fe_sets)
    say("engine, feature extraction, warm cache")
    warm = bench.engine(fe_sets)
    say("engine, fine-tuning the top 2 blocks")
    ft = bench.engine(
        [
            *fe_sets[:-2],
            "phase1.epochs=1",
            f"phase2.epochs={finetune_epochs}",
            "phase2.unfreeze_blocks=2",
        ]
    )
    say("plain recipe, scratch")
    plain_scratch = bench.plain("scratch", scratch_epochs)
    say("engine, random arm from scratch")
    scratch = bench.engine(
        [
            *fe_sets[:2],
            "arms=random",
            "random_policy=scratch",
            *bench.size_sets(),
            f"phase1.epochs={scratch_epochs}",
            "phase2.epochs=0",
        ]
    )
    say("engine, both arms (memory), fresh feature cache")
    both = bench.engine(
        [
            bench.dataset_set(),
            *bench.size_sets(),
            f"phase1.epochs={epochs}",
            "phase2.epochs=2",
            "phase2.unfreeze_blocks=2",
        ],
        env={**env, "FEATURE_CACHE_DIR": str(work / "features-memory")},
    )

    # The ratios and the numbers behind them.
    return _report(
        {
            "backbone": "efficientnet_lite0",
            "image_size": image_size,
            "batch_size": batch_size,
            "epochs": epochs,
            "finetune_epochs": finetune_epochs,
            "scratch_epochs": scratch_epochs,
            "train_images": plain_frozen["out"]["train_images"],
        },
        plain_frozen=plain_frozen,
        plain_scratch=plain_scratch,
        cold=cold,
        warm=warm,
        ft=ft,
        scratch=scratch,
        both=both,
    )


def _environment(work: Path) -> dict[str, str]:
    """Every measured process's environment: runs and feature caches under ``work``."""
    return {
        **os.environ,
        "RUNS_DIR": str(work / "runs"),
        "FEATURE_CACHE_DIR": str(work / "features"),
        "BACKBONE_CACHE_DIR": str(settings.backbone_cache_dir()),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def _builtin_handle(env: dict[str, str], timeout: float) -> str:
    """The built-in efficientnet_lite0's SavedModel path, as ``backbones --json`` lists it."""
    listed = _measure([sys.executable, "-m", "pipelines", "backbones", "--json"], env, timeout)
    return next(r["handle"] for r in listed["out"] if r["id"] == "efficientnet_lite0")


@dataclass
class _Bench:
    """What every measurement shares: the plain recipe's command and the engine's settings."""

    baseline: Path
    handle: str
    data: Path
    image_size: int
    batch_size: int
    env: dict[str, str]
    timeout: float

    def plain(self, mode: str, epochs: int) -> dict:
        """The plain recipe in ``mode`` (frozen, scratch) for ``epochs``, measured."""
        cmd = [sys.executable, str(self.baseline), "--handle", self.handle]
        cmd += ["--data", str(self.data), "--mode", mode, "--epochs", str(epochs)]
        cmd += ["--image-size", str(self.image_size), "--batch-size", str(self.batch_size)]
        cmd += ["--scale", "minus1_1"]
        return _measure(cmd, self.env, self.timeout)

    def engine(self, sets: list[str], env: dict[str, str] | None = None) -> dict:
        """``python -m pipelines train`` with ``sets``, measured, with its run's curves."""
        return _engine(sets, env or self.env, self.timeout)

    def dataset_set(self) -> str:
        return f"dataset={self.data}"

    def size_sets(self) -> list[str]:
        return [f"image_size={self.image_size}", f"batch_size={self.batch_size}"]

    def feature_extraction_sets(self, epochs: int) -> list[str]:
        """The ImageNet arm on the built-in, ``epochs`` of feature extraction only."""
        return [
            self.dataset_set(),
            "backbone=efficientnet_lite0",
            "arms=imagenet",
            *self.size_sets(),
            f"phase1.epochs={epochs}",
            "phase2.epochs=0",
        ]


def _report(
    bench_settings: dict,
    *,
    plain_frozen: dict,
    plain_scratch: dict,
    cold: dict,
    warm: dict,
    ft: dict,
    scratch: dict,
    both: dict,
) -> dict:
    """The ratios (engine / plain) and the seconds, megabytes and accuracies behind them."""
    plain_epochs = plain_frozen["out"]["epoch_s"]
    plain_epoch = sum(plain_epochs) / len(plain_epochs)
    ft_prep = ft["summary"]["arms"]["imagenet"]["prep_s"].get("fine_tuning", 0.0)
    ft_epochs = [r["epoch_s"] for r in ft["curves"] if r["phase"] == "fine_tuning"]
    ft_per_epoch = (ft_prep + sum(ft_epochs)) / len(ft_epochs)
    scratch_epoch = [r["epoch_s"] for r in scratch["curves"]][-1]
    plain_scratch_epoch = plain_scratch["out"]["epoch_s"][-1]

    def final_accuracy(result: dict, arm: str = "imagenet"):
        return result["summary"]["arms"][arm]["final_val_accuracy"]

    return {
        "machine": machine(),
        "settings": bench_settings,
        "feature_extraction_cold_ratio": round(cold["wall_s"] / plain_frozen["wall_s"], 3),
        "feature_extraction_warm_ratio": round(warm["wall_s"] / plain_frozen["wall_s"], 3),
        "finetune_epoch_ratio": round(ft_per_epoch / plain_epoch, 3),
        "scratch_epoch_ratio": round(scratch_epoch / plain_scratch_epoch, 3),
        "memory_ratio": round(both["peak_rss_mb"] / plain_frozen["peak_rss_mb"], 3),
        "imagenet_val_accuracy": final_accuracy(cold),
        "seconds": {
            "plain_frozen_wall": plain_frozen["wall_s"],
            "plain_frozen_epochs": plain_epochs,
            "engine_cold_wall": cold["wall_s"],
            "engine_warm_wall": warm["wall_s"],
            "engine_finetune_prep": ft_prep,
            "engine_finetune_epochs": [round(e, 2) for e in ft_epochs],
            "engine_finetune_per_epoch": round(ft_per_epoch, 2),
            "plain_scratch_epochs": plain_scratch["out"]["epoch_s"],
            "engine_scratch_epochs": [round(r["epoch_s"], 2) for r in scratch["curves"]],
        },
        "megabytes": {
            "plain_frozen_peak_rss": plain_frozen["peak_rss_mb"],
            "engine_both_arms_peak_rss": both["peak_rss_mb"],
            "engine_cold_peak_rss": cold["peak_rss_mb"],
        },
        "val_accuracy": {
            "plain_frozen": plain_frozen["out"]["val_accuracy"][-1],
            "engine_cold": final_accuracy(cold),
            "engine_warm": final_accuracy(warm),
            "engine_both_arms": {
                arm: v["final_val_accuracy"] for arm, v in both["summary"]["arms"].items()
            },
        },
    }


def _subset(root: Path, target: Path, per_class: int) -> Path:
    """Copy the first ``per_class`` images per class and split (smoke runs only)."""
    for split in ("train", "validation"):
        for class_dir in sorted((root / split).iterdir()):
            if not class_dir.is_dir():
                continue
            out = target / split / class_dir.name
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(class_dir.iterdir())[:per_class]:
                shutil.copyfile(f, out / f.name)
    return target
