"""Transfer-learning experiment engine: backbones, data, training, run store, export.

Importing this package selects Keras 2 (``tf_keras``) for TensorFlow before anything imports
TensorFlow: ``tensorflow_hub.KerasLayer`` only works with Keras 2. This is the one place it
is set; import ``pipelines`` (or any submodule) before ``tensorflow``.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
