"""HydraNets: one shared backbone with a head per task, against one network per task.

A data set with several tasks (:mod:`pipelines.data.tasks`) trains with ``config.hydra``:

* ``shared`` - per arm, **one** backbone and one head per task. The loss is the sum over
  heads of each head's cross-entropy over the batch's images that carry its task's label
  (a missing label, ``-1``, is masked out; a head none of whose labels is in a batch gets
  a zero gradient, and its weights are not stepped in that batch). Phase 1 trains the
  heads on the frozen backbone's features, computed once per image for all heads (the
  feature cache); phase 2 fine-tunes the shared top blocks under all heads at once.
* ``separate`` - the baseline: per arm and task, a whole network (backbone and one head),
  trained on the images labelled for its task. The networks share no computation: each
  keeps its own feature and boundary caches, as N independent networks would (with one
  shared cache the second network's frozen features would be the first's: a HydraNet).

Both arms (``imagenet``, ``random``) train in lockstep as in :mod:`.loop`: each batch is
drawn once and fed to every arm's network. Metric rows carry their ``task``. The run
measures its cost: wall time, images through the backbone (or its fine-tuned top) actually
computed, parameters and model bytes of what it trained, and the process's peak memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from pipelines import data as data_mod
from pipelines.data.pipeline import epoch_order, image_batch
from pipelines.numerics import balanced_accuracy, chance_accuracy, log_softmax, softmax
from pipelines.training.arms import Arm, PhasePlan, StopRequested, _optimizer
from pipelines.training.config import (
    PHASE_TITLES,
    PREPARING,
    ExperimentConfig,
    validate_against,
)
from pipelines.training.traced import one_graph

BATCH_LOG_EVERY_S = 0.5


def build_heads(dim: int, tasks: list[tuple[str, int]], dropout: float, seed: int) -> keras.Model:
    """One dropout + dense head per ``(task, classes)`` on the same ``dim`` features; the
    outputs (logits) are named by task. Each head is initialised as
    :func:`pipelines.training.arms.build_head` would (same seed), so a shared head and a
    separate network's head start equal."""
    features = keras.Input((dim,), name="features")
    outputs = []
    for name, classes in tasks:
        x = keras.layers.Dropout(dropout, seed=seed, name=f"{name}_dropout")(features)
        outputs.append(
            keras.layers.Dense(
                classes,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                name=name,
            )(x)
        )
    return keras.Model(features, outputs, name="heads")


def masked_losses(outs: list, y: tf.Tensor) -> tuple[tf.Tensor, list, list, list]:
    """``(total, losses, hits, counts)`` for head outputs ``outs`` and labels ``y``
    ``[batch, tasks]`` (-1: no label): each head's mean cross-entropy over its labelled
    images (0 when it has none), their sum, and per head the correct and labelled counts."""
    total = tf.constant(0.0)
    losses, hits, counts = [], [], []
    for k, logits in enumerate(outs):
        yk = y[:, k]
        mask = tf.cast(yk >= 0, tf.float32)
        safe = tf.maximum(yk, 0)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
        n = tf.reduce_sum(mask)
        loss = tf.reduce_sum(ce * mask) / tf.maximum(n, 1.0)
        total += loss
        correct = tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == safe, tf.float32)
        losses.append(loss)
        hits.append(tf.reduce_sum(correct * mask))
        counts.append(n)
    return total, losses, hits, counts


@dataclass
class HydraArm(Arm):
    """An :class:`Arm` whose head is one head per task (``task_classes``: ``(name, number
    of classes)``), trained on the masked sum of their losses. It counts the images it
    runs through the backbone or its trainable top (``forward_images``)."""

    task_classes: list = field(default_factory=list)
    forward_images: int = 0
    cache_salt: str = ""  # separate networks: their own feature and boundary caches
    _steps: dict = field(default_factory=dict)

    def _feature_key(self) -> str:
        """The arm's feature cache key; with ``cache_salt``, one of its own, so separate
        networks share no backbone pass with each other (as N independent networks)."""
        key = super()._feature_key()
        if not self.cache_salt:
            return key
        return hashlib.sha256(f"{key}/{self.cache_salt}".encode()).hexdigest()[:32]

    def _build_head(self, dim: int) -> keras.Model:
        return build_heads(dim, self.task_classes, self.config.dropout, self.config.seed)

    def _compile(self, lr: float) -> None:
        net, optimizer = self._net, _optimizer(self.config.optimizer, lr)
        variables = list(net.trainable_variables)
        optimizer.build(variables)  # every slot now: each step pattern below reuses them
        heads = {
            name: set(map(id, self.head.get_layer(name).trainable_variables))
            for name, _ in self.task_classes
        }
        all_heads = set().union(*heads.values())

        def make_step(present: tuple[bool, ...]):
            # Only the heads with labels in the batch (and everything below them) step, so
            # an optimizer's momentum never moves a head that saw no label.
            wanted = set().union(
                *(heads[t] for (t, _), p in zip(self.task_classes, present, strict=True) if p)
            )
            chosen = [v for v in variables if id(v) not in all_heads or id(v) in wanted]

            @one_graph
            def step(x, y):
                with tf.GradientTape() as tape:
                    outs = net(x, training=True)
                    outs = outs if isinstance(outs, (list, tuple)) else [outs]
                    total, losses, hits, counts = masked_losses(outs, y)
                grads = tape.gradient(total, chosen)
                optimizer.apply_gradients(zip(grads, chosen, strict=True))
                return total, tf.stack(losses), tf.stack(hits), tf.stack(counts)

            return step

        self._steps = {}
        self._make_step = make_step

    def train_step(self, x, y) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """One update on ``x`` with labels ``y`` ``[batch, tasks]``; ``(total loss, loss per
        head, correct per head, labelled per head)``."""
        start = time.perf_counter()
        y = np.asarray(y, np.int32)
        present = tuple(bool(p) for p in (y >= 0).any(axis=0))
        step = self._steps.get(present)
        if step is None:
            step = self._steps[present] = self._make_step(present)
        total, losses, hits, counts = step(x, tf.constant(y))
        out = (float(total), losses.numpy(), hits.numpy(), counts.numpy())
        if self.mode != "features":
            self.forward_images += len(y)
        self.compute_s += time.perf_counter() - start
        return out

    def _run(self, net, arrays: np.ndarray, *, scale: bool):
        """As :meth:`Arm._run` (a list of arrays for the heads' outputs), counting the
        images that pass through backbone blocks."""
        if net is not self.head:
            self.forward_images += len(arrays)
        return super()._run(net, arrays, scale=scale)

    def parameters(self) -> int:
        """Parameters of the whole network (backbone, loaded if it was not, and heads)."""
        start = self.compute_s
        backbone = self.ensure_backbone()
        self.compute_s = start  # counting is not training time
        variables = list(backbone.module_variables) + list(self.head.variables)
        return sum(int(np.prod(v.shape)) for v in variables)

    def save_weights(self, folder: Path, classes: list[str], tasks: list | None = None) -> None:
        """As :meth:`Arm.save_weights`, plus the heads' tasks and classes in ``arm.json``."""
        super().save_weights(folder, classes)
        meta = json.loads((folder / "arm.json").read_text())
        meta["tasks"] = [{"name": t.name, "classes": t.classes} for t in tasks or []]
        (folder / "arm.json").write_text(json.dumps(meta, indent=1))


@dataclass
class Network:
    """One trained network: an arm's HydraNet (all tasks) or one task's own network."""

    arm: HydraArm
    tasks: list  # pipelines.data.tasks.Task, the heads' order
    data: object  # the Dataset it trains on
    train_y: np.ndarray  # [n, tasks], -1: no label
    val_y: np.ndarray
    plans: list[PhasePlan]
    history: dict = field(default_factory=dict)  # task -> epoch rows
    last_logits: list | None = None
    prep_s: dict = field(default_factory=dict)
    sums: np.ndarray | None = None  # per head: loss*n, correct, n over the epoch
    epoch_start: float = 0.0

    @property
    def label(self) -> str:
        names = ", ".join(t.name for t in self.tasks)
        return f"{self.arm.name} arm ({names})"


def run_hydra(
    run_id, config: ExperimentConfig, store, spec, size: int, artefacts: Path, started, should_stop
) -> dict:
    """Train a multi-task data set as ``config.hydra`` says; the run's summary (stored)."""
    store.log_event(run_id, f"loading data set {config.dataset!r} at {size}x{size}")
    dataset = data_mod.load_dataset(
        config.dataset,
        image_size=size,
        train_per_class=config.train_per_class,
        seed=config.seed,
        extract_dir=artefacts / "data",
        lazy=True,
        tasks=config.tasks or None,
    )
    if dataset.skipped:
        store.log_event(run_id, f"skipped {len(dataset.skipped)} unusable file(s) or row(s)")
    for note in dataset.notes:
        store.log_event(run_id, note)
    store.set_summary(run_id, _data_facts(dataset, config))
    try:
        groups = _make_networks(run_id, config, store, spec, size, dataset, should_stop)
    except StopRequested:
        summary = {"arms": {}, "stopped": True, "wall_s": round(time.perf_counter() - started, 2)}
        store.set_summary(run_id, summary)
        return summary
    store.log_event(
        run_id,
        f"HydraNet {config.hydra}: {sum(len(g) for g in groups)} network(s) for "
        f"{len(dataset.tasks)} task(s) ({', '.join(t.name for t in dataset.tasks)})",
    )
    loop = _HydraLoop(run_id, config, store, groups, started, should_stop)
    for phase_name, phase in (
        ("feature_extraction", config.phase1),
        ("fine_tuning", config.phase2),
    ):
        if phase.epochs and not loop.run_phase(phase_name, phase.epochs):
            break
    return _finish(run_id, config, store, groups, dataset, artefacts, loop.stopped, started)


def _data_facts(dataset, config) -> dict:
    """The summary's data facts: per task its classes, labelled validation counts and the
    majority-class accuracy; the first task's also at the top (single-task readers)."""
    tasks = {}
    for t in dataset.tasks:
        labelled = t.val_labels[t.val_labels >= 0]
        tasks[t.name] = {
            "classes": t.classes,
            "val_class_counts": np.bincount(labelled, minlength=len(t.classes)).tolist(),
            "chance_accuracy": chance_accuracy(labelled),
        }
    first = tasks[dataset.tasks[0].name]
    return {
        "classes": first["classes"],
        "image_size": dataset.image_size,
        "val_class_counts": first["val_class_counts"],
        "chance_accuracy": first["chance_accuracy"],
        "tasks": tasks,
        "hydra": config.hydra,
    }


def _subset(dataset, task):
    """``dataset`` cut to the rows labelled for ``task`` (a separate network's data)."""
    tr = np.flatnonzero(task.train_labels >= 0)
    va = np.flatnonzero(task.val_labels >= 0)

    def pixels():
        return dataset.train_images[tr], dataset.val_images[va]

    t = dataclasses.replace(
        task, train_labels=task.train_labels[tr], val_labels=task.val_labels[va]
    )
    return dataclasses.replace(
        dataset,
        classes=task.classes,
        train_labels=t.train_labels,
        train_paths=[dataset.train_paths[i] for i in tr],
        val_labels=t.val_labels,
        val_paths=[dataset.val_paths[i] for i in va],
        train_digests=[dataset.train_digests[i] for i in tr],
        val_digests=[dataset.val_digests[i] for i in va],
        _pixels=pixels,
        tasks=[t],
    )


def _make_networks(run_id, config, store, spec, size, dataset, should_stop) -> list[list[Network]]:
    """Groups of networks that share batches: ``shared`` one group (every arm's HydraNet);
    ``separate`` one group per task (every arm's network for it)."""
    if config.hydra == "shared":
        views = [(dataset, dataset.tasks)]
    else:
        views = [(_subset(dataset, t), [t]) for t in dataset.tasks]
    groups = []
    for data, tasks in views:
        group = []
        for name in config.arms:
            arm = HydraArm(
                name,
                config,
                spec,
                size,
                len(tasks[0].classes),
                should_stop=should_stop,
                task_classes=[(t.name, len(t.classes)) for t in tasks],
                cache_salt="" if config.hydra == "shared" else f"separate:{tasks[0].name}",
            )
            if arm.needs_backbone_now():
                store.log_event(run_id, f"{name} arm: loading backbone {spec.id}")
                validate_against(
                    config,
                    block_count=len(arm.ensure_backbone().blocks),
                    train_images=len(data.train_paths),
                )
            validate_against(config, block_count=None, train_images=len(data.train_paths))
            train_y = np.stack([t.train_labels for t in data.tasks], axis=1)
            val_y = np.stack([t.val_labels for t in data.tasks], axis=1)
            group.append(Network(arm, list(data.tasks), data, train_y, val_y, arm.plans()))
        groups.append(group)
    return groups


class _HydraLoop:
    """Epochs of a HydraNet run: each group's batches drawn once and fed to its arms."""

    def __init__(self, run_id, config, store, groups, started, should_stop):
        self.run_id, self.config, self.store = run_id, config, store
        self.groups, self.started, self.should_stop = groups, started, should_stop
        self.total_epochs = config.phase1.epochs + config.phase2.epochs
        self.epoch = 0
        self.stopped = False
        self.last_log = 0.0
        bs = config.batch_size
        self.steps_all = sum(math.ceil(len(g[0].data.train_paths) / bs) for g in groups)
        self.steps_done = 0
        self.step_times: list[float] = []

    @property
    def networks(self) -> list[Network]:
        return [n for g in self.groups for n in g]

    def run_phase(self, phase_name: str, epochs: int) -> bool:
        self.store.log_event(self.run_id, PREPARING[phase_name])
        try:
            for net in self.networks:
                plan = next(p for p in net.plans if p.name == phase_name)
                before = net.arm.compute_s
                note = net.arm.start_phase(plan, net.data)
                net.prep_s[phase_name] = round(net.arm.compute_s - before, 3)
                self.store.log_event(
                    self.run_id,
                    f"{net.label}: {PHASE_TITLES[phase_name]} started, lr {plan.lr:g}, "
                    f"{net.arm.trainable_params:,} trainable parameters; {note}",
                )
            for _ in range(epochs):
                for group in self.groups:
                    if not self._train_epoch(group, phase_name):
                        raise _Stopped
                self._validate(phase_name)
                self.epoch += 1
            return True
        except StopRequested:
            self.store.log_event(self.run_id, "stop requested during an inference pass")
        except _Stopped:
            pass
        self.stopped = True
        return False

    def _train_epoch(self, group: list[Network], phase_name: str) -> bool:
        config, data = self.config, group[0].data
        n, bs = len(data.train_paths), config.batch_size
        steps = math.ceil(n / bs)
        order = epoch_order(config.seed, self.epoch, n)
        scaling = group[0].arm.spec.scaling
        for net in group:
            net.sums = np.zeros((3, len(net.tasks)))
            net.epoch_start = net.arm.compute_s
        for step in range(steps):
            t0 = time.perf_counter()
            idx = order[step * bs : (step + 1) * bs]
            drawn: list = []

            def images(idx=idx, step=step, drawn=drawn):
                if not drawn:
                    drawn.append(
                        image_batch(
                            data.train_images[idx],
                            scaling,
                            augment=config.augment,
                            seed=config.seed,
                            epoch=self.epoch,
                            step=step,
                        )
                    )
                return drawn[0]

            results = {}
            for net in group:
                x = net.arm.batch_inputs(idx, images)
                _, losses, hits, counts = net.arm.train_step(x, net.train_y[idx])
                net.sums += (losses * counts, hits, counts)
                results[net.arm.name] = (net, losses, hits, counts)
            self.step_times.append(time.perf_counter() - t0)
            self.steps_done += 1
            self._report(phase_name, step, steps, results)
            if self.should_stop():
                return False
        return True

    def _report(self, phase_name, step, steps, results) -> None:
        now = time.perf_counter()
        if now - self.last_log < BATCH_LOG_EVERY_S and step != steps - 1:
            return
        self.last_log = now
        remaining = self.total_epochs * self.steps_all - self.steps_done
        eta = remaining * float(np.mean(self.step_times[-20:]))
        for name, (net, losses, hits, counts) in results.items():
            for k, task in enumerate(net.tasks):
                if counts[k] == 0:
                    continue
                self.store.log_batch(
                    self.run_id,
                    name,
                    phase_name,
                    self.epoch,
                    step,
                    float(losses[k]),
                    float(hits[k] / counts[k]),
                    now - self.started,
                    global_step=self.epoch * steps + step,
                    task=task.name,
                )
            self.store.set_progress(
                self.run_id,
                name,
                {
                    "phase": phase_name,
                    "epoch": self.epoch,
                    "epochs_total": self.total_epochs,
                    "step": step + 1,
                    "steps_per_epoch": steps,
                    "eta_s": round(eta, 1),
                    "tasks": [t.name for t in net.tasks],
                },
            )

    def _validate(self, phase_name: str) -> None:
        for net in self.networks:
            logits = net.arm.validation_logits(net.data)
            logits = logits if isinstance(logits, list) else [logits]
            net.last_logits = logits
            epoch_s = net.arm.compute_s - net.epoch_start
            for k, task in enumerate(net.tasks):
                row = _task_row(phase_name, self.epoch, net, k, logits[k], epoch_s)
                net.history.setdefault(task.name, []).append(row)
                self.store.log_epoch(self.run_id, net.arm.name, **row, task=task.name)


class _Stopped(Exception):
    pass


def _task_row(phase_name, epoch, net: Network, k: int, logits: np.ndarray, epoch_s) -> dict:
    labels = net.val_y[:, k]
    have = labels >= 0
    logits, labels = logits[have], labels[have]
    log_probs = log_softmax(logits)
    loss_sum, hits, count = net.sums[:, k]
    return {
        "phase": phase_name,
        "epoch": epoch,
        "loss": float(loss_sum / count) if count else None,
        "accuracy": float(hits / count) if count else None,
        "val_loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
        "val_accuracy": float((logits.argmax(axis=1) == labels).mean()),
        "val_balanced_accuracy": balanced_accuracy(logits.argmax(axis=1), labels),
        "epoch_s": epoch_s,
        "images_per_s": len(net.train_y) / epoch_s if epoch_s > 0 else None,
    }


def _task_result(task, paths, labels, logits) -> dict:
    have = labels >= 0
    probs = softmax(logits[have])
    labels = labels[have]
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((len(task.classes), len(task.classes)), int)
    for truth, guess in zip(labels, predicted, strict=True):
        confusion[truth, guess] += 1
    kept = [p for p, h in zip(paths, have, strict=True) if h]
    return {
        "classes": task.classes,
        "confusion": confusion.tolist(),
        "predictions": [
            {
                "path": str(path),
                "label": int(label),
                "predicted": int(guess),
                "probabilities": [round(float(p), 5) for p in row],
            }
            for path, label, guess, row in zip(kept, labels, predicted, probs, strict=True)
        ],
    }


def peak_memory_bytes() -> int:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _finish(run_id, config, store, groups, dataset, artefacts, stopped, started) -> dict:
    """Results per arm (each task's confusion matrix and predictions), weights, the cost
    and the summary."""
    networks = [n for g in groups for n in g]
    summary: dict = {"arms": {}, "stopped": stopped}
    per_arm: dict[str, dict] = {}
    for net in networks:
        if net.arm.head is None:
            continue
        name = net.arm.name
        arm = per_arm.setdefault(
            name, {"tasks": {}, "results": {}, "wall_s": 0.0, "forward": 0, "epochs": 0}
        )
        logits = net.last_logits
        if logits is None and not stopped:
            logits = net.arm.validation_logits(net.data)
            logits = logits if isinstance(logits, list) else [logits]
        for k, task in enumerate(net.tasks):
            rows = net.history.get(task.name, [])
            val = [r["val_accuracy"] for r in rows]
            bal = [r["val_balanced_accuracy"] for r in rows]
            arm["tasks"][task.name] = {
                "final_val_accuracy": val[-1] if val else None,
                "best_val_accuracy": max(val) if val else None,
                "final_val_balanced_accuracy": bal[-1] if bal else None,
                "best_val_balanced_accuracy": max(bal) if bal else None,
            }
            if logits is not None:
                arm["results"][task.name] = _task_result(
                    task, net.data.val_paths, net.val_y[:, k], logits[k]
                )
            arm["epochs"] = max(arm["epochs"], len(rows))
        arm["wall_s"] += net.arm.compute_s
        arm["forward"] += net.arm.forward_images
        folder = artefacts / name
        if config.hydra == "separate":
            folder = folder / net.tasks[0].name
        net.arm.save_weights(folder, net.tasks[0].classes, net.tasks)
        store.log_event(run_id, f"{net.label}: saved the trained weights")
    for name, arm in per_arm.items():
        if arm["results"]:
            first = next(iter(arm["results"].values()))
            store.save_result(run_id, name, {**first, "tasks": arm["results"]})
        tasks = arm["tasks"]
        summary["arms"][name] = {
            **{k: _mean(t[k] for t in tasks.values()) for k in _ACC_KEYS},
            "tasks": tasks,
            "epochs": arm["epochs"],
            "wall_s": round(arm["wall_s"], 2),
            "backbone_forward_images": arm["forward"],
            "mode": config.hydra,
        }
    wall_s = time.perf_counter() - started
    params = [n.arm.parameters() for n in networks if n.arm.head is not None]
    summary["cost"] = {
        "hydra": config.hydra,
        "networks": len(params),
        "wall_s": round(wall_s, 2),
        "backbone_forward_images": sum(n.arm.forward_images for n in networks),
        "parameters": sum(params),
        "model_bytes": 4 * sum(params),  # float32 weights of everything trained
        "peak_memory_bytes": peak_memory_bytes(),
    }
    summary["wall_s"] = round(wall_s, 2)
    summary.update(_data_facts(dataset, config))
    store.set_summary(run_id, summary)
    return summary


_ACC_KEYS = (
    "final_val_accuracy",
    "best_val_accuracy",
    "final_val_balanced_accuracy",
    "best_val_balanced_accuracy",
)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


# --- the Explain page's preset ------------------------------------------------------------

PRESET_DATASET = "chest_xray_pneumonia_tasks"
PRESET_NAME = "hydra"


def preset_configs(train_per_class: int | None = 100) -> list[ExperimentConfig]:
    """``shared`` against ``separate`` on the chest X-rays' two tasks (160 px, both arms,
    3 + 1 epochs; ``train_per_class`` images per combination of labels, so a room sees it
    end within minutes): the two runs of the HydraNet preset, shared first."""
    base = {
        "dataset": PRESET_DATASET,
        "train_per_class": train_per_class,
        "image_size": 160,
        "phase1": {"epochs": 3},
        "phase2": {"epochs": 1},
    }
    return [ExperimentConfig.from_dict({**base, "hydra": mode}) for mode in ("shared", "separate")]
