"""Backbone features on disk: run a frozen backbone once per image, ever.

With the backbone frozen and BatchNorm in inference mode, an image's feature vector depends
only on the backbone's weights, the image's pixels and the preprocessing. So features are
stored per image under a key of everything that decides them:

* the backbone's weights fingerprint (:func:`backbone_fingerprint`), plus ``random:<seed>``
  for the seeded random arm, which graph computed them, and where it was cut
  (``reuse_blocks``: the features of a cut backbone are its last kept block's);
* the image size and pixel scaling, and the data layer's preprocessing version;
* the image itself: the BLAKE2b digest of its file (the data layer's ``*_digests``).

Any data set, subset (``train_per_class``) or split that contains an image reuses its
features. Chunks are ``.npz`` files (read with ``allow_pickle=False``), written atomically
(temporary file, then rename), so concurrent experiments and crashes never leave a half
chunk that loads. The folder is ``settings.feature_cache_dir()``; deleting it is safe.

The rows read stay in memory for the life of the process (per cache folder, up to
``MEMORY_BYTES_MAX`` in all: boundary activations are tens of KB a row), so a warm pool
worker (:mod:`pipelines.runs.pool`) reads each chunk once and later runs only look for
chunks other processes have added since.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipelines import settings
from pipelines.backbones.spec import BackboneSpec
from pipelines.data.dataset import PREPROCESSING_VERSION

CACHE_VERSION = 1
MEMORY_BYTES_MAX = 1 << 30  # rows kept in memory across runs, all folders together

# cache folder -> (chunk file names read, rows): shared by every FeatureCache of the process
_memory: dict[Path, tuple[set[str], dict[str, np.ndarray]]] = {}


@lru_cache(maxsize=16)
def _hash_files(files: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for path, _size, _mtime in files:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def backbone_fingerprint(spec: BackboneSpec) -> str:
    """A digest of the backbone's weights: the weights file for built-ins, else every file
    of the SavedModel (memoised per process by path, size and mtime)."""
    if spec.builtin:
        from pipelines.backbones.builtin import weights_file

        paths = [weights_file(spec.weights_package)]
    else:
        from pipelines.backbones import feature_vector_handle

        root = Path(feature_vector_handle(spec))
        paths = sorted(p for p in root.rglob("*") if p.is_file())
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    return _hash_files(stats)


def cache_key(
    spec: BackboneSpec,
    *,
    weights: str,
    seed: int,
    image_size: int,
    graph: str,
    reuse_blocks: int | None = None,
) -> str:
    """The key of one backbone's features: what decides them, hashed. ``reuse_blocks``
    (None: the whole backbone) is the cut point."""
    parts = {
        "version": CACHE_VERSION,
        "backbone": backbone_fingerprint(spec),
        "weights": weights if weights == "imagenet" else f"random:{seed}",
        "graph": graph,
        "image_size": image_size,
        "scaling": spec.scaling,
        "preprocessing": PREPROCESSING_VERSION,
    }
    if reuse_blocks is not None:  # absent for the whole backbone: older caches stay valid
        parts["reuse_blocks"] = reuse_blocks
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def clear_memory() -> None:
    """Forget the rows this process keeps in memory: the next read starts from the chunks
    on disk, as a new process does."""
    _memory.clear()


class FeatureCache:
    """Features of one backbone configuration (:func:`cache_key`), per image digest."""

    def __init__(self, key: str, root: Path | None = None):
        self.dir = (root or settings.feature_cache_dir()) / f"v{CACHE_VERSION}" / key
        self._rows: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            seen, self._rows = _memory.get(self.dir, (set(), {}))
            kept = sum(r.nbytes for _, rows in _memory.values() for r in rows.values())
            if kept > MEMORY_BYTES_MAX:
                _memory.clear()
            _memory[self.dir] = (seen, self._rows)
            for chunk in sorted(self.dir.glob("*.npz")):
                if chunk.name in seen:
                    continue
                try:
                    with np.load(chunk, allow_pickle=False) as data:
                        pairs = zip(data["digests"].tolist(), data["features"], strict=True)
                        self._rows.update(pairs)
                    seen.add(chunk.name)
                except (OSError, ValueError, KeyError):
                    continue  # an unreadable chunk is a miss, never an error
        return self._rows

    def get(self, digests: list[str]) -> tuple[np.ndarray | None, list[int]]:
        """``(features, missing)``: rows for ``digests`` (None if any is missing) and the
        positions of the missing ones."""
        rows = self._load()
        missing = [i for i, d in enumerate(digests) if d not in rows]
        if missing or not digests:
            return None, missing
        return np.stack([rows[d] for d in digests]).astype(np.float32), []

    def put(self, digests: list[str], features: np.ndarray) -> None:
        """Add features for ``digests`` as one new chunk; best effort (a full disk only
        costs the copy on disk, never the experiment: :meth:`get` still has them)."""
        if not digests:
            return
        self._load().update(zip(digests, features, strict=True))
        name = hashlib.sha1("".join(digests).encode()).hexdigest()
        tmp = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=self.dir)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, digests=np.array(digests), features=features.astype(np.float32))
            os.replace(tmp, self.dir / f"{name}.npz")
        except OSError:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
