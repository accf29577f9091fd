"""What each arm learned, in the finished run's results: where it looks (heat maps per arm,
side by side) and its feature space (before and after training, with a k-NN accuracy).

The work is in ``pipelines.insight`` behind ``dashboard.state``'s cached functions; a
feature pass over the validation set takes seconds to a minute on 2 cores the first time,
so it runs only when its tab is opened, under a spinner, and is kept per run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from dashboard import insight_figures, roles, state
from dashboard.i18n import t
from dashboard.state import Run

DEFAULT_IMAGES = 3
MAX_IMAGES = 6
THUMB_PX = 96
SELECTED_SHOWN = 12
PROJECTIONS = ("pca", "tsne")


def figure_labels() -> dict[str, str]:
    """The insight figures' texts (``insight.fig.<name>``) in the current language."""
    texts = {k: t(f"insight.fig.{k}") for k in insight_figures.DEFAULT_LABELS}
    return texts | {arm: t(f"arm.{arm}") for arm in ("imagenet", "random")}


def _images(found: dict[str, dict]) -> list[dict[str, Any]]:
    """The validation images of the stored predictions: path, true class, and per arm
    the predicted class and its probability."""
    rows: dict[str, dict[str, Any]] = {}
    for arm, result in found.items():
        for p in result.get("predictions") or []:
            row = rows.setdefault(p["path"], {"path": p["path"], "label": p["label"], "arms": {}})
            row["arms"][arm] = (p["predicted"], p["probabilities"][p["predicted"]])
    return list(rows.values())


def _defaults(images: list[dict[str, Any]]) -> list[int]:
    """Misclassified by any arm, most confidently wrong first; else the first images."""
    wrong = [
        (max(q for guess, q in row["arms"].values() if guess != row["label"]), i)
        for i, row in enumerate(images)
        if any(guess != row["label"] for guess, _ in row["arms"].values())
    ]
    if wrong:
        return [i for _, i in sorted(wrong, reverse=True)[:DEFAULT_IMAGES]]
    return list(range(min(DEFAULT_IMAGES - 1, len(images))))


def attention(run: Run, found: dict[str, dict]) -> None:
    """Heat maps of both arms over chosen validation images or an uploaded one."""
    st.caption(t("insight.attention.intro"))
    classes = next(iter(found.values()))["classes"]
    images = _images(found)
    size = int((run.summary or {}).get("image_size") or 224)

    def name(i: int) -> str:
        row = images[i]
        mark = " ✗" if any(g != row["label"] for g, _ in row["arms"].values()) else ""
        return f"{row['path'].rsplit('/', 1)[-1]} · {classes[row['label']]}{mark}"

    picked = st.multiselect(
        t("insight.attention.pick"),
        range(len(images)),
        default=_defaults(images),
        format_func=name,
        max_selections=MAX_IMAGES,
        key=f"insight.pick.{run.run_id}",
        help=t("insight.attention.pick_help"),
    )
    upload = None
    if roles.is_presenter():  # an upload: the presenter's only
        upload = st.file_uploader(
            t("insight.attention.upload"), key=f"insight.upload.{run.run_id}", help=t("try.help")
        )
    chosen: list[tuple[str, Any]] = [(name(i), images[i]["path"]) for i in picked]
    if upload is not None:
        chosen.append((upload.name, upload.getvalue()))
    if not chosen:
        st.info(t("insight.attention.none"))
        return
    labels = figure_labels()
    for caption, source in chosen:
        with state.shown_errors():
            if isinstance(source, bytes):
                image = state.decode(source, size, caption)
            else:
                image = state.validation_image(source, size)
            with st.spinner(t("insight.attention.computing")):
                panels = [state.attention(run, arm, image) for arm in found]
            st.plotly_chart(
                insight_figures.attention(image, panels, caption=caption, labels=labels),
                config={"displayModeBar": False},
                key=f"insight.map.{run.run_id}.{caption}",
            )


def feature_space(run: Run, found: dict[str, dict]) -> None:
    """Both arms' validation features before and after training, side by side."""
    st.caption(t("insight.features.intro"))
    projection = st.segmented_control(
        t("insight.features.projection"),
        PROJECTIONS,
        default="pca",
        format_func=lambda p: t(f"insight.features.{p}"),
        key=f"insight.projection.{run.run_id}",
        required=True,
    )
    space = None
    with state.shown_errors(), st.spinner(t("insight.features.computing")):
        space = state.feature_space(run, projection or "pca")
    if space is None:
        return
    panel = space["panels"][0]
    n = len(space["labels"])
    st.caption(t("insight.features.knn", k=panel["k"], folds=panel["folds"], n=n))
    if any(p["unchanged"] for p in space["panels"]):
        st.caption(t("insight.features.unchanged"))
    event = st.plotly_chart(
        insight_figures.feature_space(space, labels=figure_labels()),
        config={"displayModeBar": False},
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        key=f"insight.space.{run.run_id}.{projection}",
    )
    _selected(space, event)


def _selected(space: dict[str, Any], event: Any) -> None:
    """Thumbnails of the points clicked or boxed in the chart (hover shows the name)."""
    points = (getattr(event, "selection", None) or {}).get("points") or []
    chosen: list[int] = []
    for p in points:
        data = p.get("customdata")
        index = data[0] if isinstance(data, list) else data
        if isinstance(index, (int, float, np.integer)) and int(index) not in chosen:
            chosen.append(int(index))
    if not chosen:
        st.caption(t("insight.features.select"))
        return
    shown, captions = [], []
    for i in chosen[:SELECTED_SHOWN]:
        thumb = state.thumbnail(space["paths"][i], THUMB_PX * 2)
        if thumb is not None:
            shown.append(thumb)
            captions.append(f"{space['names'][i]} · {space['classes'][space['labels'][i]]}")
    if shown:
        st.image(shown, caption=captions, width=THUMB_PX)
