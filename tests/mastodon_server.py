"""mastodon-mock, a third-party Mastodon API server, run on a free loopback port for the tests
(in memory, in a scratch folder); its leniencies are in ../shared/interop/MANIFEST.md."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from .fakes import free_port

TOKEN = "mock_token"  # the seeded testuser's token
START_TIMEOUT = 60.0


class StartError(Exception):
    pass


@contextmanager
def running(cwd: Path) -> Iterator[str]:
    """Serve mastodon-mock until the block ends; yields its base URL."""
    exe = shutil.which("mastodon_mock") or str(Path(sys.executable).parent / "mastodon_mock")
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "serve",
            "--in-memory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(f"{base}/api/v1/instance", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise StartError("mastodon-mock did not start")
            time.sleep(0.1)  # polling for the server to answer, with a deadline
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
