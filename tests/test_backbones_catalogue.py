"""Catalogue, handle resolution, and remote handles that fail fast and clearly."""

import json
import socket
import subprocess
import sys
import time

import pytest

from pipelines.backbones import feature_vector_handle, remote, resolve
from pipelines.backbones import spec as cat
from pipelines.backbones.pixels import SCALINGS
from pipelines.errors import UserError


def test_catalogue_has_builtins_and_the_well_known_hub_models():
    specs = {s.id: s for s in cat.catalogue()}
    for needed in (
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "mobilenet_v2_100_224",
        "mobilenet_v3_large_100_224",
        "efficientnet_v2_b0",
        "resnet_v2_50",
        "inception_v3",
    ):
        assert needed in specs
    for spec in specs.values():
        assert spec.scaling in SCALINGS and spec.input_size >= 32 and spec.citation
        assert spec.builtin or cat.is_remote(spec.handle)
    assert [s.builtin for s in cat.catalogue()][:3] == [True] * 3
    assert specs["efficientnet_lite0"].offline and not specs["resnet_v2_50"].offline


def test_resolve_kinds_of_handle(tmp_path):
    assert resolve("efficientnet_lite1").input_size == 240
    url = "https://tfhub.dev/google/imagenet/resnet_v2_50/feature_vector/5"
    assert resolve(url).id == "resnet_v2_50"  # a catalogue handle maps to its entry
    other = resolve("https://example.org/models/my_model/1")
    assert other.handle == "https://example.org/models/my_model/1" and not other.offline
    kaggle = resolve("google/mobilenet-v2/tensorFlow2/100-224-feature-vector/2")
    assert kaggle.handle.startswith("https://www.kaggle.com/models/google/mobilenet-v2/")
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    local = resolve(str(tmp_path / "sm"))
    assert local.handle == str(tmp_path / "sm") and local.offline


@pytest.mark.parametrize(
    "layout,message",
    [
        ({}, "does not exist"),
        ({"handle": "x"}, "is a file"),
        ({"handle/": None}, "is empty"),
        ({"handle/": None, "handle/variables.txt": ""}, "no saved_model.pb"),
    ],
)
def test_bad_local_handles(tmp_path, layout, message):
    for name, content in layout.items():
        if name.endswith("/"):
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_text(content)
    with pytest.raises(UserError, match=message):
        resolve(str(tmp_path / "handle"))


def test_unknown_text_lists_the_choices():
    with pytest.raises(UserError, match="efficientnet_lite0"):
        resolve("no-such-thing")
    with pytest.raises(UserError, match="no backbone given"):
        resolve("  ")


def test_unreachable_handle_fails_fast_with_what_to_do():
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        feature_vector_handle("https://models.invalid/imagenet/feature_vector/1")
    assert time.monotonic() - start < 10
    text = str(info.value)
    assert "could not download the model" in text
    assert "efficientnet_lite0" in text and "local SavedModel folder" in text


def test_a_hanging_network_is_cut_off(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(5)
        raise OSError("too late")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    with pytest.raises(UserError, match="timed out"):
        remote.ensure_reachable("https://tfhub.dev/x/1", timeout=0.5)
    assert time.monotonic() - start < 3


def test_a_cached_download_needs_no_network(tmp_path, monkeypatch):
    import hashlib

    handle = "https://models.invalid/some/model/1"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    folder = tmp_path / hashlib.sha1(handle.encode()).hexdigest()
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"")
    assert resolve(handle).offline
    assert feature_vector_handle(handle) == handle  # no preflight, TF Hub loads from cache


def _cli(*args, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_backbones_json(lite0_handle):
    result = _cli("backbones", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    lite0 = rows["efficientnet_lite0"]
    assert lite0["offline"] is True and lite0["blocks"] == 18 and lite0["input_size"] == 224
    assert lite0["handle"] == lite0_handle
    assert rows["inception_v3"]["offline"] is False and rows["inception_v3"]["input_size"] == 299


def test_cli_classify_json(tmp_path, lite0_handle):
    import skimage.data
    from PIL import Image

    Image.fromarray(skimage.data.chelsea()).save(tmp_path / "chelsea.png")
    result = _cli(
        "classify", "--backbone", "efficientnet_lite0", str(tmp_path / "chelsea.png"), "--json"
    )
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert entry["image"].endswith("chelsea.png")
    assert len(entry["top5"]) == 5
    assert 281 <= entry["top5"][0]["class_index"] <= 285
    assert "cat" in entry["top5"][0]["label"]


def test_cli_refusals_are_one_line_no_traceback(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    for args in (
        ["classify", "--backbone", "nope", str(tmp_path / "notes.txt")],
        ["classify", "--backbone", "efficientnet_lite0", str(tmp_path / "notes.txt")],
        ["classify", "--backbone", "https://models.invalid/m/1", str(tmp_path / "notes.txt")],
    ):
        result = _cli(*args)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
