"""A daemon's id on a shared ledger: kept across restarts, never shared with a live copy."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postscheduler.config import Settings, load_settings
from postscheduler.delivery.registration import registered
from postscheduler.ledger import DeliveryKey
from postscheduler.ledger.postgres import PostgresLedger

T0 = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=30)
KEY = DeliveryKey("peru-article", "outbox")


def checkout(root: Path, ledger: str) -> Settings:
    root.mkdir(parents=True)
    (root / "posts").mkdir()
    (root / "scheduler.yaml").write_text(
        f"ledger: {ledger}\naccounts:\n  outbox: {{platform: outbox}}\npublishing:\n  lease: 30s\n"
    )
    return load_settings(root / "scheduler.yaml", environ={})


@pytest.fixture
def database(postgres: Any) -> Iterator[str]:
    yield postgres.new_database()


@contextlib.contextmanager
def other_process(alive: bool) -> Iterator[int]:
    """The pid of another process of this host: running until the block ends, or gone."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    if not alive:
        proc.communicate(b"")
    try:
        yield proc.pid
    finally:
        proc.communicate(b"")


@pytest.mark.parametrize(
    ("holder", "kept"),
    [
        ("this host, a live process", False),  # a copy of the checkout beside the first
        ("another host", False),  # the state folder copied to another machine
        ("this host, a process gone", True),  # the same checkout restarted after kill -9
    ],
)
def test_a_copied_state_folder_gets_an_id_of_its_own(
    tmp_path: Path, database: str, caplog: pytest.LogCaptureFixture, holder: str, kept: bool
) -> None:
    settings = checkout(tmp_path / "b", database)
    settings.state_dir.mkdir(parents=True)
    (settings.state_dir / "daemon.id").write_text("copied-id")
    first = PostgresLedger(database)
    second = PostgresLedger(database)
    try:
        with other_process(alive=holder != "this host, a process gone") as pid:
            host = "elsewhere.example" if holder == "another host" else socket.gethostname()
            first.register("copied-id", host, pid, LEASE, T0)
            first.plan(KEY, T0, "h", T0)
            first.claim(KEY, "id-1", T0)
            caplog.set_level(logging.WARNING)
            with registered(settings, second, lambda: T0) as ident:
                written = (settings.state_dir / "daemon.id").read_text()
                in_flight = {d.id: d.in_flight for d in second.daemons(T0)}
                delivery = second.get(KEY)
            assert delivery is not None
            if kept:
                assert ident == written == "copied-id"
                assert delivery.owner is None  # its own earlier process's: in doubt at once
                assert "is held by" not in caplog.text
            else:
                assert ident == written != "copied-id"
                assert ident.startswith(socket.gethostname() + "-")
                assert in_flight == {"copied-id": 1, ident: 0}
                assert delivery.owner == "copied-id"  # the live one's claim is untouched
                assert f"daemon id copied-id is held by pid {pid} on {host}" in caplog.text
                assert str(settings.state_dir) in caplog.text
    finally:
        first.close()
        second.close()


def test_a_checkout_keeps_its_id_across_restarts(tmp_path: Path, database: str) -> None:
    settings = checkout(tmp_path / "a", database)
    ledger = PostgresLedger(database)
    try:
        with registered(settings, ledger, lambda: T0) as first:
            pass
        with registered(settings, ledger, lambda: T0 + dt.timedelta(seconds=5)) as again:
            pass
        assert first == again == (settings.state_dir / "daemon.id").read_text()
        copy = tmp_path / "copy"
        shutil.copytree(tmp_path / "a", copy)  # copied while no daemon runs: nothing to fear
        copied = load_settings(copy / "scheduler.yaml", environ={})
        with registered(copied, ledger, lambda: T0 + dt.timedelta(seconds=6)) as ident:
            assert ident == first
    finally:
        ledger.close()
