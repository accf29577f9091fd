"""Transfer-learning experiment engine: backbones, data, training, run store, export.

Importing this package selects Keras 2 (``tf_keras``) for TensorFlow before anything imports
TensorFlow: ``tensorflow_hub.KerasLayer`` only works with Keras 2. This is the one place it
is set; import ``pipelines`` (or any submodule) before ``tensorflow``.

Packages by stage, imports one way (down this list): :mod:`.backbones`, :mod:`.data`,
:mod:`.training`, :mod:`.runs`, :mod:`.sweeps`, then :mod:`.bench` and :mod:`.commands` on top;
:mod:`.errors` and :mod:`.settings` are the foundation.

Glossary (the code uses these names and no others for these ideas):

* **experiment** - what one :class:`~pipelines.training.config.ExperimentConfig` describes:
  one backbone on one data set, trained once per arm.
* **arm** - one of the two trainings of an experiment: ``imagenet`` (pretrained weights) or
  ``random`` (random weights, ``random_policy`` ``same`` or ``scratch``).
* **phase** - ``phase1`` trains the new head on the frozen backbone (feature extraction);
  ``phase2`` fine-tunes the top blocks at a lower learning rate.
* **block** - a unit of the backbone that is frozen or trained as a whole (a stage of
  EfficientNet-Lite; derived from variable names for other SavedModels).
* **unfreeze_blocks** - how many of the top blocks ``phase2`` trains (``phase2.unfreeze_blocks``).
* **run** - one started experiment in the run store, with its status, rows and files; read
  as a :class:`~pipelines.runs.run.Run`.
* **reap** - mark ``interrupted`` a queued/running run whose worker process is gone
  (:func:`pipelines.runs.lifecycle.reap`); done by whoever polls runs, never by a store read.
* **trial** / **sweep** - a sweep explores a space of configs; each trial of it is a run.
* **feature cache** - frozen-backbone features per image on disk, reused across runs.
* **boundary cache** - the frozen bottom's output at the fine-tuning cut, computed once per
  run so only the top blocks run each epoch.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
