"""After a run: confusion matrices, misclassified images, where each arm looks, the feature
space, "try your own image", downloads.

Reads the run's stored results and each arm's inference SavedModel
(``runs/<id>/<arm>/savedmodel``); TensorFlow is imported only when a model is first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import figures, roles, state
from dashboard.components import insight
from dashboard.i18n import figure_labels, t
from dashboard.state import Run

GALLERY_MAX = 12
GALLERY_PX = 104


def render(run: Run) -> None:
    """Everything after a finished (completed or stopped) run."""
    run_id = run.run_id
    arms = run.config.arms
    found = {arm: state.result(run_id, arm) for arm in arms}
    found = {arm: r for arm, r in found.items() if r}
    st.subheader(t("results.title"))
    if not found:
        st.info(t("results.none"))
        _downloads(run, {})
        return
    sections = {  # tab label's text key -> what the tab draws
        "results.confusion": lambda: _confusion(found),
        "results.misclassified": lambda: _misclassified(found),
        "insight.attention": lambda: insight.attention(run, found),
        "insight.features": lambda: insight.feature_space(run, found),
        "results.try": lambda: _try_image(run, found),
        "results.downloads": lambda: _downloads(run, found),
    }
    if not roles.is_presenter():
        del sections["results.try"]  # an upload, and inference on the server
    # Keyed and tracked, so the open tab survives reruns and only it is drawn.
    tabs = st.tabs([t(key) for key in sections], key="results.tab", on_change="rerun")
    for tab, draw in zip(tabs, sections.values(), strict=True):
        if tab.open is not False:
            with tab:
                draw()


def _confusion(found: dict[str, dict]) -> None:
    cols = st.columns(len(found))
    for col, (arm, result) in zip(cols, found.items(), strict=True):
        col.plotly_chart(
            figures.confusion_matrix(
                result["confusion"],
                result["classes"],
                title=t(f"arm.{arm}"),
                labels=figure_labels(),
            ),
            config={"displayModeBar": False},
        )


def misclassified(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The wrongly predicted validation images, most confidently wrong first."""
    wrong = [p for p in result.get("predictions") or [] if p["label"] != p["predicted"]]
    return sorted(wrong, key=lambda p: -p["probabilities"][p["predicted"]])


def _misclassified(found: dict[str, dict]) -> None:
    cols = st.columns(len(found))
    for col, (arm, result) in zip(cols, found.items(), strict=True):
        classes = result["classes"]
        wrong = misclassified(result)
        total = len(result.get("predictions") or [])
        with col:
            st.markdown(f"**{t(f'arm.{arm}')}** · {t('gallery.count', n=len(wrong), total=total)}")
            images, captions = [], []
            for p in wrong[:GALLERY_MAX]:
                thumb = state.thumbnail(p["path"], GALLERY_PX * 2)
                if thumb is None:
                    continue
                probs = " · ".join(
                    f"{c} {q:.0%}" for c, q in zip(classes, p["probabilities"], strict=True)
                )
                images.append(thumb)
                captions.append(f"{classes[p['label']]} → {classes[p['predicted']]} ({probs})")
            if images:
                st.image(images, caption=captions, width=GALLERY_PX * 2)
            elif wrong:
                st.caption(t("gallery.moved"))
            else:
                st.caption(t("gallery.none"))


def _try_image(run: Run, found: dict[str, dict]) -> None:
    run_id = run.run_id
    # No type= filter: a phone's photo may have any name; decode() says what is wrong.
    upload = st.file_uploader(t("try.upload"), key=f"try.{run_id}", help=t("try.help"))
    if upload is None:
        return
    data = upload.getvalue()
    size = int((run.summary or {}).get("image_size") or 224)
    cols = st.columns([1] + [2] * (len(found) + 1))
    with state.shown_errors():
        image = state.decode(data, size, upload.name)
        cols[0].image(image, caption=upload.name, width="stretch")
        for col, (arm, result) in zip(cols[1:], found.items(), strict=False):
            with col, state.shown_errors():
                st.markdown(f"**{t(f'arm.{arm}')}**")
                with st.spinner(t("try.predicting")):
                    probs = state.predict(run_id, arm, image)
                st.plotly_chart(
                    figures.probabilities_bar(
                        result["classes"], probs, color=figures.ARM_COLORS.get(arm, "#495057")
                    ),
                    config={"displayModeBar": False},
                )
        with cols[-1], state.shown_errors():
            st.markdown(f"**{t('try.imagenet')}**")
            with st.spinner(t("try.predicting")):
                top5 = state.imagenet_top5(run.config.backbone, data)
            st.plotly_chart(
                figures.probabilities_bar(
                    [_short(r["label"]) for r in top5],
                    [r["probability"] for r in top5],
                    color="#868E96",
                ),
                config={"displayModeBar": False},
            )


def _short(label: str, limit: int = 24) -> str:
    """An ImageNet label's first name, cut to ``limit`` characters."""
    first = label.split(",")[0].strip()
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _downloads(run: Run, found: dict[str, dict]) -> None:
    run_id = run.run_id
    root = state.store_root()
    st.download_button(
        t("download.csv"),
        data=state.metrics_csv(run_id, root, run.updated),
        file_name=f"{run_id}-metrics.csv",
        mime="text/csv",
        icon=":material/table:",
        key=f"csv.{run_id}",
    )
    if not found:
        return
    cols = st.columns(len(found))
    for col, arm in zip(cols, found, strict=True):
        with col:
            st.markdown(f"**{t(f'arm.{arm}')}**")
            with state.shown_errors():
                if not roles.is_presenter() and not state.model_built(run_id, arm):
                    st.caption(t("roles.not_built"))
                    _onnx(run_id, arm)
                    continue
                with st.spinner(t("download.preparing")):  # built from the weights once
                    state.model_dir(run_id, arm)
                st.download_button(
                    t("download.savedmodel"),
                    data=lambda arm=arm: state.savedmodel_zip(run_id, arm, root),
                    file_name=f"{run_id}-{arm}-savedmodel.zip",
                    mime="application/zip",
                    icon=":material/deployed_code:",
                    key=f"sm.{run_id}.{arm}",
                )
                _onnx(run_id, arm)


def _onnx(run_id: str, arm: str) -> None:
    info = state.onnx_ready(run_id, arm)
    if info is None and not roles.is_presenter():
        return
    if info is None:
        if st.button(
            t("download.onnx.make"), key=f"onnx.{run_id}.{arm}", icon=":material/sync_alt:"
        ):
            with st.spinner(t("download.onnx.making")):
                state.onnx_export(run_id, arm)
            st.rerun()
        st.caption(t("download.onnx.caption"))
        return
    st.download_button(
        t("download.onnx"),
        data=Path(info["path"]).read_bytes(),
        file_name=f"{run_id}-{arm}.onnx",
        mime="application/octet-stream",
        icon=":material/download:",
        key=f"onnxdl.{run_id}.{arm}",
    )
    st.caption(
        t(
            "download.parity",
            diff=f"{info['parity_max_abs_diff']:.1e}",
            n=info.get("parity_images", "?"),
        )
    )
