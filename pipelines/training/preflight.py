"""Refuse an experiment that can't start before a run is created for it.

:func:`check_experiment` runs cheap checks only (no TensorFlow, no network, no decoding),
so the CLI's ``train`` and the dashboard's Start (through :class:`pipelines.runs.jobs.JobManager`)
make them on every press: a refused config, backbone or data set leaves no run behind.

What only loading tells - a depth beyond the backbone's blocks, an image size the model
can't take, a model that is not an image model, a batch larger than the data set, a data
set whose images are all unreadable - the worker finds and records as a ``failed`` run with
the reason: a complete record, not half-written state.
"""

from __future__ import annotations

from pipelines.training.config import ExperimentConfig


def check_experiment(config: ExperimentConfig) -> ExperimentConfig:
    """Validate ``config``, resolve its backbone (a local folder is confined and must hold
    a SavedModel), check its cut point (``reuse_blocks``: only backbones that can be cut,
    within their blocks: :func:`pipelines.backbones.check_cut`) and locate its data set
    (:func:`pipelines.data.sources.check_source`); return it, or raise
    :class:`pipelines.errors.UserError`."""
    from pipelines.backbones import check_cut
    from pipelines.backbones.spec import resolve
    from pipelines.data.sources import check_source
    from pipelines.data.tasks import has_tasks
    from pipelines.errors import UserError

    config.validate()
    check_cut(resolve(config.backbone), config.reuse_blocks)
    check_source(config.dataset)
    if config.tasks and not has_tasks(config.dataset):
        raise UserError(
            f"tasks: {config.dataset} has one task (its class folders); tasks choose among "
            "the tasks of a data set with several (a labels.csv folder, "
            "chest_xray_pneumonia_tasks)"
        )
    return config
