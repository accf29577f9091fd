"""``python -m pipelines features RUN [--projection pca|tsne] [--seed N] [--k K] [--json]``.

The feature space of a finished run (:mod:`pipelines.insight.features`): per arm, the
validation set's pooled backbone features before and after training, the k-NN accuracy on
them (cross-validated) and, with ``--json``, the 2-D points, labels and image names.
"""

from __future__ import annotations

import json


def run(args) -> int:
    from pipelines.insight.features import feature_space
    from pipelines.runs.store import RunStore

    space = feature_space(
        RunStore(), args.run_id, projection=args.projection, seed=args.seed, k=args.k
    )
    if args.json:
        print(json.dumps(space))
        return 0
    n = len(space["labels"])
    print(
        f"run {space['run_id']}: {n} validation images, classes {', '.join(space['classes'])}; "
        f"projection {space['projection']} (seed {space['seed']})"
    )
    for p in space["panels"]:
        acc = "n/a" if p["knn_accuracy"] is None else f"{p['knn_accuracy']:.1%}"
        notes = []
        if p["unchanged"]:
            notes.append("backbone unchanged by training")
        if p["cached"] is not None:
            notes.append(f"{p['cached']}/{n} from the feature cache")
        print(
            f"  {p['arm']:<9} {p['stage']:<7} {p['k']}-NN accuracy {acc:>6} "
            f"({p['folds']}-fold, {p['dim']} features)" + (f"; {'; '.join(notes)}" if notes else "")
        )
    return 0


def register(sub) -> None:
    p = sub.add_parser("features", help="a finished run's feature space and k-NN accuracy")
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("--projection", choices=["pca", "tsne"], default="pca")
    p.add_argument("--seed", type=int, default=0, help="seeds the folds and the projection")
    p.add_argument("--k", type=int, default=5, help="neighbours of the k-NN classifier")
    p.add_argument("--json", action="store_true", help="print the whole feature space as JSON")
    p.set_defaults(func=run)
