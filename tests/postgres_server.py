"""A throwaway PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` in a temporary folder on a
free port, removed afterwards. Debian's ``postgresql`` package (``.ci/run`` installs it)
puts the binaries in ``/usr/lib/postgresql/<version>/bin``.

``initdb`` and ``postgres`` refuse to run as root; as root (CI's containers) the server runs
as the unprivileged user ``nobody`` (via ``runuser``), in a folder it owns. The server
listens on 127.0.0.1 only, with password (SCRAM) authentication, so the tests use a real
``postgresql://user:password@host:port/db`` URL as a user's other machines would.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUPERUSER, SUPERPASS = "postgres", "pg-test-superuser"


def binaries() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for folder in candidates:
        if all((Path(folder) / b).exists() for b in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def why_not() -> str | None:
    """Why a server can't be started here (None: it can)."""
    if binaries() is None:
        return "PostgreSQL binaries (initdb, pg_ctl) not found; apt-get install postgresql"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root and runuser is missing: initdb refuses to run as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[dict]:
    """Start a server; yield ``{"host", "port", "superuser_url"}``; stop and remove it."""
    bin_dir = binaries()
    assert bin_dir is not None, why_not()
    root = Path(tempfile.mkdtemp(prefix="pg-test-"))
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "nobody", "--"] if as_root else []
    data, sockets, pwfile = root / "data", root / "sockets", root / "pwfile"
    sockets.mkdir()
    pwfile.write_text(SUPERPASS + "\n")
    if as_root:
        for path in (root, sockets, pwfile):
            shutil.chown(path, "nobody")
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C"}

    def run(*args: str) -> None:
        subprocess.run(
            [*prefix, *args], check=True, env=env, capture_output=True, timeout=120, cwd=root
        )

    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
        )
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )
        try:
            yield {
                "host": "127.0.0.1",
                "port": port,
                "superuser_url": f"postgresql://{SUPERUSER}:{SUPERPASS}@127.0.0.1:{port}/postgres",
            }
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    except subprocess.CalledProcessError as e:
        raise AssertionError(
            f"{e.cmd[len(prefix)]} failed: {e.stderr.decode(errors='replace')}"
        ) from None
    finally:
        shutil.rmtree(root, ignore_errors=True)
