"""The sidebar's role box (:mod:`dashboard.roles`) and the "Follow along" box.

On a local bind: a short note on how to open the dashboard to the room. On a shared bind, a
viewer sees that they are watching and a form for the presenter key (a password field,
cleared on submit: the key is never drawn back into the page, never put in the URL); the
presenter sees the URL the audience should open and its QR code (larger in a dialog, for
the projector), and can go back to watching.
"""

from __future__ import annotations

import functools
import io
import ipaddress

import segno
import streamlit as st

from dashboard import roles
from dashboard.i18n import t

QR_SIDEBAR_PX = 260
QR_LARGE_PX = 640


def render() -> None:
    """The box, in the sidebar (``app.py`` calls it inside ``st.sidebar``)."""
    if not roles.shared():
        with st.expander(t("roles.local.title"), icon=":material/groups:"):
            st.markdown(t("roles.local.how"))
        return
    if roles.is_presenter():
        _presenter()
    else:
        _viewer()


def _viewer() -> None:
    st.info(t("roles.viewer"), icon=":material/visibility:")
    if wrong := st.session_state.pop("roles.wrong", None):
        st.error(t("roles.wrong", n=wrong), icon=":material/key_off:")
    with st.form("roles.key_form", clear_on_submit=True, border=True):
        st.text_input(t("roles.key"), type="password", key="roles.key", autocomplete="off")
        st.form_submit_button(
            t("roles.enter"), icon=":material/key:", width="stretch", on_click=_enter
        )


def _enter() -> None:
    """Form callback: try the key (slowed after wrong ones), then drop it from the state."""
    candidate = str(st.session_state.get("roles.key") or "")
    if not candidate.strip():
        return
    if not roles.enter_key(candidate):
        st.session_state["roles.wrong"] = roles.misses()


def _presenter() -> None:
    st.success(t("roles.presenter"), icon=":material/co_present:")
    url = follow_url()
    with st.container(border=True):
        st.markdown(f"**{t('roles.follow.title')}**")
        st.markdown(f"### {url}")
        st.image(qr_png(url), width=QR_SIDEBAR_PX, output_format="PNG")
        if st.button(t("roles.follow.large"), icon=":material/fullscreen:", width="stretch"):
            st.dialog(t("roles.follow.title"), width="large")(_large)(url)
    st.button(t("roles.leave"), icon=":material/logout:", width="stretch", on_click=roles.leave)


def _large(url: str) -> None:
    st.markdown(f"# {url}")
    st.image(qr_png(url), width=QR_LARGE_PX, output_format="PNG")


def follow_url() -> str:
    """The URL viewers open: ``browser.serverAddress`` (and ``browser.serverPort``) when
    the host set them; else this server's LAN address (the bound address when it is a
    single one, else the machine's address towards its default route, as Streamlit's own
    "Network URL"), port and base path."""
    from streamlit import config

    port = st.get_option("server.port")
    if config.is_manually_set("browser.serverAddress"):
        host = st.get_option("browser.serverAddress")
        if config.is_manually_set("browser.serverPort"):
            port = st.get_option("browser.serverPort")
    else:
        host = (st.get_option("server.address") or "").strip().strip("[]")
        try:
            if ipaddress.ip_address(host).is_unspecified:
                host = ""
        except ValueError:
            pass  # a host name: the one the server is bound to
        if not host:
            from streamlit import net_util

            host = net_util.get_internal_ip() or "localhost"
        if ":" in host:
            host = f"[{host}]"
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"http://{host}:{port}/{base + '/' if base else ''}"


@functools.lru_cache(maxsize=8)
def qr_png(url: str) -> bytes:
    """``url`` as a QR code PNG (``segno``), modules large enough to scale up sharply."""
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="png", scale=12, border=2)
    return buffer.getvalue()
