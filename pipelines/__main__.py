"""``python -m pipelines COMMAND ...``: the engine's command line.

Each command is a module in :mod:`pipelines.commands` with ``register(subparsers)``, which
adds its parser and sets ``func(args) -> int``. A refused input (:class:`UserError`) prints
one readable line and exits 2; an unexpected failure prints its type and message (the
traceback only with ``--debug``) and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from pipelines.errors import UserError

COMMANDS = [
    "backbones",
    "classify",
    "data",
    "train",
    "lr-find",
    "near-far",
    "runs",
    "sweep",
    "sweep-worker",
    "sweeps",
    "export",
    "explain",
    "features",
    "bench",
    "worker",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"pipelines.commands.{name.replace('-', '_')}").register(sub)
    return parser


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with C++ start-up chatter (oneDNN, CUDA probing) kept off stderr.

    That chatter ignores ``TF_CPP_MIN_LOG_LEVEL`` in TF 2.21; it is not an error, but a
    CLI user would read it as one. Python exceptions still surface after stderr returns.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "needs_tensorflow", True):
            _import_tensorflow_quietly()
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``| head``): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI never shows a bare traceback
        if args.debug:
            traceback.print_exc()
        print(f"error: {type(e).__name__}: {e} (rerun with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
