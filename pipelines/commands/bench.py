"""``python -m pipelines bench [--json] [--repeats N] ...``: engine vs the plain TF Hub recipe.

Takes a while on Horses or Humans at 224 px (each repetition trains the plain recipe twice
and the engine eight times, plus the sweep figure: a 12-config sweep and the same 12
configs as separate ``train`` processes at 160 px, and the HydraNet figure: ``shared`` and
``separate`` on the chest X-rays' two tasks; 3 repetitions by default). Needs the
data set (``DATASETS_DIR`` for Horses or Humans, or ``--dataset FOLDER`` with ``train/``
and ``validation/``) and the plain recipe (``--baseline``, default
``../shared/bench/plain_keras_baseline.py``). What each figure spans: :mod:`pipelines.bench`
and the README's Speed section.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TARGETS: dict[str, float | None] = {
    "feature_extraction_cold_ratio": 0.22,
    "feature_extraction_warm_ratio": 0.05,
    "feature_extraction_warm_pool_ratio": 0.03,
    "finetune_epoch_ratio": 0.5,
    "finetune_epoch_warm_ratio": 0.25,
    "finetune_only_epoch_ratio": None,  # no target: bounded near 0.5 by the bottom's pass
    "scratch_epoch_ratio": 1.05,
    "memory_ratio": 1.5,
    "start_to_first_epoch_s": 2.0,
    "sweep_ratio": 0.5,
    "hydra_ratio": 0.6,
}


def run(args) -> int:
    from pipelines.bench import DEFAULT_BASELINE, DEFAULT_DATASET, run_bench

    kwargs = {}
    if args.quick:  # a smoke run: tiny subset, small images, few epochs
        kwargs = dict(
            image_size=64,
            epochs=2,
            finetune_epochs=1,
            scratch_epochs=1,
            train_per_class=16,
            sweep_grid=("phase2.unfreeze_blocks=1,2", "phase1.lr=1e-3,1e-2"),
            sweep_sets=("image_size=64", "phase1.epochs=1", "phase2.epochs=1"),
            hydra_sets=(
                "image_size=64",
                "phase1.epochs=1",
                "phase2.epochs=1",
                "train_per_class=16",
            ),
        )
    if args.hydra_dataset is not None:
        kwargs["hydra_dataset"] = None if args.hydra_dataset == "none" else args.hydra_dataset
    for key in ("image_size", "epochs", "finetune_epochs", "scratch_epochs", "batch_size"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    if args.train_per_class is not None:
        kwargs["train_per_class"] = args.train_per_class
    result = run_bench(
        baseline=Path(args.baseline) if args.baseline else DEFAULT_BASELINE,
        dataset=args.dataset or DEFAULT_DATASET,
        repeats=args.repeats,
        accuracy_target=args.accuracy_target,
        say=lambda m: print(f"bench: {m} ...", file=sys.stderr, flush=True),
        **kwargs,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"machine: {result['machine']}; cores: {json.dumps(result['cores'])}")
    print(f"repetitions: {result['settings']['repeats']} (median, min-max)")
    print(f"{'figure':30} {'median':>8} {'min':>8} {'max':>8} {'target':>7}")
    for key, target in TARGETS.items():
        shown = "-" if target is None else f"{target:.2f}"
        if result[key] is None:
            print(f"{key:30} {'-':>8} {'-':>8} {'-':>8} {shown:>7}  not measured")
            continue
        low, high = result["spread"][key]
        if not result["valid"][key]:
            verdict = "INVALID"
        elif target is None:
            verdict = "(no target)"
        else:
            verdict = "ok" if result[key] <= target else "MISSED"
        print(f"{key:30} {result[key]:8.3f} {low:8.3f} {high:8.3f} {shown:>7}  {verdict}")
    for message in result["messages"]:
        print(message)
    print(f"imagenet val accuracy (cold run, lowest): {result['imagenet_val_accuracy']:.4f}")
    print("seconds:", json.dumps(result["seconds"]))
    print("megabytes:", json.dumps(result["megabytes"]))
    return 0


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the engine against the plain TF Hub recipe")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--baseline", help="path of plain_keras_baseline.py")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="interleaved repetitions per figure (default 3); medians and min-max reported",
    )
    p.add_argument(
        "--dataset",
        help="data set name or folder with train/ and validation/ (default horses_or_humans)",
    )
    p.add_argument("--image-size", type=int, help="pixels (default 224)")
    p.add_argument("--epochs", type=int, help="feature-extraction epochs, both sides (default 5)")
    p.add_argument(
        "--finetune-epochs",
        type=int,
        help="fine-tuning epochs the one-off costs spread over (default: the seminar preset's, 2)",
    )
    p.add_argument("--scratch-epochs", type=int, help="epochs from scratch (default 2)")
    p.add_argument("--batch-size", type=int, help="batch size, both sides (default 32)")
    p.add_argument("--train-per-class", type=int, help="a subset per class (smoke runs)")
    p.add_argument(
        "--accuracy-target",
        type=float,
        help="validation accuracy the feature-extraction figures need to count "
        "(default 0.99 on horses_or_humans, none elsewhere)",
    )
    p.add_argument(
        "--hydra-dataset",
        help="two-task data set of the hydra_ratio figure (default chest_xray_pneumonia_tasks; "
        "'none' skips the figure)",
    )
    p.add_argument("--quick", action="store_true", help="tiny smoke run (not for the table)")
    p.set_defaults(func=run, needs_tensorflow=False)
