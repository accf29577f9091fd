"""Read a legacy-format PyTorch state dict (``torch.save`` before 1.6) without torch.

The legacy format is a sequence of pickles followed by raw storages::

    magic number, protocol version, sys info,   (three small pickles)
    the state dict                              (a pickle; tensors are persistent ids)
    the storage keys, in file order             (a pickle)
    per storage: int64 element count, then its raw little-endian bytes

The pickles are read with an allow-list of globals: only ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the typed storage classes resolve, to stand-ins
defined here. Anything else (``os.system``, ``builtins.eval``, ...) raises
:class:`UnsafePickleError` before any of it runs. Tensors come back as NumPy arrays.
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file asks for a global outside the allow-list; nothing of it was executed."""


class NotATorchFileError(ValueError):
    """The file is not a legacy-format PyTorch state dict."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise NotATorchFileError(f"storage {self.storage.key} has no data in the file")
        if not self.size:
            return flat[self.offset].copy()
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, hooks=None, *_):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load global {module}.{name}: only PyTorch tensors in an "
                "OrderedDict are allowed in a weights file"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise NotATorchFileError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel, *view = pid
        if view and view[0] is not None:
            raise NotATorchFileError("storage views are not supported in weights files")
        if not isinstance(storage_type, _StorageType):
            raise NotATorchFileError(f"unexpected storage type {storage_type!r}")
        if key not in self._storages:
            self._storages[key] = _Storage(str(key), storage_type.dtype, int(numel))
        return self._storages[key]


def _load_plain(f: io.BufferedIOBase):
    # The small header pickles hold only ints and dicts; even they get no globals.
    return _AllowListUnpickler(f, {}).load()


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Return the state dict in ``path`` as ``{name: numpy array}``, in file order.

    Raises :class:`UnsafePickleError` for any global outside the allow-list and
    :class:`NotATorchFileError` for anything that is not a legacy torch file.
    """
    data = Path(path).read_bytes()
    f = io.BytesIO(data)
    try:
        magic = _load_plain(f)
        if magic != MAGIC_NUMBER:
            raise NotATorchFileError(f"{path} is not a legacy PyTorch file (bad magic number)")
        if _load_plain(f) != PROTOCOL_VERSION:
            raise NotATorchFileError(f"{path} has an unsupported PyTorch protocol version")
        sys_info = _load_plain(f)
        if not sys_info.get("little_endian", False):
            raise NotATorchFileError(f"{path} was written on a big-endian machine")
        storages: dict[str, _Storage] = {}
        result = _AllowListUnpickler(f, storages).load()
        keys = _load_plain(f)
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as e:
        if isinstance(e, NotATorchFileError):
            raise
        raise NotATorchFileError(f"{path} is not a legacy PyTorch state dict: {e}") from e

    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise NotATorchFileError(f"{path}: storage {key} is listed but never used")
        count = int(np.frombuffer(f.read(8), "<i8")[0])
        nbytes = count * storage.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise NotATorchFileError(f"{path} is truncated inside storage {key}")
        storage.data = np.frombuffer(raw, storage.dtype)

    if not isinstance(result, dict):
        raise NotATorchFileError(f"{path} holds a {type(result).__name__}, not a state dict")
    return {
        name: value.materialise() if isinstance(value, _TensorRef) else np.asarray(value)
        for name, value in result.items()
    }
