"""``python -m pipelines export ID --arm imagenet|random --format savedmodel|onnx OUT``."""

from __future__ import annotations

import json


def run(args) -> int:
    from pipelines.runs.store import RunStore
    from pipelines.training.export import export

    result = export(RunStore(), args.run_id, args.arm, args.format, args.out)
    if args.json:
        print(json.dumps(result))
    elif args.format == "onnx":
        print(
            f"wrote {result['path']} (ONNX opset {result['opset']}); onnxruntime vs TensorFlow "
            f"on {result['parity_images']} validation images: max |diff| "
            f"{result['parity_max_abs_diff']:.2e}"
        )
    else:
        print(f"wrote {result['path']} (SavedModel: images in [0, 255] -> probabilities)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="export a trained arm as SavedModel or ONNX")
    p.add_argument("run_id", metavar="ID")
    p.add_argument("--arm", choices=["imagenet", "random"], default="imagenet")
    p.add_argument("--format", choices=["savedmodel", "onnx"], default="onnx")
    p.add_argument("out", metavar="OUT", help="file (onnx) or folder (savedmodel) to write")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
