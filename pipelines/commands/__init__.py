"""The commands of ``python -m pipelines`` (see :mod:`pipelines.__main__`), one module each,
and the options several of them share."""

from __future__ import annotations

import argparse


def add_set_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE``, repeatable: one experiment config field by its dotted name, the
    same names as the dashboard's form (``phase1.lr``); ``args.set`` is the list or None."""
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help=help)
