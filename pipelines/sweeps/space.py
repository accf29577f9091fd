"""A sweep's search space and its whole spec, validated in one place.

A **sweep** explores a space of experiment configs; each point it evaluates is a **trial**,
and each trial is an ordinary run. The space is a list of :class:`Param` over the config's
dotted keys (the same names as ``--set`` and the dashboard's form); the rest of the config
is ``fixed``. :class:`SweepSpec` holds it all, JSON-serialisable.

Three ways to write a parameter (:func:`parse_param`; the CLI's ``--param``):

* ``key=low:high`` - a range: integers for an int key (``phase2.unfreeze_blocks=1:6``,
  both ends included), floats for a float key (``dropout=0.1:0.5``);
* ``key=low:high:log`` - the same on a log scale (``phase1.lr=1e-4:1e-2:log``; both ends
  above 0);
* ``key=a,b,c`` - a list of values (``train_per_class=10,50,all``: ``all``/``null`` is
  every image; a list-valued key such as ``arms`` joins its items with ``+``:
  ``arms=imagenet+random,imagenet``).

:meth:`SweepSpec.validate` is the one place a spec is checked; every refusal is one
:class:`UserError` naming the problem and what to do: an empty space, an unknown key, a key
given twice, low above high, a bound at or below 0 on a log scale, a float range on a grid,
a grid of more than :data:`MAX_GRID` points, a trial budget below 1 (or above the grid),
an unknown sampler, pruner or objective, ``gap`` without both arms in every trial, and a
value the experiment config refuses (checked for every grid point, and for each bound and
choice of a sampled space).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.errors import UserError
from pipelines.training.config import ARMS, ExperimentConfig, keys

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("median", "none")
OBJECTIVES = ("best", "final", "gap")
KINDS = ("int", "float", "categorical")
MAX_GRID = 1000
DEFAULT_TRIALS = 20  # the budget of a random or TPE sweep when none is given
ALL_WORDS = ("all", "null", "none")  # a list value meaning null (train_per_class: every image)


@dataclass(frozen=True)
class Param:
    """One dimension of the space: ``key`` (a dotted config key) and its values.

    ``kind`` ``"int"``/``"float"``: the range ``low..high`` (both included), on a log scale
    if ``log``; ``"categorical"``: ``choices``, already typed for the key (``None`` for
    null; a list-valued key's choice as one comma-joined string, ``"imagenet,random"``).
    """

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def values(self) -> list[Any]:
        """Every value on a grid: the choices, or each integer of an int range; a float
        range has no grid (:class:`UserError`)."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        raise UserError(
            f"{self.key}: a float range has no grid; give a list of values "
            f"(e.g. {self.key}={_example_list(self)}) or use --sampler random or tpe"
        )

    def bounds(self) -> list[Any]:
        """The values the config must accept: both ends of a range, or every choice."""
        if self.kind == "categorical":
            return list(self.choices)
        return [self.low, self.high]

    def text(self) -> str:
        """The ``--param`` form of this parameter (what :func:`parse_param` reads)."""
        if self.kind == "categorical":
            return f"{self.key}=" + ",".join(_choice_text(c) for c in self.choices)
        return f"{self.key}={self.low:g}:{self.high:g}" + (":log" if self.log else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "choices": list(self.choices),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Param:
        if not isinstance(data, dict) or "key" not in data or "kind" not in data:
            raise UserError(f"a parameter needs at least 'key' and 'kind', got {data!r}")
        if data["kind"] not in KINDS:
            raise UserError(
                f"{data['key']}: kind {data['kind']!r} is not one of {', '.join(KINDS)}"
            )
        return _typed(
            cls(
                key=str(data["key"]),
                kind=data["kind"],
                low=data.get("low"),
                high=data.get("high"),
                log=bool(data.get("log", False)),
                choices=tuple(data.get("choices") or ()),
            )
        )


def parse_param(text: str) -> Param:
    """``key=low:high``, ``key=low:high:log`` or ``key=a,b,c`` as a typed :class:`Param`
    (see the module docstring); :class:`UserError` naming what is wrong."""
    if "=" not in str(text):
        raise UserError(
            f"--param expects key=low:high, key=low:high:log or key=a,b,c, got {text!r}"
        )
    key, _, value = str(text).partition("=")
    key, value = key.strip(), value.strip()
    _field_type(key)  # an unknown key is refused before its values are read
    if not value:
        raise UserError(f"{key}: give a range low:high or a list a,b,c after '='")
    if ":" in value and "," not in value:
        parts = [p.strip() for p in value.split(":")]
        log = len(parts) == 3 and parts[2].lower() == "log"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise UserError(f"{key}: a range is low:high or low:high:log, not {value!r}")
        try:
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise UserError(f"{key}: the range {value!r} needs two numbers, low:high") from None
        return _typed(Param(key, "float", low, high, log))
    choices = [c.strip() for c in value.split(",")]
    if any(not c for c in choices):
        raise UserError(f"{key}: the list {value!r} has an empty value; separate values by ','")
    return _typed(Param(key, "categorical", choices=tuple(choices)))


@dataclass(frozen=True)
class SweepSpec:
    """Everything that defines a sweep (JSON-serialisable: :meth:`to_dict`/:meth:`from_dict`).

    ``params``: the space; ``fixed``: the rest of the config, as ``--set``-style dotted
    overrides (``{"phase1.epochs": 3}``) or a whole config dict (nested ``phase1``/``phase2``
    dicts), applied to the default :class:`ExperimentConfig` (a key also in ``params`` is
    varied); ``sampler``: grid, random or tpe; ``trials``: the budget (None: the whole grid,
    or :data:`DEFAULT_TRIALS` for random/tpe); ``objective``: the ImageNet arm's best
    (default) or final validation accuracy, or the gap ImageNet - random of the best ones
    (``best``/``final`` read the random arm in a trial that trains only that arm);
    ``pruner``: median or none, on each epoch's objective; ``seed``: the sampler's seed.
    """

    params: tuple[Param, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    sampler: str = "tpe"
    trials: int | None = None
    objective: str = "best"
    pruner: str = "median"
    seed: int = 0

    # --- checks ---------------------------------------------------------------------------

    def validate(self) -> SweepSpec:
        """Refuse a spec that can't run (see the module docstring); return it with every
        parameter typed for its key (``Param("train_per_class", "categorical",
        choices=("10", "all"))`` becomes ``choices=(10, None)``): the spec to run."""
        if self.sampler not in SAMPLERS:
            raise UserError(f"sampler: {self.sampler!r} is not one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise UserError(f"pruner: {self.pruner!r} is not one of {', '.join(PRUNERS)}")
        if self.objective not in OBJECTIVES:
            raise UserError(
                f"objective: {self.objective!r} is not one of {', '.join(OBJECTIVES)} "
                "(best or final ImageNet validation accuracy, or the gap ImageNet - random)"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"seed: must be a whole number 0 or more, not {self.seed!r}")
        if not self.params:
            raise UserError(
                "the search space is empty: give at least one --param, "
                "e.g. --param phase1.lr=1e-4:1e-2:log"
            )
        seen = set()
        for p in self.params:
            if p.key in seen:
                raise UserError(f"{p.key}: given twice in the space; give each key once")
            seen.add(p.key)
        typed = replace(self, params=tuple(_typed(p) for p in self.params))
        if self.trials is not None and (
            isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1
        ):
            raise UserError(f"trials: the budget must be at least 1, not {self.trials!r}")
        base = self.base_config()
        if self.sampler == "grid":
            size = typed._grid_size_checked()
            if self.trials is not None and self.trials > size:
                raise UserError(
                    f"trials: a grid of {size} points runs each once, so at most {size} "
                    f"trials, not {self.trials}; leave the budget out for the whole grid"
                )
            points: Iterable[dict[str, Any]] = typed.grid_points()
        else:
            points = typed._corner_points()
        for point in points:
            config = _config_at(base, point)
            if self.objective == "gap" and set(config.arms) != set(ARMS):
                where = "" if "arms" not in point else f" (arms={_choice_text(point['arms'])})"
                raise UserError(
                    f"objective gap needs both arms (imagenet and random) in every trial{where}; "
                    "set arms=imagenet,random or choose --objective best"
                )
        return typed

    def _grid_size_checked(self) -> int:
        size = 1
        for p in self.params:
            size *= len(p.values())
        if size > MAX_GRID:
            raise UserError(
                f"the grid has {size} points, more than {MAX_GRID}; narrow the ranges or "
                "shorten the lists, or use --sampler random or tpe with a --trials budget"
            )
        return size

    def grid_size(self) -> int | None:
        """How many points the grid has (every combination), or None where a float range
        has no grid. Not capped: compare with :data:`MAX_GRID`."""
        size = 1
        for p in self.params:
            with contextlib.suppress(UserError):  # an untyped Param: count it as given
                p = _typed(p)
            if p.kind == "float":
                return None
            size *= len(p.values())
        return size

    def budget(self) -> int:
        """How many trials the sweep runs: ``trials``, else the whole grid (grid) or
        :data:`DEFAULT_TRIALS`."""
        if self.trials is not None:
            return self.trials
        if self.sampler == "grid":
            return self.grid_size() or 0
        return DEFAULT_TRIALS

    # --- configs ----------------------------------------------------------------------------

    def fine_tuning_depths(self) -> set[int]:
        """Every ``phase2.unfreeze_blocks`` a trial may fine-tune at (the axis' values, or
        the fixed config's; every block, ``None``, is left out), so a worker's feature pass
        can keep those boundaries (:func:`pipelines.training.boundary_cache.keep_depths`)."""
        axis = next((p for p in self.params if p.key == "phase2.unfreeze_blocks"), None)
        values = axis.values() if axis else [self.base_config().phase2.unfreeze_blocks]
        return {int(v) for v in values if v is not None and int(v) > 0}

    def base_config(self) -> ExperimentConfig:
        """The fixed part as a validated config (:class:`UserError` naming a bad key)."""
        if not isinstance(self.fixed, dict):
            raise UserError("fixed: must be a dict of config keys and values")
        return ExperimentConfig.from_dict(dict(self.fixed))

    def config_for(self, point: dict[str, Any]) -> ExperimentConfig:
        """The experiment config of one trial: the fixed part with ``point``'s values
        (``{dotted key: value}``) set; :class:`UserError` if the config refuses it. A
        point with ``phase2.unfreeze_blocks`` 0 trains no fine-tuning phase
        (``phase2.epochs`` 0), so a depth axis can start at 0 as ``0:6``."""
        return _config_at(self.base_config(), point)

    def grid_points(self) -> Iterator[dict[str, Any]]:
        """Every point of the grid, in order: the first parameter slowest, values as
        listed (ranges ascending)."""
        keys_ = [p.key for p in self.params]
        for combo in itertools.product(*(p.values() for p in self.params)):
            yield dict(zip(keys_, combo, strict=True))

    def _corner_points(self) -> Iterator[dict[str, Any]]:
        """For a sampled space: each parameter's bounds or choices, the others at their first."""
        first = {p.key: p.bounds()[0] for p in self.params}
        yield dict(first)
        for p in self.params:
            for value in p.bounds()[1:]:
                yield {**first, p.key: value}

    # --- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": [p.to_dict() for p in self.params],
            "fixed": dict(self.fixed),
            "sampler": self.sampler,
            "trials": self.trials,
            "objective": self.objective,
            "pruner": self.pruner,
            "seed": self.seed,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        """From :meth:`to_dict`'s shape, or a space file's (``params`` may also be a
        ``{key: "low:high" | [values] | {low, high, log}}`` mapping). Not validated."""
        if not isinstance(data, dict):
            raise UserError("a sweep spec must be an object with at least 'params'")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(
                f"unknown sweep setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        raw = data.get("params") or []
        if isinstance(raw, dict):
            params = tuple(_param_from_file(k, v) for k, v in raw.items())
        elif isinstance(raw, list):
            params = tuple(
                parse_param(p) if isinstance(p, str) else Param.from_dict(p) for p in raw
            )
        else:
            raise UserError("params: give a list of parameters or a mapping key -> values")
        fixed = data.get("fixed") or {}
        if isinstance(fixed, list):  # ["key=value", ...], as --set takes them
            fixed = dict(_assignment(item) for item in fixed)
        return cls(
            params=params,
            fixed=dict(fixed) if isinstance(fixed, dict) else fixed,
            sampler=data.get("sampler", "tpe"),
            trials=data.get("trials"),
            objective=data.get("objective", "best"),
            pruner=data.get("pruner", "median"),
            seed=data.get("seed", 0),
        )


def load_space(path: str | Path) -> SweepSpec:
    """A spec from a JSON or TOML file (``.toml``: TOML, else JSON), not yet validated: the
    CLI's flags may still change it. Shape: :meth:`SweepSpec.from_dict`, e.g.
    ``{"params": {"phase1.lr": "1e-4:1e-2:log", "train_per_class": [10, 50, "all"]},
    "fixed": {"phase1.epochs": 3}, "sampler": "tpe", "trials": 12}``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"space file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"space file {str(path)!r} can't be read: {e}") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise UserError(f"space file {str(path)!r} is not valid {kind}: {e}") from None
    return SweepSpec.from_dict(data)


def point_text(point: dict[str, Any]) -> str:
    """``key=value, ...`` for messages and logs."""
    return ", ".join(f"{k}={_choice_text(v)}" for k, v in point.items())


# --- internals ------------------------------------------------------------------------------


def _field_type(key: str) -> str:
    """The config field's annotation (``"int"``, ``"float | None"``, ...) of a dotted key."""
    config = ExperimentConfig()
    target, name = config, key
    if "." in key:
        head, name = key.split(".", 1)
        target = getattr(config, head, None) if head in ("phase1", "phase2") else None
    known = {f.name: f for f in fields(target)} if target is not None else {}
    if name not in known or is_dataclass(getattr(target, name)):
        raise UserError(f"unknown config key {key!r} in the space; known keys: {', '.join(keys())}")
    return str(known[name].type).replace(" ", "")


def _typed(p: Param) -> Param:
    """``p`` checked against its key's type, ranges as int/float and choices typed; or
    :class:`UserError`."""
    kind = _field_type(p.key)
    if p.kind == "categorical":
        if not p.choices:
            raise UserError(f"{p.key}: give at least one value")
        typed = tuple(_typed_choice(p.key, kind, c) for c in p.choices)
        if len(set(map(json.dumps, typed))) != len(typed):
            raise UserError(f"{p.key}: a value is listed twice; list each value once")
        return Param(p.key, "categorical", choices=typed)
    if not kind.startswith(("int", "float")):
        raise UserError(
            f"{p.key}: a range low:high needs a number key; give a list of values instead "
            f"({p.key}=a,b,c)"
        )
    try:
        low, high = float(p.low), float(p.high)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"{p.key}: a range needs numbers low and high") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise UserError(f"{p.key}: the range's ends must be finite numbers")
    if low > high:
        raise UserError(f"{p.key}: low {low:g} is above high {high:g}; give low:high")
    if p.log and low <= 0:
        raise UserError(
            f"{p.key}: a log scale needs both ends above 0 (got low {low:g}); "
            "drop ':log' or raise the lower end"
        )
    if kind.startswith("int"):
        if not (low.is_integer() and high.is_integer()):
            raise UserError(f"{p.key}: takes whole numbers; give a range like 1:6")
        return Param(p.key, "int", int(low), int(high), p.log)
    return Param(p.key, "float", low, high, p.log)


def _typed_choice(key: str, kind: str, value: Any) -> Any:
    """One list value as the key's type (JSON-able: a list-valued key's as a string)."""
    if isinstance(value, str) and value.strip().lower() in ALL_WORDS and "None" in kind:
        return None
    if kind.startswith("list"):
        items = value if isinstance(value, list) else str(value).replace("+", ",").split(",")
        return ",".join(str(i).strip() for i in items if str(i).strip())
    probe = ExperimentConfig()
    try:
        probe.set(key, value)
    except UserError as e:
        raise UserError(f"{e}; in the space's list for {key}") from None
    target = probe
    name = key
    if "." in key:
        head, name = key.split(".", 1)
        target = getattr(probe, head)
    return getattr(target, name)


def _config_at(base: ExperimentConfig, point: dict[str, Any]) -> ExperimentConfig:
    config = ExperimentConfig.from_dict(base.to_dict())
    for key, value in point.items():
        config.set(key, value)
    if point.get("phase2.unfreeze_blocks") == 0:
        # Depth 0 of a freeze-depth axis is feature extraction only: no fine-tuning phase.
        config.set("phase2.epochs", 0)
    try:
        return config.validate()
    except UserError as e:
        raise UserError(
            f"the trial {point_text(point)} is refused: {e}; narrow the space so every "
            "trial is a valid experiment"
        ) from None


def _param_from_file(key: str, value: Any) -> Param:
    if isinstance(value, str):
        return parse_param(f"{key}={value}")
    if isinstance(value, list):
        return _typed(Param(key, "categorical", choices=tuple(value)))
    if isinstance(value, dict):
        kind = "float" if "low" in value else "categorical"
        return Param.from_dict({"key": key, "kind": value.get("kind", kind), **value})
    return _typed(Param(key, "categorical", choices=(value,)))


def _assignment(item: str) -> tuple[str, str]:
    if not isinstance(item, str) or "=" not in item:
        raise UserError(f"fixed: expects key=value, got {item!r}")
    key, _, value = item.partition("=")
    return key.strip(), value.strip()


def _choice_text(value: Any) -> str:
    if value is None:
        return "all"
    if isinstance(value, str) and "," in value:
        return value.replace(",", "+")
    return f"{value:g}" if isinstance(value, float) else str(value)


def _example_list(p: Param) -> str:
    low, high = float(p.low or 0), float(p.high or 0)
    if p.log and low > 0:
        mid = math.sqrt(low * high)
        return ",".join(f"{v:g}" for v in (low, mid, high))
    return ",".join(f"{v:g}" for v in (low, (low + high) / 2, high))
