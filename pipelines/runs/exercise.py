"""A group exercise: the seminar's hands-on, groups of the audience training on one server.

The presenter opens an exercise with a name and its :class:`Rules`; groups join it with a
name and start runs within the rules; the presenter closes it. Everything is in the run
store (tables ``exercises`` and ``exercise_groups``; a group's run names its exercise and
group in ``runs.exercise_id`` and ``runs.group_name``), so any process sees the same
exercise, and a restarted server finds it again.

Contract:

* **Rules** (:class:`Rules`): ``seminar`` mode is the seminar's comparison: every setting
  is fixed to the exercise's ``base`` config, and a group trains one arm only, by its
  side: group **A** the ImageNet arm, group **B** the random arm. ``free`` mode: each group
  chooses, within limits: at most ``max_epochs`` epochs (both phases together), at most
  ``max_train_per_class`` images per class, a backbone of ``backbones``; the data set is
  the exercise's for every group. :meth:`Rules.check` refuses a choice outside them with a
  :class:`UserError` naming the field and the limit.
* **One exercise open at a time** (:func:`open_exercise` refuses a second). :func:`current`
  is the open one, else the newest closed one (the board keeps showing its results).
* **Names** (:func:`check_name`, groups and exercises): trimmed, 1 to ``NAME_MAX``
  characters, no line breaks or control characters, no markup characters (``< > [ ] * _``
  and the like: names are shown in Markdown, tables and charts); a group name is unique
  within its exercise, compared without regard to case (:func:`name_key`). Each refusal is
  its own message.
* **One queued or running run per group** (:func:`start_run`): checked and recorded in one
  store transaction, so two sessions of a group pressing Start at once get one run. With
  the job queue's first-in-first-out order this makes the queue fair: a group's next run
  can only be queued once its last one has ended, behind every other group's waiting run,
  so with one run at a time the groups take turns (tests/test_exercise.py shows it).
* **Closing** (:func:`close`) cancels the exercise's queued runs: each becomes ``stopped``
  with the reason in its ``error`` and log, its rows kept; running runs finish. A run a
  group starts while the exercise closes is cancelled too: the close and the start are
  transactions, and whichever comes second sees the other.
* A group that joined gets a short ``code`` (never shown on the board): :func:`rejoin` with
  name and code continues as that group from another device or after a reload.
* :func:`stop_group_run` asks a group's active run to stop (the presenter's control).
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.errors import UserError
from pipelines.runs import lifecycle
from pipelines.runs.run import Run
from pipelines.training.config import MAX_EPOCHS, ExperimentConfig

if TYPE_CHECKING:
    from pipelines.runs.jobs import JobManager
    from pipelines.runs.store import RunStore

NAME_MAX = 40
MAX_GROUPS = 200  # a cap against a script joining forever; a seminar has tens
MODES = ("seminar", "free")
SIDES = {"A": "imagenet", "B": "random"}  # the seminar's two sides and their arm
# Characters that Markdown, Streamlit's directives (:red[...], :material/x:), LaTeX ($) or
# HTML would read as markup; refused in names.
MARKUP = frozenset("<>[](){}*_~`#|\\$^=:!@%&")


# --- names ---------------------------------------------------------------------------------


def check_name(text: Any, what: str = "group name") -> str:
    """``text`` trimmed (inner runs of spaces made one), or a :class:`UserError` saying what
    is wrong with it: empty, longer than ``NAME_MAX``, a line break or control character,
    or markup."""
    name = " ".join(str(text if text is not None else "").split())
    if not name:
        raise UserError(f"{what}: empty; type a name (letters, digits, spaces)")
    if len(name) > NAME_MAX:
        raise UserError(
            f"{what}: too long ({len(name)} characters); use at most {NAME_MAX} characters"
        )
    raw = str(text)
    if any(unicodedata.category(c)[0] == "C" for c in raw if c not in " "):
        raise UserError(
            f"{what}: contains a line break or control character; use one line of letters, "
            "digits and spaces"
        )
    if found := sorted({c for c in name if c in MARKUP}):
        shown = " ".join(found)
        raise UserError(
            f"{what}: no markup please ({shown} not allowed); use letters, digits, spaces "
            "and - . , ' ?"
        )
    return name


def name_key(name: str) -> str:
    """What two names must differ in to be two names: case and Unicode forms ignored."""
    return unicodedata.normalize("NFKC", name).casefold()


# --- rules ---------------------------------------------------------------------------------


def _flat(config: ExperimentConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.to_dict().items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class Rules:
    """What the groups of an exercise may choose (see the module's docstring).

    ``base`` is an :class:`ExperimentConfig` as a dict: in ``seminar`` mode every group's
    settings, in ``free`` mode the data set and the settings a group starts from.
    """

    mode: str = "seminar"
    base: dict[str, Any] = field(default_factory=lambda: ExperimentConfig().to_dict())
    max_epochs: int | None = None
    max_train_per_class: int | None = None
    backbones: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rules:
        known = {"mode", "base", "max_epochs", "max_train_per_class", "backbones"}
        if unknown := sorted(set(data) - known):
            raise UserError(f"exercise rules: unknown field {unknown[0]!r}")
        data = dict(data)
        data["backbones"] = tuple(data.get("backbones") or ())
        return cls(**data).validate()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["backbones"] = list(self.backbones)
        return out

    def base_config(self) -> ExperimentConfig:
        return ExperimentConfig.from_dict(dict(self.base))

    def allowed_backbones(self) -> tuple[str, ...]:
        return self.backbones or (str(self.base.get("backbone", "")),)

    def validate(self) -> Rules:
        """Refuse rules that make no sense, naming the field; return self."""
        if self.mode not in MODES:
            raise UserError(f"exercise mode: {self.mode!r} is not one of {', '.join(MODES)}")
        base = self.base_config()  # names a bad field itself
        if self.mode == "free":
            if self.max_epochs is not None and not 1 <= int(self.max_epochs) <= MAX_EPOCHS:
                raise UserError(f"max epochs: must be between 1 and {MAX_EPOCHS}")
            if self.max_train_per_class is not None and int(self.max_train_per_class) < 1:
                raise UserError("max images per class: must be at least 1 (or no limit)")
            if any(not str(b).strip() for b in self.backbones):
                raise UserError("allowed backbones: an empty name; remove it")
        if self.mode == "free" and base.backbone not in self.allowed_backbones():
            raise UserError(
                f"allowed backbones: the exercise's own backbone {base.backbone} must be one "
                "of them"
            )
        return self

    def config_for(self, side: str | None) -> ExperimentConfig:
        """The settings a group starts from: in ``seminar`` mode the base with the side's
        arm only; in ``free`` mode the base brought within the limits."""
        config = self.base_config()
        if self.mode == "seminar":
            config.arms = [SIDES[_side(side)]]
            return config.validate()
        allowed = self.allowed_backbones()
        if config.backbone not in allowed:
            config.backbone = allowed[0]
        if self.max_train_per_class is not None:
            tpc = config.train_per_class
            config.train_per_class = min(tpc or self.max_train_per_class, self.max_train_per_class)
        if self.max_epochs is not None:
            over = config.phase1.epochs + config.phase2.epochs - self.max_epochs
            cut = min(over, config.phase2.epochs) if over > 0 else 0
            config.phase2.epochs -= cut
            config.phase1.epochs -= max(0, over - cut)
        return config.validate()

    def check(self, config: ExperimentConfig, side: str | None) -> ExperimentConfig:
        """``config`` if a group on ``side`` may start it, else :class:`UserError` naming the
        field outside the rules and what is allowed."""
        config = config.validate()
        if self.mode == "seminar":
            expected = _flat(self.config_for(side))
            for key, value in _flat(config).items():
                if value != expected.get(key):
                    raise UserError(
                        f"{key}: fixed at {_shown(expected.get(key))} in this exercise (you "
                        f"chose {_shown(value)}); groups differ only in their arm"
                    )
            return config
        dataset = self.base.get("dataset")
        if config.dataset != dataset:
            raise UserError(f"dataset: this exercise uses {dataset} for every group")
        allowed = self.allowed_backbones()
        if config.backbone not in allowed:
            raise UserError(
                f"backbone: {config.backbone} is not allowed in this exercise; choose "
                f"{' or '.join(allowed)}"
            )
        epochs = config.phase1.epochs + config.phase2.epochs
        if self.max_epochs is not None and epochs > self.max_epochs:
            raise UserError(
                f"phase1.epochs + phase2.epochs: {epochs} epochs is above this exercise's "
                f"limit of {self.max_epochs}; train at most {self.max_epochs} epochs"
            )
        limit = self.max_train_per_class
        if limit is not None and (config.train_per_class or limit + 1) > limit:
            chosen = config.train_per_class or "all"
            raise UserError(
                f"train_per_class: at most {limit} images per class in this exercise (you "
                f"chose {chosen})"
            )
        return config


def _side(side: str | None) -> str:
    if side not in SIDES:
        raise UserError(f"side: choose A (ImageNet weights) or B (random weights), not {side!r}")
    return side


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "all" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


# --- exercises and groups ------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    exercise_id: str
    name: str
    rules: Rules
    opened: float
    closed: float | None = None

    @property
    def is_open(self) -> bool:
        return self.closed is None


@dataclass(frozen=True)
class Group:
    name: str
    side: str | None  # "A" or "B" in seminar mode, else None
    joined: float
    code: str | None = field(default=None, repr=False)  # to continue as this group


def _exercise(row: dict[str, Any]) -> Exercise:
    return Exercise(
        exercise_id=row["exercise_id"],
        name=row["name"],
        rules=Rules.from_dict(json.loads(row["rules"])),
        opened=row["opened"],
        closed=row["closed"],
    )


def exercises(store: RunStore) -> list[Exercise]:
    """Every exercise, newest first."""
    return [_exercise(r) for r in store.exercise_rows()]


def current(store: RunStore) -> Exercise | None:
    """The open exercise, else the newest closed one, else None."""
    every = exercises(store)
    return next((e for e in every if e.is_open), every[0] if every else None)


def get(store: RunStore, exercise_id: str) -> Exercise:
    for exercise in exercises(store):
        if exercise.exercise_id == exercise_id:
            return exercise
    raise UserError(f"no exercise with id {exercise_id!r}")


def _require_open(store: RunStore, exercise_id: str) -> Exercise:
    exercise = get(store, exercise_id)
    if not exercise.is_open:
        raise UserError(f"the exercise “{exercise.name}” is closed; no new groups or runs")
    return exercise


def open_exercise(store: RunStore, name: str, rules: Rules) -> Exercise:
    """Open a new exercise; refused while another one is open."""
    name = check_name(name, "exercise name")
    rules = rules.validate()
    exercise_id = f"ex-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    with store.transaction() as c:
        if still := next((e for e in exercises(store) if e.is_open), None):
            raise UserError(f"the exercise “{still.name}” is still open; close it first")
        c.execute(
            "INSERT INTO exercises (exercise_id, name, rules, opened) VALUES (?, ?, ?, ?)",
            (exercise_id, name, json.dumps(rules.to_dict()), time.time()),
        )
    return get(store, exercise_id)


def groups(store: RunStore, exercise_id: str) -> list[Group]:
    """The groups of the exercise in the order they joined."""
    rows = store.exercise_group_rows(exercise_id)
    return [Group(r["name"], r["side"], r["joined"], r["code"]) for r in rows]


def group(store: RunStore, exercise_id: str, name: str) -> Group:
    """The joined group called ``name`` (any case), else :class:`UserError`."""
    key = name_key(str(name))
    for g in groups(store, exercise_id):
        if name_key(g.name) == key:
            return g
    raise UserError(f"no group “{name}” in this exercise; join first")


def join(store: RunStore, exercise_id: str, name: str, side: str | None = None) -> Group:
    """Add a group; in ``seminar`` mode on ``side`` (``A``/``B``; None: the side with fewer
    groups). Refuses a bad or taken name, and a closed exercise."""
    name = check_name(name)
    with store.transaction() as c:
        exercise = _require_open(store, exercise_id)
        present = groups(store, exercise_id)
        if any(name_key(g.name) == name_key(name) for g in present):
            raise UserError(f"group name: “{name}” is taken in this exercise; choose another")
        if len(present) >= MAX_GROUPS:
            raise UserError(f"this exercise is full ({MAX_GROUPS} groups)")
        if exercise.rules.mode == "seminar":
            if side is None:
                counts = {s: sum(g.side == s for g in present) for s in SIDES}
                side = min(SIDES, key=lambda s: counts[s])
            side = _side(side)
        else:
            side = None
        c.execute(
            "INSERT INTO exercise_groups (exercise_id, name, name_key, side, joined, code)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (exercise_id, name, name_key(name), side, time.time(), secrets.token_hex(3)),
        )
    return group(store, exercise_id, name)


def rejoin(store: RunStore, exercise_id: str, name: str, code: str) -> Group:
    """Continue as a group that joined earlier (another device, a reloaded page): its
    ``code`` (shown to the group when it joined) must match; compared in constant time."""
    _require_open(store, exercise_id)
    member = group(store, exercise_id, check_name(name))
    given = str(code or "").strip().lower().encode()
    if not member.code or not hmac.compare_digest(given, member.code.encode()):
        raise UserError(
            f"group “{member.name}”: wrong code; the group's code was shown when it joined"
        )
    return member


# --- runs ----------------------------------------------------------------------------------


def active_run(store: RunStore, exercise_id: str, name: str) -> Run | None:
    """The group's queued or running run, if any (as stored: reap first to see dead ones)."""
    for run in store.runs_of_exercise(exercise_id):
        if run.group_name == name and run.active:
            return run
    return None


def start_run(jobs: JobManager, exercise_id: str, name: str, config: ExperimentConfig) -> str:
    """Queue ``config`` as group ``name``'s run (see the module's docstring); its id."""
    store = jobs.store
    exercise = _require_open(store, exercise_id)
    member = group(store, exercise_id, name)
    config = exercise.rules.check(config, member.side)

    def create(checked: ExperimentConfig) -> str:
        with store.transaction():
            _require_open(store, exercise_id)
            if run := active_run(store, exercise_id, member.name):
                raise UserError(
                    f"group “{member.name}” already has a run {run.status} ({run.run_id}); "
                    "wait until it has finished, or stop it"
                )
            return store.create_run(checked, exercise_id=exercise_id, group_name=member.name)

    return jobs.start(config, create=create)


def stop_group_run(store: RunStore, exercise_id: str, name: str) -> str | None:
    """Ask the group's active run to stop (one still waiting for a busy pool stops at
    once); its id, or None when the group has none."""
    run = active_run(store, exercise_id, group(store, exercise_id, name).name)
    if run is None:
        return None
    lifecycle.request_stop(store, run.run_id)
    lifecycle.drop_unclaimed(store, run.run_id)
    return run.run_id


def cancel_reason(exercise: Exercise) -> str:
    return (
        f"cancelled: the exercise “{exercise.name}” was closed before this run started; "
        "its settings are kept"
    )


def close(store: RunStore, exercise_id: str) -> list[str]:
    """Close the exercise and cancel its queued runs (``stopped``, the reason in ``error``
    and the log, rows kept); running runs finish. Returns the ids cancelled."""
    with store.transaction() as c:
        exercise = get(store, exercise_id)
        now = time.time()
        if exercise.is_open:
            c.execute("UPDATE exercises SET closed = ? WHERE exercise_id = ?", (now, exercise_id))
        reason = cancel_reason(exercise)
        queued = [r.run_id for r in store.runs_of_exercise(exercise_id) if r.status == "queued"]
        for run_id in queued:
            c.execute(
                "UPDATE runs SET status = 'stopped', error = ?, updated = ?"
                " WHERE run_id = ? AND status = 'queued'",
                (reason, now, run_id),
            )
    for run_id in queued:
        store.log_event(run_id, reason)
    return queued
