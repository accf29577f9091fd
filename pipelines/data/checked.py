"""What decoding each file found, remembered on disk, so a second load needn't decode.

A file is known by ``(absolute path, size, mtime_ns)``; what is kept is the outcome of
:func:`pipelines.data.images.read_image` on it: usable (with its content digest and
:class:`ImageInfo`) or the reason it was skipped. With every file of a data set known, a
load can report, split and fingerprint it without touching pixels, and decode only when
an experiment actually needs images (the feature cache often means it never does).

The table lives in SQLite beside the feature cache (``settings.feature_cache_dir()``);
it is a cache: deleting it only costs one decode.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing

from pipelines import settings
from pipelines.data.images import Decoded, ImageInfo
from pipelines.data.scan import ImageFile

SCHEMA_VERSION = 1


def _connect() -> sqlite3.Connection:
    root = settings.feature_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(root / "checked_files.sqlite3", timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS checked (path TEXT, size INTEGER, mtime_ns INTEGER,"
        " version INTEGER, digest TEXT, width INTEGER, height INTEGER, mode TEXT,"
        " format TEXT, reason TEXT, PRIMARY KEY (path, size, mtime_ns, version))"
    )
    return conn


def _key(f: ImageFile) -> tuple:
    return (str(f.path.resolve()), f.size, f.mtime_ns, SCHEMA_VERSION)


def lookup(files: Sequence[ImageFile]) -> Decoded | None:
    """The decode outcome of every file, without pixels, or None if any file is unknown."""
    try:
        with closing(_connect()) as conn:
            rows = {}
            for f in files:
                row = conn.execute(
                    "SELECT digest, width, height, mode, format, reason FROM checked"
                    " WHERE path=? AND size=? AND mtime_ns=? AND version=?",
                    _key(f),
                ).fetchone()
                if row is None:
                    return None
                rows[f] = row
    except sqlite3.Error:
        return None  # an unreadable cache is a miss, never an error
    ok, infos, digests, failures = [], [], [], []
    for i, f in enumerate(files):
        digest, w, h, mode, fmt, reason = rows[f]
        if reason is None:
            ok.append(i)
            infos.append(ImageInfo(w, h, mode, fmt))
            digests.append(digest)
        else:
            failures.append((i, reason))
    return Decoded(None, tuple(ok), tuple(infos), tuple(digests), tuple(failures))


def remember(files: Sequence[ImageFile], decoded: Decoded) -> None:
    """Record what ``decoded`` (from decoding ``files``) found; best effort."""
    rows = [
        (*_key(files[i]), digest, info.width, info.height, info.mode, info.format, None)
        for i, info, digest in zip(decoded.ok, decoded.infos, decoded.digests, strict=True)
    ]
    rows += [
        (*_key(files[i]), None, None, None, None, None, reason) for i, reason in decoded.failures
    ]
    try:
        with closing(_connect()) as conn, conn:
            conn.executemany("INSERT OR REPLACE INTO checked VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    except sqlite3.Error:
        pass
