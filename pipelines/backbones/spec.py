"""The backbone catalogue (``assets/backbones.json``) and resolving what a user typed.

A backbone is named by a catalogue id (``efficientnet_lite0``, ``mobilenet_v2_100_224``), a
TF Hub / Kaggle Models URL, a bare Kaggle Models handle (``owner/model/framework/variation/
version``), or a local SavedModel folder. :func:`resolve` turns any of them into a
:class:`BackboneSpec` without touching the network or TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from pipelines import settings
from pipelines.backbones.pixels import check_scaling
from pipelines.errors import UserError

ASSETS = Path(__file__).resolve().parents[2] / "assets"
CATALOGUE_FILE = ASSETS / "backbones.json"
DEFAULT_INPUT_SIZE = 224
DEFAULT_SCALING = "0_1"  # TF Hub's image convention
_KAGGLE_HANDLE = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+/[\w.-]+/\d+$")


@dataclass(frozen=True)
class BackboneSpec:
    """What is known about a backbone before loading it."""

    id: str
    name: str
    input_size: int
    scaling: str
    handle: str | None = None  # remote URL or local folder; None for built-ins
    builtin: bool = False
    weights_package: str | None = None
    classification_handle: str | None = None
    citation: str = ""
    license: str = ""
    params_millions: float | None = None

    @property
    def is_remote(self) -> bool:
        return self.handle is not None and is_remote(self.handle)

    @property
    def offline(self) -> bool:
        """True when this backbone loads without the network."""
        if self.builtin:
            return True
        return not self.is_remote or hub_cache_has(self.handle)

    def to_dict(self) -> dict:
        return {**asdict(self), "offline": self.offline}


def is_remote(handle: str) -> bool:
    return handle.startswith(("http://", "https://"))


def kaggle_url(handle: str) -> str:
    """The URL of a bare Kaggle Models handle (``google/mobilenet-v2/tensorFlow2/x/2``)."""
    return f"https://www.kaggle.com/models/{handle}"


def hub_cache_has(handle: str) -> bool:
    """True when TF Hub has already downloaded ``handle`` (so it loads offline)."""
    # tensorflow_hub stores a download in <cache>/<sha1 of the handle>.
    folder = settings.hub_cache_dir() / hashlib.sha1(handle.encode("utf8")).hexdigest()
    return (folder / "saved_model.pb").is_file()


@lru_cache(maxsize=1)
def _load_catalogue() -> tuple[BackboneSpec, ...]:
    data = json.loads(CATALOGUE_FILE.read_text())
    specs = []
    for entry in data["backbones"]:
        fields = {k: v for k, v in entry.items() if k in BackboneSpec.__dataclass_fields__}
        spec = BackboneSpec(**fields)
        check_scaling(spec.scaling)
        specs.append(spec)
    return tuple(specs)


def catalogue() -> list[BackboneSpec]:
    """Built-ins first, then the TF Hub entries, in catalogue order."""
    return sorted(_load_catalogue(), key=lambda s: not s.builtin)


def builtin_ids() -> list[str]:
    return [s.id for s in catalogue() if s.builtin]


def resolve(backbone: str) -> BackboneSpec:
    """A catalogue id, URL, Kaggle handle or SavedModel folder → :class:`BackboneSpec`.

    Local folders are checked here (allowed by :func:`pipelines.settings.confine`, exists,
    is a folder, holds ``saved_model.pb``); remote handles are only recognised, not
    fetched; with confinement on (a shared server) a remote handle outside the catalogue
    must pass :func:`pipelines.settings.check_handle_host`. Unknown text raises
    :class:`UserError`.
    """
    text = (backbone or "").strip()
    if not text:
        raise UserError("no backbone given; pick one of: " + ", ".join(s.id for s in catalogue()))
    for spec in catalogue():
        if text in (spec.id, spec.handle):
            return spec
    if is_remote(text):
        settings.check_handle_host(text)  # a shared server: allow-listed hosts only
        return _user_spec(text, text, text)
    path = Path(text).expanduser()
    # Confined (a shared dashboard), relative text is not probed in the server's folder.
    if path.exists() and (path.is_absolute() or not settings.confinement_enabled()):
        return _local_spec(path)
    if _KAGGLE_HANDLE.match(text):
        settings.check_handle_host(kaggle_url(text))
        return _user_spec(text, text, kaggle_url(text))
    if text.startswith((".", "~")) or os.sep in text:
        return _local_spec(path)
    raise UserError(
        f"unknown backbone {text!r}: give a catalogue id ({', '.join(s.id for s in catalogue())}), "
        "a TF Hub or Kaggle Models URL, a Kaggle handle owner/model/framework/variation/version, "
        "or a local SavedModel folder"
    )


def _local_spec(given: Path) -> BackboneSpec:
    path = settings.confine(given, "backbone folder", model=True)  # before any look at it
    if not path.exists():
        raise UserError(f"backbone folder {str(given)!r} does not exist; give a SavedModel folder")
    if not path.is_dir():
        raise UserError(
            f"backbone {str(given)!r} is a file, not a SavedModel folder; give the folder that "
            "holds saved_model.pb (unpack an archive first)"
        )
    if not (path / "saved_model.pb").is_file():
        what = "is empty" if not any(path.iterdir()) else "holds no saved_model.pb"
        raise UserError(
            f"backbone folder {str(given)!r} {what}: it is not a SavedModel; give the folder "
            "that holds saved_model.pb and variables/"
        )
    resolved = str(path.resolve())
    return _user_spec(resolved, given.name, resolved)


def _user_spec(backbone_id: str, name: str, handle: str) -> BackboneSpec:
    # Outside the catalogue nothing says whether a model is a feature vector or a
    # classifier; the loaders check its output, so the handle may serve as either.
    return BackboneSpec(
        backbone_id,
        name,
        DEFAULT_INPUT_SIZE,
        DEFAULT_SCALING,
        handle=handle,
        classification_handle=handle,
    )
