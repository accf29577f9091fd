"""The one exception type that carries a message meant for the user, and full disks."""

from __future__ import annotations

import errno
import sqlite3


class UserError(Exception):
    """A problem with the user's input or environment, with what to do about it.

    The CLI prints ``str(error)`` without a traceback and exits with status 2; the
    dashboard shows it with ``st.error``. Raise it wherever a user-supplied value is
    refused, and say what to do instead.
    """


def is_disk_full(error: BaseException) -> bool:
    """An ``OSError`` for a full disk or quota, or SQLite's "database or disk is full"."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(error)
    return False


def disk_full_error(doing: str) -> UserError:
    """The message for a full disk: what was being written, and what to do."""
    return UserError(f"no space left on device while {doing}; free some disk space and start again")
