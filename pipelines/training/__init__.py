"""Training: one experiment config, two arms trained in lockstep, caches, export.

- :mod:`.config` - :class:`~.config.ExperimentConfig`, the one validated, JSON-serialisable
  description of an experiment (light: no TensorFlow);
- :mod:`.preflight` - checks a config against its backbone and data before a run exists;
- :mod:`.arms` - an arm (``imagenet`` / ``random``): backbone + head, its phases;
- :mod:`.loop` - :func:`~.loop.run_experiment`, the two phases epoch by epoch;
- :mod:`.hydra` - several tasks: one shared backbone with a head per task (a HydraNet),
  or one network per task, with the run's measured cost;
- :mod:`.feature_cache` - frozen features per image on disk;
- :mod:`.export` - a run's arm as SavedModel / ONNX with a parity check.

Only :mod:`.config` and :mod:`.preflight` are free of TensorFlow; import the others by their
module path when you need them.
"""
