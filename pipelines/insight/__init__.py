"""Insight: what each arm of a finished run learned, computed from its saved weights.

- :mod:`.arm_model` - a finished run's arm rebuilt as Keras parts (trained or initial);
- :mod:`.attention` - where an arm looks: Grad-CAM on the last kept block of a built-in
  backbone, SmoothGrad on the input for any other, per image;
- :mod:`.features` - the validation set's pooled backbone features of both arms, before
  and after training, projected to 2-D, with a cross-validated k-NN accuracy.

This package reads runs (their stored config, results and per-arm weights) and never
writes to the store; what it computes for a run is kept in ``runs/<id>/insight/``.
Import the modules by their path: they import TensorFlow.
"""
