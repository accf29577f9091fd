"""The Sweep page's setup: which config keys vary and how, the sampler, objective, pruner,
budget and seed, the number of trials with an estimate of the time, presets, Start.

The fixed part is the Setup form's experiment (the same Session State, initialised with
the defaults where Setup has not been opened), so every key not varied is what Setup
shows. Each sweepable key has a row: its name and tooltip as in Setup, a mode (fixed,
range, list) and the control for that mode (see :mod:`dashboard.sweep_form`). Every
refusal - from the spec (:meth:`SweepSpec.validate`) or from a trial's config against the
data set and the backbone's blocks - is shown as one message and keeps Start disabled.
Start runs in a callback; its refusal lands in ``sweep_start_error`` and is shown here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from dashboard import form, state
from dashboard import sweep_form as sweeps
from dashboard.components.setup_form import started
from dashboard.form import ExperimentConfig as Config
from dashboard.i18n import labels, t

KEEP = {"persist_state": "session"}
# The keys a seminar sweeps most: rows of their own; the rest under "More keys".
MAIN_KEYS = (
    "train_per_class",
    "arms",
    "phase1.lr",
    "phase2.lr",
    "phase2.unfreeze_blocks",
    "reuse_blocks",
    "phase1.epochs",
    "phase2.epochs",
)
MAX_CHECKED_POINTS = 200  # trials checked against the data and blocks while typing


def render() -> None:
    """Draw the form; Start switches the page to the new sweep's live view."""
    ids = [b["id"] for b in state.catalogue()]
    fixed = _fixed_config(ids)
    blocks = _block_count(fixed)
    dims = sweeps.dimensions(blocks, ids, _datasets(fixed))
    for key, value in sweeps.default_values(dims, fixed or Config()).items():
        st.session_state.setdefault(key, value)
    _presets(dims, fixed)
    _fixed_summary(fixed)
    by_key = {d.key: d for d in dims}
    st.markdown(f"**{t('sweep.space')}**", help=t("sweep.space.help"))
    for key in MAIN_KEYS:
        _row(by_key[key], fixed)
    with st.expander(t("sweep.more_keys")):
        for dim in dims:
            if dim.key not in MAIN_KEYS:
                _row(dim, fixed)
    st.divider()
    _settings()
    _action_bar(dims, fixed, blocks)


# --- the fixed part -------------------------------------------------------------------------


def _fixed_config(ids: list[str]) -> Config | None:
    """Setup's config (its widgets' Session State, defaults where never set), or None
    when Setup shows a problem (shown here too)."""
    for key, value in form.widget_values(Config(), ids).items():
        st.session_state.setdefault(key, value)
    config, problem = state.attempt(form.config_from_values, st.session_state)
    if problem is not None:
        st.session_state["sweep_fixed_problem"] = problem
    else:
        st.session_state.pop("sweep_fixed_problem", None)
    return config


def _block_count(fixed: Config | None) -> int | None:
    if fixed is None:
        return None
    blocks, _ = state.attempt(state.blocks_for, fixed.backbone)
    if not blocks:
        return None
    return fixed.reuse_blocks or len(blocks)


def _datasets(fixed: Config | None) -> list[str]:
    names = list(form.NAMED_SOURCES)
    if fixed is not None and fixed.dataset not in names:
        names.append(fixed.dataset)
    return names


def _fixed_summary(fixed: Config | None) -> None:
    with st.container(border=True):
        left, right = st.columns([4, 1], vertical_alignment="center")
        if fixed is None:
            left.warning(
                t("sweep.fixed_problem", problem=st.session_state.get("sweep_fixed_problem"))
            )
        else:
            left.markdown(
                t(
                    "sweep.fixed",
                    dataset=fixed.dataset,
                    backbone=fixed.backbone,
                    size=fixed.image_size or state.native_size(fixed.backbone) or "?",
                    images=_value_text("train_per_class", fixed.train_per_class),
                    arms=" + ".join(t(f"arm.{a}") for a in fixed.arms),
                    p1=fixed.phase1.epochs,
                    p2=fixed.phase2.epochs,
                )
            )
        if right.button(t("sweep.edit_setup"), icon=":material/tune:", width="stretch"):
            st.session_state["view"] = "setup"
            st.switch_page("views/experiment.py")


def _apply_preset(name: str, dims: list, fixed: Config | None) -> None:
    for key, value in sweeps.preset_values(name, dims, fixed or Config()).items():
        st.session_state[key] = value
    st.session_state["sweep_preset_applied"] = name
    st.session_state.pop("sweep_start_error", None)


def _presets(dims: list, fixed: Config | None) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        st.markdown(f"**{t('presets.label')}**", help=t("sweep.presets.help"))
        for name in sweeps.PRESETS:
            st.button(
                t(f"sweep.preset.{name}"),
                key=f"sweep.preset.{name}",
                help=t(f"sweep.preset.{name}.help"),
                on_click=_apply_preset,
                args=(name, dims, fixed),
            )
    if applied := st.session_state.pop("sweep_preset_applied", None):
        st.success(t("presets.applied", name=t(f"sweep.preset.{applied}")), icon=":material/check:")


# --- one row per key ----------------------------------------------------------------------


def _help(key: str) -> str:
    return f"`{key}` · {t(f'help.{key}')}"


def _value_text(key: str, value: Any) -> str:
    if value is None or value == form.ALL:
        if key == "image_size":
            return t("sweep.native")
        return t("all") if key in ("train_per_class", "reuse_blocks") else t("sweep.null")
    if key == "arms":
        return " + ".join(t(f"arm.{a}") for a in str(value).split(","))
    if isinstance(value, bool):
        return t("sweep.on") if value else t("sweep.off")
    if key.endswith(".lr"):
        return f"{value:.0e}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _formatter(key: str) -> Callable[[Any], str]:
    texts: dict[Any, str] = {}

    def fmt(value: Any) -> str:
        if value not in texts:
            texts[value] = _value_text(key, value)
        return texts[value]

    return fmt


def _row(dim: sweeps.Dimension, fixed: Config | None) -> None:
    name, mode_col, control = st.columns([1.6, 1.5, 4], vertical_alignment="center")
    name.markdown(t(f"field.{dim.key}"), help=_help(dim.key))
    mode = mode_col.segmented_control(
        t("sweep.mode"),
        dim.modes,
        key=sweeps.mode_key(dim.key),
        format_func=labels("sweep.mode", sweeps.MODES).get,
        required=True,
        label_visibility="collapsed",
        **KEEP,
    )
    with control:
        if mode == "range":
            _range(dim)
        elif mode == "list":
            _list(dim)
        elif fixed is not None:
            current = sweeps.value_of(fixed, dim.key)
            st.caption(t("sweep.fixed_value", value=_value_text(dim.key, current)))


def _range(dim: sweeps.Dimension) -> None:
    key = sweeps.range_key(dim.key)
    fmt = _formatter(dim.key)
    options = list(dim.options)
    low, high = st.session_state.get(key) or (options[0], options[-1])
    if dim.ranged == "steps":
        pair = tuple(min(options, key=lambda o, v=v: abs(o - v)) for v in (low, high))
        st.session_state[key] = pair  # a sampled value from a preset: the nearest steps
        left, right = st.columns([4, 1], vertical_alignment="bottom")
        left.select_slider(
            t("sweep.range"),
            options=options,
            key=key,
            format_func=fmt,
            label_visibility="collapsed",
            **KEEP,
        )
        right.toggle(t("sweep.log"), key=sweeps.log_key(dim.key), help=t("sweep.log.help"), **KEEP)
    elif dim.ranged == "int":
        lo, hi = int(options[0]), int(options[-1])
        # Set anew each run: the block count may have changed with the backbone or cut.
        st.session_state[key] = (min(max(int(low), lo), hi), min(max(int(high), lo), hi))
        st.slider(t("sweep.range"), lo, hi, key=key, label_visibility="collapsed", **KEEP)
    else:
        left, right = st.columns([4, 1], vertical_alignment="bottom")
        left.slider(
            t("sweep.range"),
            float(options[0]),
            0.9,
            step=0.05,
            key=key,
            label_visibility="collapsed",
            **KEEP,
        )
        right.toggle(t("sweep.log"), key=sweeps.log_key(dim.key), help=t("sweep.log.help"), **KEEP)


def _list(dim: sweeps.Dimension) -> None:
    key = sweeps.list_key(dim.key)
    chosen = [v for v in st.session_state.get(key) or [] if v in dim.options]
    st.session_state[key] = chosen  # options can change (another backbone's blocks)
    st.multiselect(
        t("sweep.list"),
        list(dim.options),
        key=key,
        format_func=_formatter(dim.key),
        placeholder=t("sweep.list.placeholder"),
        label_visibility="collapsed",
        **KEEP,
    )


# --- sampler, objective, pruner, budget, seed, workers -------------------------------------


def _settings() -> None:
    choices = {
        "sampler": sweeps.SAMPLERS,
        "objective": sweeps.OBJECTIVES,
        "pruner": sweeps.PRUNERS,
    }
    for column, (name, options) in zip(st.columns(3), choices.items(), strict=True):
        key = f"sweep.{name}"  # also the text keys: sweep.sampler, sweep.sampler.help, ...
        column.segmented_control(
            t(key),
            options,
            key=key,
            format_func=labels(key, options).get,
            required=True,
            help=t(f"{key}.help"),
            **KEEP,
        )
    a, b, c = st.columns(3)
    grid = st.session_state.get("sweep.sampler") == "grid"
    a.number_input(
        t("sweep.trials"),
        min_value=1,
        step=1,
        key="sweep.trials",
        placeholder=t("sweep.trials.grid") if grid else t("sweep.trials.default"),
        help=t("sweep.trials.help"),
        **KEEP,
    )
    b.number_input(
        t("sweep.seed"),
        min_value=0,
        max_value=2**31 - 1,
        step=1,
        key="sweep.seed",
        help=t("sweep.seed.help"),
        **KEEP,
    )
    c.number_input(
        t("sweep.workers"),
        min_value=1,
        max_value=16,
        step=1,
        key="sweep.workers",
        placeholder=t("sweep.workers.default", n=state.max_running()),
        help=t("sweep.workers.help"),
        **KEEP,
    )


# --- checks, summary, Start -----------------------------------------------------------------


def _checked_spec(dims: list, fixed: Config | None, blocks: int | None):
    """The validated spec, each trial (up to ``MAX_CHECKED_POINTS``) checked against the
    data set and the backbone's blocks as Setup checks one run; UserError if not."""
    if fixed is None:
        raise state.UserError(
            t("sweep.fixed_problem", problem=st.session_state.get("sweep_fixed_problem"))
        )
    if all(st.session_state.get(sweeps.mode_key(d.key)) == "fixed" for d in dims):
        raise state.UserError(t("sweep.empty"))
    spec = sweeps.spec_from_values(st.session_state, dims, fixed)
    for point in sweeps.trial_points(spec, limit=MAX_CHECKED_POINTS):
        config = spec.config_for(point)
        report = state.inspect_current(config.dataset)
        if report["problems"]:
            raise state.UserError(f"{config.dataset}: " + "; ".join(report["problems"]))
        try:
            form.check_against(
                config,
                block_count=len(state.blocks_for(config.backbone)),
                train_images=form.train_images(report, config.train_per_class),
            )
        except state.UserError as e:
            where = ", ".join(f"{k}={_value_text(k, v)}" for k, v in point.items())
            raise state.UserError(t("sweep.trial_refused", point=where, problem=str(e))) from None
    return spec


def _images(config: Config) -> int | None:
    report, _ = state.attempt(state.inspect_current, config.dataset)
    if not report or report.get("problems"):
        return None
    return form.train_images(report, config.train_per_class)


def _workers() -> int:
    return int(st.session_state.get("sweep.workers") or state.max_running())


def _summary(spec) -> str:
    size = spec.grid_size()
    trials = spec.budget()
    if spec.sampler == "grid":
        shape = " × ".join(str(len(p.values())) for p in spec.params)
        text = t("sweep.count.grid", n=trials, size=size, shape=shape)
    else:
        text = t("sweep.count.sampled", n=trials, sampler=t(f"sweep.sampler.{spec.sampler}"))
    past = [
        sweeps.PastRun(r.config, float(r.summary["wall_s"]))
        for r in state.attempt(state.finished_runs).value or []
    ]
    estimate, _ = state.attempt(sweeps.estimate_seconds, spec, past, _images, _workers())
    if estimate is None:
        return text + " · " + t("sweep.estimate.none")
    seconds, based_on = estimate
    return (
        text
        + " · "
        + t("sweep.estimate", time=_duration(seconds), workers=_workers(), runs=based_on)
    )


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return t("sweep.duration.seconds", s=max(int(seconds), 1))
    if minutes < 90:
        return t("sweep.duration.minutes", m=minutes)
    return t("sweep.duration.hours", h=f"{seconds / 3600:.1f}")


def _start(dims: list, fixed: Config | None, blocks: int | None) -> None:
    """Start callback: check again, start the workers, switch to the live view."""

    def go() -> str:
        spec = _checked_spec(dims, fixed, blocks)
        return state.start_sweep(spec, workers=st.session_state.get("sweep.workers"))

    sweep_id = started(go, "sweep_start_error")
    if sweep_id is not None:
        st.session_state["current_sweep"] = sweep_id
        st.session_state["sweep_view"] = "live"
        st.query_params["sweep"] = sweep_id


def _action_bar(dims: list, fixed: Config | None, blocks: int | None) -> None:
    spec, problem = state.attempt(_checked_spec, dims, fixed, blocks)
    left, right = st.columns([3, 1], vertical_alignment="center")
    with left:
        if start_error := st.session_state.pop("sweep_start_error", None):
            st.error(start_error)
        elif problem is not None:
            st.error(problem)
        else:
            st.info(_summary(spec), icon=":material/grid_on:")
    right.button(
        t("sweep.start"),
        key="sweep.start",
        type="primary",
        icon=":material/play_arrow:",
        on_click=_start,
        args=(dims, fixed, blocks),
        disabled=problem is not None,
        width="stretch",
    )
