"""Who may change things: the **presenter** (everything) and **viewers** (watch only).

Contract:

- Bound to a local address (``server.address`` is ``localhost`` or a loopback IP, the
  default; :func:`pipelines.settings.server_is_local`) every session is the presenter, as
  before roles existed.
- Bound to any other address (``--server.address 0.0.0.0`` in a seminar room) every
  session is a viewer until it enters the presenter key (:func:`enter_key`). The key is
  ``PRESENTER_KEY``, else ``presenter_key`` in ``.streamlit/secrets.toml``, else one made
  up once per server process and printed to the server's log (stderr) - never shown in a
  page, never in a URL, never in a run's log (it is not put into the environment the
  workers inherit).
- Entering it is remembered in this browser session's Session State only (a reload or a
  new tab is a viewer again). Keys are compared in constant time; every wrong key makes
  that client's next try wait longer (:func:`delay_after`), in that session's own script
  thread, so other sessions are never held up.
- Every state-changing door function of ``dashboard/state.py`` is wrapped in
  :func:`presenter_only`, which calls :func:`require_presenter`: a viewer's call raises
  :class:`UserError` before anything is touched, whatever widget message reached the
  server. A door a viewer may use under a rule of its own (a group's run in an exercise)
  is wrapped in :func:`guarded` with that rule's check instead. Pages also leave out the
  controls a viewer may not use (:func:`is_presenter`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from typing import Literal, ParamSpec, TypeVar

import streamlit as st

from dashboard.i18n import t, texts
from pipelines import settings
from pipelines.errors import UserError

Role = Literal["presenter", "viewer"]
PRESENTER: Role = "presenter"
VIEWER: Role = "viewer"
KEY_ENV = "PRESENTER_KEY"
KEY_SECRET = "presenter_key"

# Wrong keys: the n-th consecutive miss of a client makes its next try wait
# min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (n - 1)) seconds.
BASE_DELAY_S = 0.5
MAX_DELAY_S = 30.0
_FORGET_AFTER_S = 3600.0  # a client's misses are forgotten after an hour without one
_MAX_CLIENTS = 4096

_GRANT = "_roles.grant"  # Session State key of this session's grant (not a widget key)
_CLIENT = "_roles.client"  # a local session's name for counting its wrong keys
_lock = threading.Lock()
_generated: str | None = None


class _Grant:
    """The mark :func:`enter_key` leaves in Session State. An instance of a private class,
    so no widget value a client sends can pass for it."""

    __slots__ = ("digest",)

    def __init__(self, digest: bytes) -> None:
        self.digest = digest


def shared() -> bool:
    """Whether this server is reachable from other machines (roles apply)."""
    return not settings.server_is_local(st.get_option("server.address"))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _configured_key() -> str | None:
    value = os.environ.get(KEY_ENV, "").strip()
    if value:
        return value
    try:
        value = str(st.secrets.get(KEY_SECRET) or "").strip()
    except Exception:  # noqa: BLE001 - no secrets.toml, or a broken one: a made-up key
        return None
    return value or None


def key_source() -> str:
    """Where the key comes from: ``"env"``, ``"secrets"`` or ``"generated"``."""
    if os.environ.get(KEY_ENV, "").strip():
        return "env"
    return "secrets" if _configured_key() else "generated"


def presenter_key() -> str:
    """The presenter key (see the module's docstring). A made-up key is made on the first
    call in this process and printed once to stderr, the server's log."""
    global _generated
    configured = _configured_key()
    if configured:
        return configured
    with _lock:
        if _generated is None:
            _generated = secrets.token_urlsafe(9)  # 12 characters, 72 bits
            print(
                f"\n  Presenter key for this dashboard: {_generated}\n"
                f"  (set {KEY_ENV} or presenter_key in .streamlit/secrets.toml to choose one)\n",
                file=sys.stderr,
                flush=True,
            )
        return _generated


def announce() -> None:
    """On a shared server, make sure the key exists (a made-up one is printed now, when the
    first page is opened). ``app.py`` calls it on every page; later calls cost nothing."""
    if shared():
        presenter_key()


def role() -> Role:
    """This session's role: always ``"presenter"`` on a local bind; on a shared one
    ``"presenter"`` only after the current key was entered in this browser session."""
    if not shared():
        return PRESENTER
    grant = st.session_state.get(_GRANT)
    if isinstance(grant, _Grant) and hmac.compare_digest(grant.digest, _digest(presenter_key())):
        return PRESENTER
    return VIEWER


def is_presenter() -> bool:
    """``role() == "presenter"``: whether to render controls that change things."""
    return role() == PRESENTER


def action_text(action: str) -> str:
    """``roles.action.<action>`` in the current language, else ``action`` as given."""
    key = f"roles.action.{action}"
    return t(key) if key in texts() else action


def require_presenter(action: str) -> None:
    """Refuse ``action`` (``"start"``, ``"stop"``, ``"delete"``, ``"upload"``, ``"export"``,
    ... : a ``roles.action.*`` text, or plain words) for a viewer: :class:`UserError` naming
    the action and how to become presenter. Nothing for the presenter."""
    if not is_presenter():
        raise UserError(t("roles.refused", action=action_text(action)))


P = ParamSpec("P")
R = TypeVar("R")


def guarded(check: Callable[[], None], rule: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator for a door function that changes state under a rule of its own (e.g. a
    group's run in an exercise, which a viewer may start): every call first runs
    ``check()``, which raises :class:`UserError` to refuse. ``rule`` names the rule
    (kept as the function's ``role_check``; tests look for it on every door that reaches
    the job manager). Put it outermost (above a cache)."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            check()
            return fn(*args, **kwargs)

        checked.role_check = rule  # type: ignore[attr-defined]
        return checked

    return wrap


def presenter_only(action: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator for a door function that changes state: every call first runs
    :func:`require_presenter` with ``action`` (kept as ``presenter_action``). Put it
    outermost (above a cache)."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        checked = guarded(lambda: require_presenter(action), f"presenter: {action}")(fn)
        checked.presenter_action = action  # type: ignore[attr-defined]
        return checked

    return wrap


# --- entering the key ------------------------------------------------------------------------


class _Misses:
    __slots__ = ("count", "next_at", "last")

    def __init__(self) -> None:
        self.count = 0
        self.next_at = 0.0
        self.last = 0.0


_clients: dict[str, _Misses] = {}


def delay_after(misses: int) -> float:
    """Seconds a client waits before its next try after ``misses`` wrong keys in a row."""
    if misses <= 0:
        return 0.0
    return min(MAX_DELAY_S, BASE_DELAY_S * 2 ** min(misses - 1, 30))


def _client() -> str:
    """The client whose wrong keys are counted: its IP address; a local connection (no
    address: the machine itself) counts per browser session."""
    ip = st.context.ip_address
    if isinstance(ip, str) and ip:
        return f"ip:{ip}"
    if _CLIENT not in st.session_state:
        st.session_state[_CLIENT] = secrets.token_hex(8)
    return f"session:{st.session_state[_CLIENT]}"


_now = time.monotonic  # tests replace both to run the schedule without the waiting


def _wait(seconds: float) -> None:
    """Sleep in this session's script thread (tests replace it to measure)."""
    if seconds > 0:
        time.sleep(seconds)


def _reserve(client: str, now: float) -> float:
    """Book this client's next try: the seconds it must wait first. Counted as a miss until
    it succeeds, so tries sent at once from several sessions queue behind each other."""
    with _lock:
        if len(_clients) > _MAX_CLIENTS:
            for name in [c for c, m in _clients.items() if now - m.last > _FORGET_AFTER_S]:
                del _clients[name]
        misses = _clients.get(client)
        if misses is None or now - misses.last > _FORGET_AFTER_S:
            misses = _clients[client] = _Misses()
        slot = max(now, misses.next_at)
        misses.count += 1
        misses.last = now
        misses.next_at = slot + delay_after(misses.count)
        return slot - now


def enter_key(candidate: str) -> bool:
    """Try ``candidate`` as the presenter key for this session. Waits first as long as this
    client's earlier wrong keys demand; right: this session is presenter (until the browser
    session ends or :func:`leave`) and the client's misses are forgotten; wrong: False."""
    client = _client()
    _wait(_reserve(client, _now()))
    right = hmac.compare_digest(_digest(candidate.strip()), _digest(presenter_key()))
    if right:
        with _lock:
            _clients.pop(client, None)
        st.session_state[_GRANT] = _Grant(_digest(presenter_key()))
    return right


def leave() -> None:
    """This session is a viewer again."""
    st.session_state.pop(_GRANT, None)


def misses(client: str | None = None) -> int:
    """Wrong keys in a row of ``client`` (default: this session's client)."""
    with _lock:
        found = _clients.get(client or _client())
        return found.count if found else 0
