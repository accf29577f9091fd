"""The data layer: find a data set, check its files, decode it once, feed it to training.

- :func:`load_dataset` -> :class:`Dataset`: ``uint8`` arrays, sorted classes, skipped files,
  a fingerprint for caches (:mod:`.dataset`);
- :func:`inspect_dataset` -> the report ``python -m pipelines data`` prints;
- :mod:`.pipeline`: the seeded batches training draws (epoch order, augmentation, scaling;
  it imports TensorFlow, so import it by name: ``pipelines.data.pipeline``).

Where data sets come from is :mod:`.sources` (with :mod:`.safezip` and :mod:`.tfds_source`);
how folders are read is :mod:`.scan`; data sets with several tasks (``labels.csv``, the
chest X-rays' two tasks) :mod:`.tasks`; decoding is :mod:`.images`; subsets :mod:`.subsets`.
"""

from __future__ import annotations

from pipelines.data.dataset import Dataset, clear_cache, inspect_dataset, load_dataset
from pipelines.data.scan import SkippedFile
from pipelines.data.sources import DEFAULT_DATASET, Source, check_source, resolve_source

__all__ = [
    "DEFAULT_DATASET",
    "Dataset",
    "SkippedFile",
    "Source",
    "check_source",
    "clear_cache",
    "inspect_dataset",
    "load_dataset",
    "resolve_source",
]
