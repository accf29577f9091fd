"""``python -m pipelines bench [--json]``: engine vs the plain TF Hub recipe, ratios.

Takes several minutes (it trains the plain recipe twice and the engine five times). Needs
Horses or Humans (``DATASETS_DIR``) and the plain recipe (``--baseline``, default
``../shared/bench/plain_keras_baseline.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TARGETS = {
    "feature_extraction_cold_ratio": 0.25,
    "feature_extraction_warm_ratio": 0.05,
    "finetune_epoch_ratio": 0.5,
    "scratch_epoch_ratio": 1.05,
    "memory_ratio": 1.5,
}


def run(args) -> int:
    from pipelines.bench import DEFAULT_BASELINE, run_bench

    kwargs = {}
    if args.quick:  # a smoke run: tiny subset, small images, few epochs
        kwargs = dict(
            image_size=64, epochs=2, finetune_epochs=1, scratch_epochs=1, train_per_class=16
        )
    result = run_bench(
        baseline=Path(args.baseline) if args.baseline else DEFAULT_BASELINE,
        say=lambda m: print(f"bench: {m} ...", file=sys.stderr, flush=True),
        **kwargs,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"machine: {result['machine']}")
    print(f"{'measurement':34} {'ratio':>7} {'target':>7}")
    for key, target in TARGETS.items():
        ok = "ok" if result[key] <= target else "MISSED"
        print(f"{key:34} {result[key]:7.3f} {target:7.2f}  {ok}")
    print(f"imagenet val accuracy (cold run): {result['imagenet_val_accuracy']:.4f}")
    print("seconds:", json.dumps(result["seconds"]))
    print("megabytes:", json.dumps(result["megabytes"]))
    return 0


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the engine against the plain TF Hub recipe")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--baseline", help="path of plain_keras_baseline.py")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (not for the table)")
    p.set_defaults(func=run, needs_tensorflow=False)
