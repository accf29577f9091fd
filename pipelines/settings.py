"""Locations the engine reads and writes, each overridable by an environment variable.

=====================  ==========================================  =============================
variable               what                                        default
=====================  ==========================================  =============================
``DATASETS_DIR``       folder holding ``horses-or-humans/`` etc.   ``settings.toml``'s
                                                                   ``datasets_dir`` if it
                                                                   exists (else TFDS, then
                                                                   an error)
``BACKBONE_CACHE_DIR`` built-in backbones materialised as          ``<user cache>/backbones``
                       SavedModels
``FEATURE_CACHE_DIR``  cached backbone features                    ``<user cache>/features``
``RUNS_DIR``           the run store and its artefacts             ``./runs``
=====================  ==========================================  =============================

Values are read on every call, so tests and the dashboard can change them at run time.
``settings.toml`` in the repository root holds the project's defaults for a fresh clone.

A shared dashboard confines free-text paths (data set folders and zips, SavedModel folders)
to known folders: ``CONFINE_PATHS=1`` turns it on (default off; the dashboard turns it on
when bound to a non-local address), ``ALLOWED_ROOTS`` (``os.pathsep``-separated) adds
folders to the defaults (see :func:`allowed_roots`, :func:`confine`). It also confines
remote backbones typed by a user to ``https://`` on the hosts in ``ALLOWED_HANDLE_HOSTS``
(comma-separated; default the TF Hub / Kaggle Models hosts; see :func:`check_handle_host`).
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path

import platformdirs

from pipelines.errors import UserError

APP_NAME = "tl-dashboard"
SETTINGS_FILE = Path(__file__).resolve().parents[1] / "settings.toml"


def whole_number_env(name: str, default: int, minimum: int) -> int:
    """The environment variable ``name`` as a whole number of at least ``minimum``;
    ``default`` when unset or empty; :class:`UserError` naming it otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise UserError(f"{name} must be a whole number of at least {minimum}, not {raw!r}")
    return value


def _file_setting(name: str) -> Path | None:
    """A path from ``settings.toml`` (relative to its folder), or None."""
    try:
        value = tomllib.loads(SETTINGS_FILE.read_text()).get(name)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return (SETTINGS_FILE.parent / value).resolve() if value else None


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def user_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


def datasets_dir() -> Path | None:
    """``DATASETS_DIR`` if set (even to a missing folder, so the error names it); else
    ``settings.toml``'s ``datasets_dir`` when that folder exists; else None."""
    if "DATASETS_DIR" in os.environ:
        return _env_path("DATASETS_DIR")
    path = _file_setting("datasets_dir")
    return path if path is not None and path.is_dir() else None


def backbone_cache_dir() -> Path:
    return _env_path("BACKBONE_CACHE_DIR") or user_cache_dir() / "backbones"


def feature_cache_dir() -> Path:
    return _env_path("FEATURE_CACHE_DIR") or user_cache_dir() / "features"


def runs_dir() -> Path:
    return _env_path("RUNS_DIR") or Path("runs")


# --- path confinement for a shared dashboard -------------------------------------------------

_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off", ""}
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def confinement_enabled() -> bool:
    """``CONFINE_PATHS`` (``1``/``0``; default off). The dashboard sets it when it is bound
    to a non-local address (:func:`server_is_local`); worker processes inherit it."""
    raw = os.environ.get("CONFINE_PATHS", "").strip().lower()
    if raw in _ON:
        return True
    if raw in _OFF:
        return False
    # A typo must not silently switch a safety setting off.
    raise UserError(f"CONFINE_PATHS must be 1 or 0, not {raw!r}")


def server_is_local(address: str | None) -> bool:
    """Whether a server bound to ``address`` is reachable from this machine only: a
    loopback IP or ``localhost``. Empty/None (every interface), ``0.0.0.0``, ``::`` and
    any other host name count as shared."""
    import ipaddress

    text = (address or "").strip().strip("[]").lower()
    if text in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def hub_cache_dir() -> Path:
    """TF Hub's download cache, as ``tensorflow_hub`` chooses it (``TFHUB_CACHE_DIR``)."""
    default = Path(tempfile.gettempdir()) / "tfhub_modules"
    return Path(os.environ.get("TFHUB_CACHE_DIR") or default)


def allowed_roots(*, runs: bool = True) -> list[Path]:
    """The folders free-text paths may point into while confinement is on, resolved:
    ``DATASETS_DIR``, the runs folder (uploads are extracted there; left out with
    ``runs=False``), the backbone cache, ``TFHUB_CACHE_DIR``, plus every folder in
    ``ALLOWED_ROOTS`` (``os.pathsep``-separated)."""
    roots = [datasets_dir(), runs_dir() if runs else None, backbone_cache_dir(), hub_cache_dir()]
    extra = os.environ.get("ALLOWED_ROOTS", "")
    roots += [Path(p.strip()).expanduser() for p in extra.split(os.pathsep) if p.strip()]
    out: list[Path] = []
    for root in roots:
        if root is not None and (resolved := root.resolve()) not in out:
            out.append(resolved)
    return out


def confine(path: str | Path, what: str, *, model: bool = False) -> Path:
    """``path`` as the engine should use it, or :class:`UserError` if it may not be read.

    With confinement off: the path with ``~`` expanded, made absolute (symlinks kept, so
    reports show what the user typed). With it on: the path resolved (``..`` and symlinks
    followed) and refused unless it lies inside one of :func:`allowed_roots`; whether it
    exists is not revealed for a refused path. ``model=True`` (a SavedModel, whose graph
    runs here) also refuses the runs folder, where users' uploads are extracted.
    """
    given = Path(path).expanduser()
    if not confinement_enabled():
        return given.absolute()
    resolved = given.resolve()
    roots = allowed_roots(runs=not model)
    if any(resolved.is_relative_to(root) for root in roots):
        return resolved
    raise UserError(
        f"{what} {str(path)!r} is outside the folders this shared dashboard may read "
        f"({', '.join(str(r) for r in roots)}); ask the host to add it to ALLOWED_ROOTS"
    )


# The dashboard's presenter key: ``PRESENTER_KEY``, or ``presenter_key`` from
# .streamlit/secrets.toml (Streamlit copies root-level secrets into the environment).
# Never passed on to worker processes (lower-case names).
SECRET_ENV = frozenset({"presenter_key"})

DEFAULT_HANDLE_HOSTS = ("tfhub.dev", "www.kaggle.com", "kaggle.com")


def allowed_handle_hosts() -> list[str]:
    """``ALLOWED_HANDLE_HOSTS`` (comma-separated host names, lower case; ``none``: no host);
    unset or empty: :data:`DEFAULT_HANDLE_HOSTS`."""
    raw = os.environ.get("ALLOWED_HANDLE_HOSTS", "").strip().lower()
    if not raw:
        return list(DEFAULT_HANDLE_HOSTS)
    if raw == "none":
        return []
    return [h.strip().rstrip(".") for h in raw.split(",") if h.strip()]


def check_handle_host(url: str) -> None:
    """Refuse, with :class:`UserError`, a remote model ``url`` a user typed while
    confinement is on (:func:`confinement_enabled`) unless it is ``https://`` on one of
    :func:`allowed_handle_hosts`: the server would download that SavedModel and run its
    graph. Only the text is looked at; no connection is made. Catalogue handles are not
    checked (the catalogue is the host's choice)."""
    if not confinement_enabled():
        return
    from urllib.parse import urlsplit

    hosts = allowed_handle_hosts()
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".")
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        host, parts = "", None
    allowed = ", ".join(hosts) or "none"
    if parts is None or parts.scheme != "https" or host not in hosts or parts.username:
        raise UserError(
            f"remote backbone {url!r} is refused on this shared server (CONFINE_PATHS): only "
            f"https:// models from the catalogue or from these hosts load (ALLOWED_HANDLE_HOSTS: "
            f"{allowed}); pick a catalogue backbone, or ask the host to add the model's host "
            "to ALLOWED_HANDLE_HOSTS"
        )
