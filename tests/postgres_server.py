"""A real PostgreSQL server for the tests, started from the installed server binaries on a free
loopback port (initdb, then pg_ctl), in a scratch folder; stopped at the end of the session.

PostgreSQL refuses to run as root: where the tests run as root (CI), the server runs as the
``postgres`` user the Debian package creates. Skips, saying how to enable it, where no server
binaries exist; ``POSTSCHEDULER_REQUIRE_TOOLS=1`` (``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .fakes import free_port

SEARCH = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


class UnavailableError(Exception):
    pass


def _binary(name: str) -> str:
    for folder in SEARCH:
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise UnavailableError(
            f"no PostgreSQL server binaries ({name}): apt-get install postgresql to run the "
            "PostgreSQL ledger tests"
        )
    return found


class Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(root, "postgres")
        self._names = itertools.count()

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise UnavailableError(
                f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}"
            )

    def start(self) -> None:
        if not self.data.exists():
            self._run(
                _binary("initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            )
        self._run(
            _binary("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def running() -> Iterator[Server]:
    _binary("initdb")
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise UnavailableError("psycopg is a dependency: pip install -e '.[test]'") from exc
    with tempfile.TemporaryDirectory(prefix="postscheduler-pg-") as tmp:
        Path(tmp).chmod(0o755)  # the postgres user reaches its data folder
        server = Server(Path(tmp))
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(UnavailableError):
                server.stop("immediate")
