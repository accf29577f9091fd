"""A user's uploaded zip of an image folder: saved and extracted under ``RUNS_DIR/uploads/``.

Plain functions, no UI: the dashboard's upload widget hands the bytes to :func:`save_upload`
and later asks :func:`upload_skipped` what the extraction left out.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

from pipelines.data import safezip
from pipelines.data.scan import scan_folder, too_few_classes
from pipelines.data.sources import uploads_dir
from pipelines.errors import UserError


def save_upload(name: str, data: bytes, cap_mb: int) -> Path:
    """Save the zip ``data`` (the file ``name``) under ``RUNS_DIR/uploads/<sha256>/`` and
    extract it there (safely, see :mod:`pipelines.data.safezip`); return the data set's
    root folder. The same bytes uploaded again reuse the earlier extraction.

    Refused (:class:`UserError`, nothing left under ``uploads/``): over ``cap_mb`` MB, not
    a zip, entries the zip checks refuse (``..``, absolute paths, links, passwords, too many
    files or bytes declared), a zip that expands past the caps while written, and one
    without two class folders. Bad images inside are the data set report's business."""
    if len(data) > cap_mb * 2**20:
        raise UserError(
            f"{name} is {len(data) / 2**20:.1f} MB, over this dashboard's upload limit of "
            f"{cap_mb} MB: zip fewer or smaller images (the host sets the limit, "
            "server.maxUploadSize)"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            safezip.check_entries(zf, name)  # before anything is written
    except (zipfile.BadZipFile, OSError, EOFError):
        raise UserError(
            f"{name} is not a zip file (or a damaged one): zip a folder with one sub-folder "
            "per class and upload that"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    target = uploads_dir() / digest
    fresh = not target.exists()  # an earlier upload of the same bytes is kept
    try:
        target.mkdir(parents=True, exist_ok=True)
        zip_path = target / "upload.zip"
        if not zip_path.is_file() or zip_path.stat().st_size != len(data):
            zip_path.write_bytes(data)
        root, _skipped = safezip.extract_zip(zip_path, target, digest=digest)
        if problem := too_few_classes(scan_folder(root, shown=name)):
            raise UserError(problem)
    except BaseException:
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return root


def upload_skipped(dataset: str) -> list[dict[str, str]]:
    """The entries left out when the uploaded zip that ``dataset`` lies in was extracted
    (hidden files, ``__MACOSX/``, entries that fail to decompress) as ``{path, reason}``;
    [] for a data set that is not an upload, or one whose zip can't be read back (the data
    set report says what is wrong with it). Read back from the finished extraction."""
    uploads = uploads_dir()
    try:
        digest = Path(dataset).relative_to(uploads).parts[0]
    except (ValueError, IndexError):
        return []
    zip_path = uploads / digest / "upload.zip"
    if not zip_path.is_file():
        return []
    try:
        _root, skipped = safezip.extract_zip(zip_path, uploads / digest, digest=digest)
    except Exception:  # noqa: BLE001 - the data set report says what is wrong with it
        return []
    return [s.to_dict() for s in skipped]
