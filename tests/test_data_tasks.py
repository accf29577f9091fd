"""Data sets with several tasks: labels.csv folders and the chest X-rays by file name."""

from pathlib import Path

import numpy as np
import pytest

from pipelines.data import check_source, inspect_dataset, load_dataset
from pipelines.data.sources import named
from pipelines.data.tasks import NO_LABEL, has_tasks
from pipelines.errors import UserError
from tests.conftest_data import pattern_image

CHEST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "chest-xray-pneumonia"


def labelled_folder(root: Path, rows: list[str], *, header: str = "path,shape,size") -> Path:
    """Images ``train/a0.png``... for every path named in ``rows``, plus ``labels.csv``."""
    root.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        path = row.split(",")[0]
        if path and not path.startswith(("..", "/", "missing")):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            pattern_image(i % 2, i).save(root / path)
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def good_rows() -> list[str]:
    rows = []
    for split, n in (("train", 8), ("validation", 4)):
        for i in range(n):
            size = "" if i % 4 == 3 else ("big", "small")[i % 2]
            rows.append(f"{split}/img{i}.png,{('round', 'square')[i % 2]},{size}")
    return rows


def test_labels_csv_loads_each_task_with_missing_labels(tmp_path):
    root = labelled_folder(tmp_path / "d", good_rows())
    # an image the CSV does not list, and a row without any label: both skipped, listed
    pattern_image(0, 99).save(root / "train" / "stray.png")
    (root / "labels.csv").write_text((root / "labels.csv").read_text() + "train/img0.png,,\n")
    with pytest.raises(UserError, match="more than once"):
        load_dataset(str(root), image_size=32)
    (root / "labels.csv").write_text("\n".join(["path,shape,size", *good_rows()]) + "\n")
    pattern_image(1, 98).save(root / "train" / "unlabelled.png")
    with open(root / "labels.csv", "a") as f:
        f.write("train/unlabelled.png,,\n")
    assert has_tasks(str(root))
    check_source(str(root))
    data = load_dataset(str(root), image_size=32)
    assert [t.name for t in data.tasks] == ["shape", "size"]
    shape, size = data.tasks
    assert shape.classes == ["round", "square"] and size.classes == ["big", "small"]
    assert len(shape.train_labels) == 8 and len(shape.val_labels) == 4
    assert (shape.train_labels != NO_LABEL).all()
    assert (size.train_labels == NO_LABEL).sum() == 2  # img3, img7
    assert data.train_images.shape == (8, 32, 32, 3)
    skipped = {s.path: s.reason for s in data.skipped}
    assert "not in labels.csv" in skipped["train/stray.png"]
    assert "no label for any task" in skipped["train/unlabelled.png"]
    # one task chosen: only its labels; the same images
    only = load_dataset(str(root), image_size=32, tasks=["size"])
    assert [t.name for t in only.tasks] == ["size"]
    report = inspect_dataset(str(root))
    assert report["tasks"]["size"]["splits"]["train"]["(no label)"] == 2
    assert report["problems"] == []
    from pipelines.commands.data import format_report

    text = format_report(report)
    assert "Task:     size: train big 4, small 2, (no label) 2" in text
    assert "Images:   12 usable" in text


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (["train/a.png,x,y", "missing/b.png,x,y"], None, "not files in"),
        (["train/a.png,x,y", "train/a.png,z,y"], None, "more than once"),
        (["../a.png,x,y"], None, "leave the folder"),
        (
            [f"{s}/{i}.png,{'xy'[i % 2]},same" for s in ("train", "validation") for i in range(2)],
            None,
            "'size' has 1 class",
        ),
        (
            [f"train/{i}.png,{'xy'[i % 2]},{'uv'[i % 2]}" for i in range(4)]
            + [f"validation/{i}.png,{'xy'[i % 2]}," for i in range(2)],
            None,
            "'size' has no labelled image in the validation split",
        ),
        (["train/a.png,x,y"], "file,shape,size", "header row starting with 'path'"),
        (["train/a.png"], "path", "no task columns"),
        (["train/a.png,x"], "path,my task", "not allowed"),
        (["train/a.png,x,y", "b.png,x,y"], None, "mixes images"),
    ],
)
def test_bad_labels_csv_gets_one_clear_message(tmp_path, rows, header, message):
    root = labelled_folder(tmp_path / "d", rows, header=header or "path,shape,size")
    with pytest.raises(UserError, match=message):
        load_dataset(str(root), image_size=32)


def test_pooled_labels_csv_draws_a_validation_split(tmp_path):
    rows = [f"img{i}.png,{'ab'[i % 2]},{'cd'[i // 2 % 2]}" for i in range(16)]
    data = load_dataset(str(labelled_folder(tmp_path / "d", rows)), image_size=32, seed=3)
    assert len(data.train_paths) + len(data.val_paths) == 16
    assert len(data.val_paths) == 4  # one of each of the four label combinations
    assert any("validation is a seeded share" in n for n in data.notes)


def test_unknown_task_is_refused_by_name(tmp_path):
    root = labelled_folder(tmp_path / "d", good_rows())
    with pytest.raises(UserError, match="'colour' not in .*its tasks are shape, size"):
        load_dataset(str(root), image_size=32, tasks=["colour"])


@pytest.mark.skipif(not CHEST.is_dir(), reason="the chest X-ray data set is not here")
def test_chest_xray_tasks_come_from_file_names():
    assert named("chest_xray_pneumonia_tasks").tasks
    report = inspect_dataset("chest_xray_pneumonia_tasks", data_root=CHEST.parent)
    tasks = report["tasks"]
    assert tasks["normal_vs_pneumonia"]["splits"]["train"] == {
        "NORMAL": 1340,
        "PNEUMONIA": 1340,
        "(no label)": 0,
    }
    assert tasks["bacterial_vs_viral"]["splits"]["train"] == {
        "bacterial": 881,
        "viral": 459,
        "(no label)": 1340,
    }
    assert tasks["bacterial_vs_viral"]["splits"]["validation"] == {
        "bacterial": 240,
        "viral": 147,
        "(no label)": 231,
    }
    assert not has_tasks("chest_xray_pneumonia")


def test_task_labels_follow_rows(tmp_path):
    rows = good_rows()
    data = load_dataset(str(labelled_folder(tmp_path / "d", rows)), image_size=32)
    by_path = {p.relative_to(tmp_path / "d").as_posix(): i for i, p in enumerate(data.train_paths)}
    shape = data.tasks[0]
    for row in rows[:8]:
        path, label, _ = row.split(",")
        assert shape.classes[shape.train_labels[by_path[path]]] == label
    assert np.array_equal(data.train_labels, shape.train_labels)
