"""mastodon-mock, a third-party Mastodon API server, run on a free loopback port for the tests
(in memory, in a scratch folder); its leniencies are in ../shared/interop/MANIFEST.md."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from .fakes import free_port

TOKEN = "mock_token"  # the seeded testuser's token
START_TIMEOUT = 60.0
LOG = ("--log-level", "info")  # for its start-up line


class StartError(Exception):
    pass


@contextmanager
def running(cwd: Path) -> Iterator[str]:
    """Serve mastodon-mock until the block ends; yields its base URL once the server says it
    is up (uvicorn's start-up line on its log)."""
    exe = shutil.which("mastodon_mock") or str(Path(sys.executable).parent / "mastodon_mock")
    port = free_port()
    proc = subprocess.Popen(
        [*(exe, "serve", "--in-memory", "--host", "127.0.0.1", "--port", str(port)), *LOG],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    up = threading.Event()

    def read_log() -> None:  # and keep reading, so that the pipe never fills
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Application startup complete" in line:
                up.set()
        up.set()  # it exited: the wait below finds out

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        if not up.wait(START_TIMEOUT) or proc.poll() is not None:
            raise StartError("mastodon-mock did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def statuses(base: str) -> list[dict[str, object]]:
    """Every status of the seeded test user, read back page by page (newest first)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    me = httpx.get(f"{base}/api/v1/accounts/verify_credentials", headers=auth, timeout=10)
    me.raise_for_status()
    out: list[dict[str, object]] = []
    params: dict[str, str | int] = {"limit": 40}
    while True:
        page = httpx.get(
            f"{base}/api/v1/accounts/{me.json()['id']}/statuses",
            params=params,
            headers=auth,
            timeout=10,
        )
        page.raise_for_status()
        rows = page.json()
        if not rows:
            return out
        out.extend(rows)
        params["max_id"] = rows[-1]["id"]
