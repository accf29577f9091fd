"""Extract a user's zip of an image folder, safely, inside one target folder.

Refused outright (:class:`UserError`, nothing left behind): not a zip, a zip file itself
over :data:`MAX_ZIP_BYTES`, password-protected, an absolute path, a ``..`` part or a symbolic link
in any entry, more than ``max_files`` files, or more than ``max_bytes`` uncompressed,
counted both from the declared sizes and from the bytes actually written (a zip bomb can
lie about the former; Python's reader also stops each entry at its declared size, so a
lying entry fails its checksum and is skipped), and a disk that fills up while extracting.
The caps default to :data:`MAX_BYTES` and :data:`MAX_FILES`, read at each call.
Skipped with a reason: ``__MACOSX/`` and other hidden entries, duplicate names, entries
that fail to decompress (bad CRC, unsupported method).

The archive goes to ``<target>/dataset/``; a zip whose content is one top-level folder is
unwrapped, so the data set root is that folder. A target already holding an extraction of
the same bytes (by SHA-256) is reused.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from pipelines.data.scan import SkippedFile, is_hidden
from pipelines.errors import UserError, disk_full_error, is_disk_full

MAX_BYTES = 2 * 2**30
MAX_FILES = 50_000
MAX_ZIP_BYTES = MAX_BYTES  # the zip file itself, checked before it is read
_CHUNK = 2**20
_DONE = ".extracted"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_zip_size(zip_path: Path) -> None:
    """Refuse a zip file larger than :data:`MAX_ZIP_BYTES` before reading it: the upload
    cap, for zips given by path (the dashboard's uploads also have Streamlit's)."""
    limit = MAX_ZIP_BYTES
    size = Path(zip_path).stat().st_size
    if size > limit:
        raise UserError(
            f"{Path(zip_path).name} is {_gb(size)}, over the {_gb(limit)} limit for a data set "
            "zip: use fewer or smaller images"
        )


def extract_zip(
    zip_path: Path,
    target: Path,
    *,
    max_bytes: int | None = None,
    max_files: int | None = None,
    digest: str | None = None,
) -> tuple[Path, list[SkippedFile]]:
    """Extract ``zip_path`` under ``target``; return the data set root and the skipped entries.

    ``digest`` is the zip's :func:`file_sha256` if the caller has it already."""
    zip_path, target = Path(zip_path), Path(target)
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    max_files = MAX_FILES if max_files is None else max_files
    check_zip_size(zip_path)
    digest = digest or file_sha256(zip_path)
    done, out = target / _DONE, target / "dataset"
    if out.is_dir() and done.is_file() and done.read_text().split("\n")[0] == digest:
        lines = done.read_text().split("\n")
        skipped = [SkippedFile(*line.split("\t", 1)) for line in lines[1:] if "\t" in line]
        return _unwrap(out, skipped)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"{zip_path.name} is not a readable zip file ({e})") from None
    with zf:
        plan, skipped = _plan(zf, zip_path.name, max_bytes, max_files)
        staging = target / ".extracting"
        try:
            if out.exists():
                shutil.rmtree(out)
            target.mkdir(parents=True, exist_ok=True)
            done.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            skipped += _write(zf, plan, staging, zip_path.name, max_bytes)
            staging.rename(out)
            done.write_text("\n".join([digest] + [f"{s.path}\t{s.reason}" for s in skipped]) + "\n")
        except BaseException as e:
            shutil.rmtree(staging, ignore_errors=True)
            if is_disk_full(e):
                raise disk_full_error(f"extracting {zip_path.name}") from None
            raise
    return _unwrap(out, skipped)


def check_entries(zf: zipfile.ZipFile, name: str) -> None:
    """Refuse what :func:`extract_zip` would refuse from the zip's directory alone (paths,
    links, passwords, declared sizes and counts over the caps), writing nothing."""
    _plan(zf, name, MAX_BYTES, MAX_FILES)


def _plan(
    zf: zipfile.ZipFile, name: str, max_bytes: int, max_files: int
) -> tuple[list[tuple[zipfile.ZipInfo, PurePosixPath]], list[SkippedFile]]:
    """Check every entry before anything is written; return what to extract and what not."""
    plan: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    skipped: list[SkippedFile] = []
    seen: set[PurePosixPath] = set()
    macosx = 0
    total = 0
    for info in zf.infolist():
        raw = info.filename.replace("\\", "/")
        if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
            raise UserError(f"{name}: entry {info.filename!r} has an absolute path; refusing it")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise UserError(
                f"{name}: entry {info.filename!r} points outside the archive; refusing it"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UserError(f"{name}: entry {info.filename!r} is a symbolic link; refusing it")
        if info.flag_bits & 0x1:
            raise UserError(f"{name} is password-protected: zip the folder without a password")
        if info.is_dir() or not parts:
            continue
        rel = PurePosixPath(*parts)
        if parts[0] == "__MACOSX":
            macosx += 1
        elif any(is_hidden(p) for p in parts):
            skipped.append(SkippedFile(str(rel), "hidden file"))
        elif rel in seen:
            skipped.append(SkippedFile(str(rel), "duplicate entry in the zip: kept the first"))
        else:
            seen.add(rel)
            plan.append((info, rel))
            total += info.file_size
    if len(plan) > max_files:
        raise UserError(f"{name} holds {len(plan)} files; the limit is {max_files}")
    if total > max_bytes:
        raise UserError(
            f"{name} would expand to {_gb(total)}, over the {_gb(max_bytes)} limit: "
            "use fewer or smaller images"
        )
    if macosx:
        entries = "1 entry" if macosx == 1 else f"{macosx} entries"
        skipped.insert(0, SkippedFile("__MACOSX/", f"macOS metadata ({entries})"))
    return plan, skipped


def _write(
    zf: zipfile.ZipFile,
    plan: list[tuple[zipfile.ZipInfo, PurePosixPath]],
    staging: Path,
    name: str,
    max_bytes: int,
) -> list[SkippedFile]:
    skipped: list[SkippedFile] = []
    written = 0
    for info, rel in plan:
        dest = staging.joinpath(*rel.parts)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise UserError(
                            f"{name} expands past the {_gb(max_bytes)} limit (its declared "
                            "sizes are wrong: a zip bomb?); refusing it"
                        )
                    out.write(chunk)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - bad CRC, unsupported method, name clash
            if is_disk_full(e):  # not a bad entry: every later one would fail too
                raise
            dest.unlink(missing_ok=True)
            skipped.append(SkippedFile(str(rel), f"cannot extract ({type(e).__name__}: {e})"))
    return skipped


def _unwrap(out: Path, skipped: list[SkippedFile]) -> tuple[Path, list[SkippedFile]]:
    """Descend while a folder holds just one (non-hidden) folder that itself holds folders;
    make the skipped paths below the new root relative to it, like the scanner's."""
    root = out
    while True:
        children = [c for c in root.iterdir() if not is_hidden(c.name)]
        if len(children) != 1 or not children[0].is_dir():
            break
        if not any(c.is_dir() for c in children[0].iterdir()):
            break
        root = children[0]
    prefix = root.relative_to(out).as_posix() + "/"
    if prefix == "./":
        return root, skipped
    return root, [
        SkippedFile(s.path.removeprefix(prefix), s.reason) if s.path.startswith(prefix) else s
        for s in skipped
    ]


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**29 else f"{n / 2**20:.1f} MB"
