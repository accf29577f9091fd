"""Fail fast, with a message that says what to do, when a remote model can't be fetched.

``tensorflow_hub`` would otherwise wait on DNS and TCP time-outs (minutes behind some
firewalls) and then raise a bare traceback. :func:`ensure_reachable` answers within
``timeout`` seconds: the name lookup runs in a daemon thread so a hanging resolver can't
hold the caller.
"""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlparse

from pipelines.errors import UserError

TIMEOUT_S = 3.0


def _connect(host: str, port: int, timeout: float, result: list) -> None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        result.append(None)
    except OSError as e:
        result.append(e)


def ensure_reachable(url: str, *, timeout: float = TIMEOUT_S, builtins: list[str] = ()) -> None:
    """Return if ``url``'s host accepts a TCP connection, else raise :class:`UserError`."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    result: list = []
    worker = threading.Thread(target=_connect, args=(host, port, timeout, result), daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    problem = "timed out" if not result else result[0]
    if problem is None:
        return
    choices = ", ".join(builtins) if builtins else "a built-in backbone"
    raise UserError(
        f"could not download the model {url}: no connection to {host} ({problem}). "
        f"Pick {choices}, which work offline, or download the model on a machine with "
        "internet (TF Hub caches it in TFHUB_CACHE_DIR) and give its local SavedModel folder."
    )
