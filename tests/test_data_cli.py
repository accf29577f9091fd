"""``python -m pipelines data``: the JSON report, the readable one, and the exit status."""

from __future__ import annotations

import argparse
import json

import pytest

from pipelines.commands import data as data_command
from pipelines.errors import UserError


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    data_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", *argv])
    return args.func(args)


def test_json_report(bad_image_folder, capsys):
    root, reasons = bad_image_folder
    assert run(["--dataset", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == ["cats", "dogs"]
    assert report["splits"] == {
        "train": {"cats": 12, "dogs": 12},
        "validation": {"cats": 4, "dogs": 4},
    }
    assert {s["path"] for s in report["skipped"]} == set(reasons)
    assert all(set(s) == {"path", "reason"} for s in report["skipped"])
    assert report["image_sizes"]["count"] == 32
    assert report["problems"] == []


def test_readable_report(bad_image_folder, capsys):
    root, _ = bad_image_folder
    assert run(["--dataset", str(root)]) == 0
    out = capsys.readouterr().out
    assert "Classes:  2 (labels 0..1 in this order)" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["cats", "12", "4"] in rows and ["total", "24", "8"] in rows
    assert "Images:   32 usable, all 32x32; 16 PNG, 16 JPEG; modes 32 RGB" in out
    assert "Skipped:  12" in out
    assert "  train/dogs/empty.png: empty file (0 bytes)" in out


def test_untrainable_data_is_reported_then_refused(image_folder_factory, capsys):
    root = image_folder_factory(classes=("only",), train=2, validation=1)
    with pytest.raises(UserError, match="cannot be trained on: .* 1 class folder"):
        run(["--dataset", str(root)])
    assert "only" in capsys.readouterr().out


def test_registered_with_the_cli():
    from pipelines.__main__ import COMMANDS

    assert "data" in COMMANDS
