"""The real AT Protocol PDS (the reference Bluesky server) on 127.0.0.1, for the tests.

The recipe lives in ``../shared/interop/bluesky-pds/`` (npm lockfile + launcher) and stays
there: its files are copied into ``build/bluesky-pds/`` of this project at run time and
installed there with ``npm ci`` (about two minutes, once per checkout; the folder may be
read-only in ``../shared``). ``python -m tests.bluesky_pds`` installs it ahead of time.

Tests get a running server from ``start()``: it prints one JSON line when ready and is told to
exit when its stdin closes, so a killed test run never leaves it behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("POSTSCHEDULER_SHARED", PROJECT_ROOT.parent / "shared"))
RECIPE = SHARED / "interop" / "bluesky-pds"
BUILD = PROJECT_ROOT / "build" / "bluesky-pds"
RECIPE_FILES = ("package.json", "package-lock.json", "launcher.cjs", "start-pds.sh")


class UnavailableError(Exception):
    """The PDS cannot run on this machine; the message says why (tests skip with it)."""


@dataclasses.dataclass(frozen=True)
class PDS:
    url: str
    handle: str
    password: str
    did: str
    process: subprocess.Popen[bytes]

    def create_account(self, handle: str, password: str = "password-1") -> str:
        """Another account on this server (handles end in .test); returns its DID."""
        answer = httpx.post(
            f"{self.url}/xrpc/com.atproto.server.createAccount",
            json={"handle": handle, "email": f"{handle}@example.com", "password": password},
            timeout=30,
        )
        answer.raise_for_status()
        return str(answer.json()["did"])

    def list_records(self, did: str | None = None) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"repo": did or self.did, "collection": "app.bsky.feed.post", "limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = httpx.get(
                f"{self.url}/xrpc/com.atproto.repo.listRecords", params=params, timeout=30
            ).json()
            records.extend(page["records"])
            cursor = page.get("cursor")
            if not cursor or not page["records"]:
                return records

    def get_record(self, uri: str) -> dict[str, Any]:
        repo, collection, rkey = uri.removeprefix("at://").split("/")
        answer = httpx.get(
            f"{self.url}/xrpc/com.atproto.repo.getRecord",
            params={"repo": repo, "collection": collection, "rkey": rkey},
            timeout=30,
        )
        answer.raise_for_status()
        return dict(answer.json())


def _recipe_changed() -> bool:
    for name in RECIPE_FILES:
        ours = BUILD / name
        if not ours.exists() or ours.read_bytes() != (RECIPE / name).read_bytes():
            return True
    return False


def install() -> Path:
    """Copy the recipe into build/bluesky-pds and npm-install it there (once)."""
    if not RECIPE.is_dir():
        raise UnavailableError(f"the PDS recipe is not at {RECIPE} (set POSTSCHEDULER_SHARED)")
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise UnavailableError(f"{tool} is not installed; the Bluesky PDS needs Node.js 20")
    BUILD.mkdir(parents=True, exist_ok=True)
    with (BUILD / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs must not npm-install at once
        if _recipe_changed():
            for name in RECIPE_FILES:
                shutil.copy2(RECIPE / name, BUILD / name)
        done = subprocess.run(
            ["bash", str(BUILD / "start-pds.sh"), "--install-only"],
            cwd=BUILD,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if done.returncode != 0:
            tail = done.stdout.decode(errors="replace")[-3000:]
            raise RuntimeError(f"installing the PDS in {BUILD} failed:\n{tail}")
    return BUILD


def start(*, data_dir: Path | None = None, timeout: float = 60.0) -> PDS:
    """Start the PLC directory and the PDS on free loopback ports; returns once ready."""
    build = install()
    env = {**os.environ, "PDS_EXIT_ON_STDIN_EOF": "1"}
    if data_dir is not None:
        env["PDS_DATA_DIR"] = str(data_dir)
    proc = subprocess.Popen(
        ["node", "launcher.cjs"],
        cwd=build,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"the PDS exited with {proc.returncode}:\n{err[-3000:]}")
        chunk = proc.stdout.read()
        if chunk:
            line += chunk
        else:
            time.sleep(0.05)
    if not line.endswith(b"\n"):
        stop(proc)
        raise RuntimeError(f"the PDS did not start within {timeout:.0f} s")
    info = json.loads(line)
    return PDS(info["pdsUrl"], info["handle"], info["password"], info["did"], proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[PDS]:
    pds = start(**kwargs)
    try:
        yield pds
    finally:
        stop(pds.process)


if __name__ == "__main__":
    started = time.monotonic()
    try:
        print(f"installed in {install()} ({time.monotonic() - started:.0f} s)")
    except UnavailableError as exc:
        sys.exit(f"cannot install the PDS: {exc}")
