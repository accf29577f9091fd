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

    if not baseline.is_file():
        raise UserError(
            f"the plain recipe {baseline} is missing; give its path with --baseline "
            "(it ships in shared/bench/ beside the repository)"
        )
    data = resolve_source("horses_or_humans").root
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    env = {
        **os.environ,
        "RUNS_DIR": str(work / "runs"),
        "FEATURE_CACHE_DIR": str(work / "features"),
        "BACKBONE_CACHE_DIR": str(settings.backbone_cache_dir()),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    if train_per_class:  # the smoke test's tiny version: a subset folder for both sides
        data = _subset(data, work / "subset", train_per_class)
    dataset_set = f"dataset={data}"

    say("resolving the built-in backbone's SavedModel path")
    listed = _measure([sys.executable, "-m", "pipelines", "backbones", "--json"], env, timeout)
    handle = next(r["handle"] for r in listed["out"] if r["id"] == "efficientnet_lite0")
    plain = [sys.executable, str(baseline), "--handle", handle, "--data", str(data)]
    common = [
        "--image-size",
        str(image_size),
        "--batch-size",
        str(batch_size),
        "--scale",
        "minus1_1",
    ]
    fe_sets = [
        dataset_set,
        "backbone=efficientnet_lite0",
        "arms=imagenet",
        f"image_size={image_size}",
        f"batch_size={batch_size}",
        f"phase1.epochs={epochs}",
        "phase2.epochs=0",
    ]

    say("plain recipe, frozen")
    plain_frozen = _measure(
        [*plain, "--mode", "frozen", "--epochs", str(epochs), *common], env, timeout
    )
    say("engine, feature extraction, cold cache")
    cold = _engine(fe_sets, env, timeout)
    say("engine, feature extraction, warm cache")
    warm = _engine(fe_sets, env, timeout)
    say("engine, fine-tuning the top 2 blocks")
    ft = _engine(
        [
            *fe_sets[:-2],
            "phase1.epochs=1",
            f"phase2.epochs={finetune_epochs}",
            "phase2.unfreeze_blocks=2",
        ],
        env,
        timeout,
    )
    say("plain recipe, scratch")
    plain_scratch = _measure(
        [*plain, "--mode", "scratch", "--epochs", str(scratch_epochs), *common], env, timeout
    )
    say("engine, random arm from scratch")
    scratch = _engine(
        [
            *fe_sets[:2],
            "arms=random",
            "random_policy=scratch",
            f"image_size={image_size}",
            f"batch_size={batch_size}",
            f"phase1.epochs={scratch_epochs}",
            "phase2.epochs=0",
        ],
        env,
        timeout,
    )
    say("engine, both arms (memory), fresh feature cache")
    env_mem = {**env, "FEATURE_CACHE_DIR": str(work / "features-memory")}
    both = _engine(
        [
            dataset_set,
            f"image_size={image_size}",
            f"batch_size={batch_size}",
            f"phase1.epochs={epochs}",
            "phase2.epochs=2",
            "phase2.unfreeze_blocks=2",
        ],
        env_mem,
        timeout,
    )

    plain_epochs = plain_frozen["out"]["epoch_s"]
    plain_epoch = sum(plain_epochs) / len(plain_epochs)
    ft_arm = ft["summary"]["arms"]["imagenet"]
    ft_epochs = [r["epoch_s"] for r in ft["curves"] if r["phase"] == "fine_tuning"]
    ft_per_epoch = (ft_arm["prep_s"].get("fine_tuning", 0.0) + sum(ft_epochs)) / len(ft_epochs)
    scratch_epoch = [r["epoch_s"] for r in scratch["curves"]][-1]
    plain_scratch_epoch = plain_scratch["out"]["epoch_s"][-1]
    return {
        "machine": machine(),
        "settings": {
            "backbone": "efficientnet_lite0",
            "image_size": image_size,
            "batch_size": batch_size,
            "epochs": epochs,
            "finetune_epochs": finetune_epochs,
            "scratch_epochs": scratch_epochs,
            "train_images": plain_frozen["out"]["train_images"],
        },
        "feature_extraction_cold_ratio": round(cold["wall_s"] / plain_frozen["wall_s"], 3),
        "feature_extraction_warm_ratio": round(warm["wall_s"] / plain_frozen["wall_s"], 3),
        "finetune_epoch_ratio": round(ft_per_epoch / plain_epoch, 3),
        "scratch_epoch_ratio": round(scratch_epoch / plain_scratch_epoch, 3),
        "memory_ratio": round(both["peak_rss_mb"] / plain_frozen["peak_rss_mb"], 3),
        "imagenet_val_accuracy": cold["summary"]["arms"]["imagenet"]["final_val_accuracy"],
        "seconds": {
            "plain_frozen_wall": plain_frozen["wall_s"],
            "plain_frozen_epochs": plain_epochs,
            "engine_cold_wall": cold["wall_s"],
            "engine_warm_wall": warm["wall_s"],
            "engine_finetune_prep": ft_arm["prep_s"].get("fine_tuning", 0.0),
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
            "engine_cold": cold["summary"]["arms"]["imagenet"]["final_val_accuracy"],
            "engine_warm": warm["summary"]["arms"]["imagenet"]["final_val_accuracy"],
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
