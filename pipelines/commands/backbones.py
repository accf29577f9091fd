"""``python -m pipelines backbones [--json]``: the catalogue, marking what works offline."""

from __future__ import annotations

import json
import sys

from pipelines.backbones import BackboneSpec, catalogue, feature_vector_handle


def _block_count(spec: BackboneSpec, handle: str | None) -> int | None:
    if handle is None:
        return None
    from pipelines.backbones.blocks import read_manifest

    manifest = read_manifest(handle)
    if manifest is not None:
        return len(manifest)
    from pipelines.backbones.blocks import derive_blocks
    from pipelines.backbones.spec import is_remote

    if is_remote(handle):
        return None
    import tensorflow as tf

    return len(derive_blocks([v.name for v in tf.saved_model.load(handle).variables]))


def describe(spec: BackboneSpec) -> dict:
    """One catalogue row; built-ins are materialised so ``handle`` is a real local path."""
    handle = None
    if spec.builtin:
        from pipelines.backbones import builtin

        if not builtin.is_materialised(spec.id):
            print(f"building {spec.id} as a SavedModel (first use only) ...", file=sys.stderr)
        handle = feature_vector_handle(spec)
    elif spec.offline:
        handle = spec.handle
    return {
        **spec.to_dict(),
        "handle": handle or spec.handle,
        "blocks": _block_count(spec, handle),
    }


def run(args) -> int:
    rows = [describe(spec) for spec in catalogue()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'id':28} {'offline':8} {'size':>5} {'blocks':>6}  name")
    for r in rows:
        blocks = "?" if r["blocks"] is None else r["blocks"]
        offline = "yes" if r["offline"] else "no"
        print(f"{r['id']:28} {offline:8} {r['input_size']:>5} {blocks:>6}  {r['name']}")
    print(
        "\nAny TF Hub / Kaggle Models URL, Kaggle handle or local SavedModel folder works too "
        "(remote ones need the network once)."
    )
    return 0


def register(sub) -> None:
    p = sub.add_parser("backbones", help="list the backbone catalogue")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=run)
