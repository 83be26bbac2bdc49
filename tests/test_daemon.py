"""`postscheduler run` as a real process: publishing on time, following edits, stopping."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from postscheduler.config import Settings
from postscheduler.ledger import DeliveryKey, DeliveryState
from postscheduler.ledger.sqlite import SqliteLedger

from .conftest import Project

CONFIG = """\
timezone: UTC
posts_dir: posts
ledger: state/ledger.db
accounts:
  outbox: {platform: outbox, path: outbox}
defaults: {accounts: [outbox]}
"""


def at(seconds: float) -> str:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return when.isoformat(timespec="seconds")


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def project(make_project: Callable[[str], Project]) -> Project:
    return make_project(CONFIG)


class Daemon(subprocess.Popen[str]):
    """``postscheduler run`` with its log read as it comes, so a test can wait for a line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(
            *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.stdout is not None
        for line in self.stdout:
            self.lines.append(line)

    def logged(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def communicate(self, *args: Any, **kwargs: Any) -> tuple[str, str]:
        self.wait(kwargs.get("timeout"))
        self._reader.join(timeout=10)
        if self.stdout is not None:
            self.stdout.close()
        return "".join(self.lines), ""


@pytest.fixture
def daemon(project: Project) -> Iterator[Daemon]:
    proc = Daemon([sys.executable, "-m", "postscheduler", "run", "-c", str(project.config_path)])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


def webhook_project(make_project: Callable[[str], Project], url: str, text: str) -> Project:
    """A project whose account ``site`` is a signed webhook at ``url`` (secret in ``$S``),
    with one post ``p`` due a second ago."""
    project = make_project(
        CONFIG.replace(
            "accounts:\n",
            f'accounts:\n  site: {{platform: webhook, url: "{url}", secret: "${{S}}"}}\n',
        )
    )
    project.write("p.yaml", f"id: p\nat: {at(-1)}\ntext: {text}\naccounts: [site]\n")
    return project


def row(project: Project, post: str) -> DeliveryState | None:
    ledger = SqliteLedger(project.root / "state" / "ledger.db")
    try:
        found = ledger.get(DeliveryKey(post, "outbox"))
        return found.state if found else None
    finally:
        ledger.close()


def outbox(project: Project, post: str) -> Path:
    return project.root / "outbox" / f"{post}.outbox.1.json"


def test_daemon_publishes_on_time_follows_edits_and_stops_cleanly(
    project: Project, daemon: Daemon
) -> None:
    project.write("soon.yaml", f"id: soon\nat: {at(1.5)}\ntext: On time.\n")
    project.write("later.yaml", f"id: later\nat: {at(3600)}\ntext: Not yet.\n")
    project.write("dropped.yaml", f"id: dropped\nat: {at(3600)}\ntext: Never.\n")
    assert wait_for(lambda: outbox(project, "soon").exists()), "the due post never arrived"
    assert not outbox(project, "later").exists()

    # edits while running: a new post, a post moved to now, a deleted post, a broken file
    project.write("new.yaml", f"id: new\nat: {at(1)}\ntext: Added while running.\n")
    project.write("later.yaml", f"id: later\nat: {at(1)}\ntext: Moved up.\n")
    (project.posts / "dropped.yaml").unlink()
    project.write("broken.yaml", "id: broken\nat: [\n")
    assert wait_for(lambda: outbox(project, "new").exists() and outbox(project, "later").exists())
    # while broken.yaml cannot be read, no post is taken for deleted (it may be in there)...
    assert wait_for(lambda: daemon.logged("held, not cancelled, while")), daemon.lines
    assert row(project, "dropped") is DeliveryState.PLANNED
    (project.posts / "broken.yaml").unlink()  # ...once it is gone, the deletion is seen
    assert wait_for(lambda: row(project, "dropped") is DeliveryState.SKIPPED)
    assert not outbox(project, "dropped").exists()

    # `publish --now` from another shell: the running daemon sends it
    project.write("manual.yaml", f"id: manual\nat: {at(7200)}\ntext: By hand.\n")
    assert wait_for(lambda: row(project, "manual") is DeliveryState.PLANNED)
    # Only the new file was read: the other three were kept from the reloads before.
    assert wait_for(lambda: daemon.logged("from 4 files (1 read again)")), daemon.lines
    config = ["-c", str(project.config_path)]
    by_hand = subprocess.run(
        [sys.executable, "-m", "postscheduler", "publish", "manual", "--now", *config],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert by_hand.returncode == 0, by_hand.stderr
    assert "a daemon is running" in by_hand.stderr
    assert wait_for(lambda: outbox(project, "manual").exists())

    # a second daemon on the same ledger is refused
    second = subprocess.run(
        [sys.executable, "-m", "postscheduler", "run", "-c", str(project.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2
    assert "another postscheduler daemon is running" in second.stderr
    assert "Traceback" not in second.stderr

    daemon.send_signal(signal.SIGTERM)
    output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, output
    assert "Traceback" not in output
    assert "broken.yaml" in output  # the bad file was reported, the rest went on
    assert "daemon stopped" in output
    for post in ("soon", "new", "later", "manual"):
        assert row(project, post) is DeliveryState.PUBLISHED


def test_run_once_and_status(project: Project) -> None:
    project.write("due.yaml", f"id: due\nat: {at(-5)}\ntext: Due.\n")
    project.write("future.yaml", f"id: future\nat: {at(3600)}\ntext: Later.\n")
    cmd = [sys.executable, "-m", "postscheduler"]
    once = subprocess.run(
        [*cmd, "run", "--once", "-c", str(project.config_path)], capture_output=True, text=True
    )
    assert once.returncode == 0, once.stderr
    assert outbox(project, "due").exists() and not outbox(project, "future").exists()
    assert "published: due → outbox" in once.stdout  # what this run did, not ledger totals
    assert "this run: 1 published" in once.stderr
    status = subprocess.run(
        [*cmd, "status", "-c", str(project.config_path)], capture_output=True, text=True
    )
    assert status.returncode == 0
    assert "planned: 1" in status.stdout and "published: 1" in status.stdout
    assert "next: future → outbox" in status.stdout
    hist = subprocess.run(
        [*cmd, "history", "--post", "due", "-c", str(project.config_path)],
        capture_output=True,
        text=True,
    )
    lines = hist.stdout.splitlines()[2:]
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC ", line) for line in lines)
    assert "file://" in lines[-1] and " · text " in lines[-1]  # where it went, what it sent
    assert [line.split()[6] for line in lines] == [
        "planned",
        "sending",
        "published",
    ]
    again = subprocess.run(
        [*cmd, "run", "--once", "-c", str(project.config_path)],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and "this run: nothing was due" in again.stderr
    assert len(list((project.root / "outbox").glob("*.json"))) == 1  # nothing sent twice


def test_run_once_exits_1_when_it_leaves_a_delivery_failed(make_project) -> None:  # type: ignore[no-untyped-def]
    """For cron: a run that ends with a failure says so in its exit status and its output."""
    from .fakes.platforms import FakeWebhook

    with FakeWebhook("s3cret-value") as server:
        server.faults.append((422, {"Content-Type": "application/json"}, b'{"error": "no"}'))
        project = webhook_project(make_project, server.url, "Refused.")
        once = subprocess.run(
            [
                sys.executable,
                "-m",
                "postscheduler",
                "run",
                "--once",
                "-c",
                str(project.config_path),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "S": "s3cret-value"},
            timeout=60,
        )
    assert once.returncode == 1, once.stdout + once.stderr
    assert "failed: p → site: webhook site: 422" in once.stdout and "1 failed" in once.stderr


def test_rehearsal_of_the_example_campaign(tmp_path: Path) -> None:
    """The quick start: every example post arrives in the outbox, in order, ledger untouched."""
    import shutil

    from .conftest import PROJECT_ROOT

    shutil.copytree(PROJECT_ROOT / "posts", tmp_path / "posts")
    result = subprocess.run(
        [sys.executable, "-m", "postscheduler", "run", "--rehearse"],
        cwd=tmp_path,  # no scheduler.yaml here: the embedded default
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Thu 2027-01-14 09:00 GMT  peru-article → outbox")
    assert len(lines) == 10 and "rehearsed 10 deliveries" in result.stderr
    timeline = (tmp_path / "outbox" / "timeline.txt").read_text()
    assert "📷 Kawsachun News/twitter" in timeline
    assert timeline.index("peru-article") < timeline.index("peru-thread")
    assert not (tmp_path / ".postscheduler").exists()  # the real ledger was not touched
    again = subprocess.run(
        [sys.executable, "-m", "postscheduler", "run", "--rehearse"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0
    assert (tmp_path / "outbox" / "timeline.txt").read_text() == timeline  # nothing twice


def test_configuration_edits_are_followed(project: Project, daemon: Daemon) -> None:
    # a post for an account that does not exist yet is held (the daemon says so)...
    project.write("a.yaml", f"id: a\nat: {at(1)}\ntext: For the new account.\naccounts: [second]\n")
    assert wait_for(lambda: daemon.logged("HELD") and daemon.logged("'second'")), daemon.lines
    assert not (project.root / "outbox2").exists()
    # ...until the configuration gains it: the daemon reloads scheduler.yaml by itself
    project.config_path.write_text(
        CONFIG.replace("accounts:\n", "accounts:\n  second: {platform: outbox, path: outbox2}\n")
    )
    assert wait_for(lambda: (project.root / "outbox2" / "a.second.1.json").exists())
    daemon.send_signal(signal.SIGTERM)
    output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0 and "Traceback" not in output


def test_a_configuration_edit_made_before_the_watcher_starts_is_followed(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    """The CLI reads scheduler.yaml well before the daemon watches it: an edit in between
    (seen in CI, where the test edits the file as soon as the first read logs HELD) is
    picked up at start-up rather than at the next edit."""
    import logging

    project.write(
        "a.yaml", f"id: a\nat: {at(-1)}\ntext: For the new account.\naccounts: [second]\n"
    )
    settings = project.settings()  # as the CLI read it
    project.config_path.write_text(
        CONFIG.replace("accounts:\n", "accounts:\n  second: {platform: outbox, path: outbox2}\n")
    )
    caplog.set_level(logging.INFO, logger="postscheduler")
    with in_process(project, settings) as daemon:
        assert wait_for(lambda: (project.root / "outbox2" / "a.second.1.json").exists()), (
            caplog.text
        )
        assert "second" in daemon.settings.config.accounts
    assert "Traceback" not in caplog.text


def test_sigterm_lets_a_delivery_in_flight_finish(make_project) -> None:  # type: ignore[no-untyped-def]
    from .fakes.platforms import FakeWebhook

    with FakeWebhook("term-secret") as server:
        server.latency = 2.0  # the request is in flight when SIGTERM arrives
        project = webhook_project(make_project, server.url, "Slow.")
        proc = subprocess.Popen(
            [sys.executable, "-m", "postscheduler", "run", "-c", str(project.config_path)],
            env={**os.environ, "S": "term-secret"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert wait_for(lambda: server.requests == 1), "the delivery never started"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output
        assert "waiting for 1 in flight" in output
        ledger = SqliteLedger(project.root / "state" / "ledger.db")
        try:
            delivered = ledger.get(DeliveryKey("p", "site"))
        finally:
            ledger.close()
        assert delivered is not None and delivered.state is DeliveryState.PUBLISHED
        assert len(server.received) == 1


def test_a_failing_reload_is_logged_and_edits_are_still_followed(
    project: Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No exception ends the watcher silently: it is logged, and later edits still land."""
    import logging

    from postscheduler.delivery import daemon as daemon_module

    real = daemon_module.posts_to_publish
    armed: list[str] = []  # once started: the next reload fails, the one after does not

    def flaky(settings: Any, now: dt.datetime, cache: Any = None) -> Any:
        if armed == ["armed"]:
            armed.append("fired")
            raise RuntimeError("boom: a rule with a bug")
        return real(settings, now, cache)

    monkeypatch.setattr(daemon_module, "posts_to_publish", flaky)
    caplog.set_level(logging.INFO, logger="postscheduler")
    with in_process(project) as daemon:
        assert wait_for(lambda: "daemon started" in caplog.text)
        armed.append("armed")
        project.write("a.yaml", f"id: a\nat: {at(-1)}\ntext: The reload of this one fails.\n")
        assert wait_for(lambda: "reloading the posts failed" in caplog.text), caplog.text
        assert "boom: a rule with a bug" in caplog.text  # with its traceback, for a report
        project.write("b.yaml", f"id: b\nat: {at(-1)}\ntext: This edit is still followed.\n")
        assert wait_for(lambda: outbox(project, "b").exists()), caplog.text
        # The next reload picked a.yaml up too; a and b then go out at once, in either order.
        assert wait_for(lambda: outbox(project, "a").exists()), caplog.text
        assert daemon.failure is None


@contextlib.contextmanager
def in_process(
    project: Project, settings: Settings | None = None, redactor: Any = None
) -> Iterator[Any]:
    """The daemon run on a thread of this process, so a test can patch it or look inside."""
    from postscheduler.delivery.daemon import Daemon as InProcess

    daemon = InProcess(
        project.config_path, settings=settings or project.settings(), redactor=redactor
    )
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_until_complete, args=(daemon.run(),))
    runner.start()
    try:
        yield daemon
    finally:
        loop.call_soon_threadsafe(daemon.stop)
        runner.join(timeout=30)
        loop.close()


def test_a_post_due_beyond_the_scheduling_horizon_is_scheduled_as_it_nears(
    project: Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Only what is due within SCHEDULE_AHEAD is an APScheduler job; the rescan adds the
    rest as it nears (here the horizon is a second, the rescan a tenth of one)."""
    import logging

    from postscheduler.delivery import daemon as daemon_module

    monkeypatch.setattr(daemon_module, "SCHEDULE_AHEAD", dt.timedelta(seconds=1))
    monkeypatch.setattr(daemon_module, "RESCAN_INTERVAL", 0.1)
    project.write("far.yaml", f"id: far\nat: {at(3)}\ntext: Beyond the horizon at first.\n")
    caplog.set_level(logging.INFO, logger="postscheduler")
    with in_process(project) as daemon:
        assert wait_for(lambda: "daemon started" in caplog.text)
        assert daemon.scheduler.get_job("far@outbox") is None  # not a job yet
        assert wait_for(lambda: daemon.scheduler.get_job("far@outbox") is not None)
        assert wait_for(lambda: outbox(project, "far").exists()), caplog.text
    assert row(project, "far") is DeliveryState.PUBLISHED


def test_a_ledger_removed_under_the_daemon_stops_it_and_is_not_started_afresh(
    project: Project, daemon: Daemon
) -> None:
    project.write("p.yaml", f"id: p\nat: {at(-1)}\ntext: Sent once.\n")
    assert wait_for(lambda: outbox(project, "p").exists()), daemon.lines
    ledger = project.root / "state" / "ledger.db"
    for leftover in ledger.parent.glob("ledger.db*"):
        if not leftover.name.endswith(".lock"):
            leftover.unlink()  # as a careless redeploy would
    assert wait_for(lambda: daemon.poll() is not None), daemon.lines
    output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 2, output
    assert "was removed or replaced" in output and "Traceback" not in output
    # Starting again on the missing ledger would send p a second time: refused.
    again = subprocess.run(
        [sys.executable, "-m", "postscheduler", "run", "--once", "-c", str(project.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "is missing, but a daemon has used it" in again.stderr
    assert len(list((project.root / "outbox").glob("p.*.json"))) == 1


def cli(
    project: Project, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postscheduler", *args, "-c", str(project.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_pause_stops_a_running_daemon_and_resume_sends_what_it_held(
    project: Project, daemon: Daemon
) -> None:
    """The emergency pause: recorded in the ledger, obeyed by the daemon already running;
    a post due during the pause is not sent, then goes out once resumed."""
    project.write("first.yaml", f"id: first\nat: {at(-1)}\ntext: Before the news.\n")
    assert wait_for(lambda: outbox(project, "first").exists()), daemon.lines
    paused = cli(project, "pause", "--reason", "breaking news")
    assert paused.returncode == 0 and "paused all accounts" in paused.stdout, paused.stderr
    project.write("held.yaml", f"id: held\nat: {at(1)}\ntext: During the pause.\n")
    assert wait_for(lambda: daemon.logged("PAUSED held → outbox")), daemon.lines
    assert not outbox(project, "held").exists() and row(project, "held") is DeliveryState.PLANNED
    status = cli(project, "status")
    assert "PAUSED: all accounts until resumed: breaking news" in status.stdout
    resumed = cli(project, "resume")
    assert resumed.returncode == 0 and "resumed all accounts" in resumed.stdout
    assert wait_for(lambda: outbox(project, "held").exists(), timeout=10), daemon.lines
    assert "PAUSED" not in cli(project, "status").stdout


def test_pause_refuses_an_unknown_account_and_resume_what_is_not_paused(
    project: Project,
) -> None:
    wrong = cli(project, "pause", "--account", "nope")
    assert wrong.returncode != 0 and "nope" in wrong.stderr and "Traceback" not in wrong.stderr
    nothing = cli(project, "resume")
    assert nothing.returncode != 0 and "all accounts is not paused" in nothing.stderr
    past = cli(project, "pause", "--until", "2020-01-01 09:00")
    assert past.returncode != 0 and "not in the future" in past.stderr


def test_queue_marks_what_a_pause_holds(project: Project) -> None:
    project.write("later.yaml", f"id: later\nat: {at(3600)}\ntext: Not yet.\n")
    assert "outbox: paused" not in cli(project, "queue").stdout
    assert cli(project, "pause", "--account", "outbox").returncode == 0
    assert "outbox: paused" in cli(project, "queue").stdout  # known to the ledger or not
    assert cli(project, "resume", "--account", "outbox").returncode == 0
    assert "paused" not in cli(project, "queue").stdout


def test_sigterm_right_after_start_up_with_thousands_of_jobs_stops_the_daemon(
    project: Project,
) -> None:
    """Each job added to a running APScheduler wakes it with a byte on the event loop's
    self-pipe; thousands filled the pipe, and a SIGTERM whose byte found it full was lost:
    the daemon ran on (found by bench/daemon_bench.py startup)."""
    for i in range(3000):
        project.write(f"p{i}.yaml", f"id: p{i}\nat: {at(86400)}\ntext: Post {i}.\n")
    daemon = Daemon([sys.executable, "-m", "postscheduler", "run", "-c", str(project.config_path)])
    try:
        assert wait_for(lambda: daemon.logged("daemon started"), timeout=120), daemon.lines
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate(timeout=10)
    assert daemon.returncode == 0 and "daemon stopped" in output, output


def test_a_database_lost_between_opening_the_ledger_and_registering_is_waited_for(
    make_project: Callable[[str], Project],
    postgres: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL stopping while a daemon starts, after the ledger opened but before the
    daemon registered on it: the daemon waits for the database, saying so, then starts and
    publishes, instead of exiting (the chaos test's restarted daemons met it)."""
    import logging

    from postscheduler.ledger.postgres import PostgresLedger

    url = postgres.new_database()
    project = make_project(CONFIG.replace("state/ledger.db", f'"{url}"'))
    project.write("p.yaml", f"id: p\nat: {at(-1)}\ntext: Sent once the database is back.\n")
    register = PostgresLedger.register
    stops: list[str] = []

    def register_as_the_database_goes(self: PostgresLedger, *args: Any, **kwargs: Any) -> Any:
        if not stops:
            stops.append("immediate")
            postgres.stop("immediate")
        return register(self, *args, **kwargs)

    monkeypatch.setattr(PostgresLedger, "register", register_as_the_database_goes)
    caplog.set_level(logging.INFO, logger="postscheduler")
    try:
        with in_process(project) as daemon:
            assert wait_for(lambda: "LEDGER UNREACHABLE at start" in caplog.text), caplog.text
            assert "register failed" in caplog.text
            postgres.start()
            assert wait_for(lambda: outbox(project, "p").exists(), timeout=60), caplog.text
            assert daemon.failure is None
    finally:
        if stops and not _answers(url):  # the test failed before starting it again
            postgres.start()
    with PostgresLedger(url) as ledger:
        got = ledger.get(DeliveryKey("p", "outbox"))
    assert got is not None and got.state is DeliveryState.PUBLISHED
    assert "Traceback" not in caplog.text


def _answers(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError:
        return False
    return True


def test_the_lease_keeper_outlives_the_database_lost_again_as_it_returns(
    make_project: Callable[[str], Project],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The ledger failing again just after a heartbeat got through (a flapping database):
    the lease is still renewed afterwards. A lease keeper that ended there would leave the
    daemon sending with a lapsed lease, its deliveries in flight taken over by another."""
    import logging

    from postscheduler.errors import LedgerError

    project = make_project(CONFIG + "publishing: {lease: 2s}\n")
    caplog.set_level(logging.INFO, logger="postscheduler")
    beats: list[dt.datetime] = []
    lost_again = threading.Event()

    def heartbeat(now: dt.datetime) -> bool:
        beats.append(now)
        return len(beats) > 1  # the first: the lease had run out, registered anew

    with in_process(project) as daemon:
        assert wait_for(lambda: "daemon started" in caplog.text), caplog.text
        schedule_all = daemon._schedule_all

        async def flapping() -> None:
            if not lost_again.is_set():
                lost_again.set()
                raise LedgerError("the ledger: deliveries failed: the server closed the connection")
            await schedule_all()

        monkeypatch.setattr(daemon, "_schedule_all", flapping)
        monkeypatch.setattr(daemon.ledger, "heartbeat", heartbeat)
        assert wait_for(lambda: len(beats) >= 4), caplog.text
    assert lost_again.is_set()
    assert "LEDGER UNREACHABLE: the ledger: deliveries failed" in caplog.text
    assert "reachable again: publishing goes on" in caplog.text
    assert "Traceback" not in caplog.text and "keeping the lease failed" not in caplog.text


def test_a_job_scheduled_while_the_whole_schedule_is_read_is_kept(
    project: Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The rows are read off the event loop, so the rescan may schedule a row changed since
    (publish --now) meanwhile: what they say must not remove that newer job."""
    import logging

    caplog.set_level(logging.INFO, logger="postscheduler")
    with in_process(project) as daemon:
        assert wait_for(lambda: "daemon started" in caplog.text), caplog.text
        engine, read = daemon.engine, daemon.engine.db
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)

        async def read_then_rescan(fn: Callable[..., Any], *args: Any) -> Any:
            rows = await read(fn, *args)
            daemon._schedule("sent-now@outbox", later)  # as the rescan does, meanwhile
            return rows

        monkeypatch.setattr(engine, "db", read_then_rescan)
        loop = daemon.scheduler._eventloop
        asyncio.run_coroutine_threadsafe(daemon._schedule_all(), loop).result(timeout=30)
        assert daemon.scheduler.get_job("sent-now@outbox") is not None
        monkeypatch.setattr(engine, "db", read)
        asyncio.run_coroutine_threadsafe(daemon._schedule_all(), loop).result(timeout=30)
        assert daemon.scheduler.get_job("sent-now@outbox") is None  # the ledger has no such row


def test_a_ledger_that_does_not_answer_does_not_stall_the_event_loop(
    project: Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Scheduling reads the ledger on its own thread: while a read hangs (a database across
    a dead network), the sends in flight and the lease keeper go on."""
    import logging

    caplog.set_level(logging.INFO, logger="postscheduler")
    answer = threading.Event()
    with in_process(project) as daemon:
        assert wait_for(lambda: "daemon started" in caplog.text), caplog.text
        deliveries = daemon.ledger.deliveries

        def hanging(**filters: Any) -> Any:
            answer.wait(timeout=60)
            return deliveries(**filters)

        monkeypatch.setattr(daemon.ledger, "deliveries", hanging)
        loop = daemon.scheduler._eventloop
        try:
            scheduling = asyncio.run_coroutine_threadsafe(daemon._schedule_all(), loop)
            other = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, "the loop runs"), loop)
            assert other.result(timeout=30) == "the loop runs"
            assert not scheduling.done()
        finally:
            answer.set()
        scheduling.result(timeout=30)


def test_a_secret_rotated_in_dotenv_is_used_without_a_restart(
    make_project: Callable[[str], Project],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A token revoked and replaced in .env reaches the running daemon as an edit of
    scheduler.yaml does: the next delivery is signed with the new one."""
    import logging

    from .fakes.platforms import FakeWebhook

    monkeypatch.delenv("S", raising=False)  # the real environment would win over .env
    new = "rotated-webhook-secret-NEW-7"
    with FakeWebhook(new) as server:
        project = make_project(
            CONFIG.replace(
                "accounts:\n",
                f'accounts:\n  site: {{platform: webhook, url: "{server.url}", '
                'secret: "${S}"}\n',
            )
        )
        dotenv = project.root / ".env"
        dotenv.write_text("S=revoked-webhook-secret-OLD-7\n")
        caplog.set_level(logging.INFO, logger="postscheduler")
        with in_process(project) as daemon:
            assert wait_for(lambda: "daemon started" in caplog.text), caplog.text
            dotenv.write_text(f"S={new}\n")
            assert wait_for(lambda: daemon.settings.env.get("S") == new), caplog.text
            project.write("p.yaml", f"id: p\nat: {at(-1)}\ntext: Newly signed.\naccounts: [site]\n")
            assert wait_for(lambda: len(server.received) == 1), caplog.text
        assert server.bad_signatures == 0
    assert "Traceback" not in caplog.text


def test_a_daemon_schedules_the_accounts_another_has_the_first_try_at_later(
    make_project: Callable[[str], Project],
    postgres: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At a post's time each daemon runs the jobs of its own share of the accounts only:
    the rest, a quarter lease later, do not queue their ledger reads before its claims."""
    import logging

    from postscheduler.ledger.postgres import PostgresLedger

    url = postgres.new_database()
    names = [f"a{i}" for i in range(24)]
    accounts = "".join(f"  {n}: {{platform: outbox, path: out-{n}}}\n" for n in names)
    project = make_project(
        CONFIG.replace("state/ledger.db", f'"{url}"')
        .replace("accounts:\n", "accounts:\n" + accounts)
        .replace("defaults: {accounts: [outbox]}", f"defaults: {{accounts: [{', '.join(names)}]}}")
    )
    due = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=5)
    project.write("p.yaml", f"id: p\nat: {due.isoformat()}\ntext: Everyone at once.\n")
    caplog.set_level(logging.INFO, logger="postscheduler")
    with PostgresLedger(url) as peer:  # another daemon, alive for the whole test
        peer.register("peer", "elsewhere", 1, dt.timedelta(hours=1), dt.datetime.now(dt.UTC))
        with in_process(project) as daemon:
            assert wait_for(lambda: "daemon started" in caplog.text), caplog.text
            assert sorted(daemon.engine.peers) == sorted(["peer", daemon.ledger.owner])
            handoff = daemon.settings.config.publishing.lease / 4
            runs = {n: daemon.scheduler.get_job(f"p@{n}").next_run_time for n in names}
            mine = {n for n in names if runs[n] == due}
            assert mine and len(mine) < len(names)  # 24 accounts: both daemons have some
            assert all(runs[n] == due + handoff for n in set(names) - mine)
            assert {n for n in names if daemon.engine.first_look_at(n, due) == due} == mine


def test_a_daemon_whose_clock_is_off_the_database_s_claims_nothing_until_it_is_back(
    make_project: Callable[[str], Project],
    postgres: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Leases are compared across the daemons' clocks: one whose clock is off by about a
    lease could take a live daemon's deliveries in flight for abandoned and send them
    again. It says so, alerts, claims nothing, and goes on once the clock is back."""
    import logging

    from postscheduler.ledger.postgres import PostgresLedger

    url = postgres.new_database()
    project = make_project(
        CONFIG.replace("state/ledger.db", f'"{url}"') + "publishing: {lease: 4s}\n"
    )
    project.write("p.yaml", f"id: p\nat: {at(-1)}\ntext: Sent once the clock is right.\n")
    # The database server's clock 30 s behind this machine's (the limit is a quarter
    # lease, 1 s): the same as this one 30 s ahead, without moving the scheduler's time.
    offset = [dt.timedelta(seconds=30)]
    caplog.set_level(logging.INFO, logger="postscheduler")
    beats = threading.Semaphore(0)
    skew = PostgresLedger.clock_skew

    def skewed(self: PostgresLedger, now: dt.datetime) -> dt.timedelta | None:
        try:
            found = skew(self, now)
            return None if found is None else found + offset[0]
        finally:
            beats.release()

    monkeypatch.setattr(PostgresLedger, "clock_skew", skewed)
    with in_process(project) as daemon:
        assert wait_for(lambda: "daemon started" in caplog.text), caplog.text
        assert "CLOCK SKEW: this machine's clock is 30 s ahead" in caplog.text
        while beats.acquire(blocking=False):  # the comparisons made so far
            pass
        for _ in range(3):  # three more rounds of the lease keeper, the post due all along
            assert beats.acquire(timeout=30)
        assert not outbox(project, "p").exists()
        with PostgresLedger(url) as ledger:
            held = ledger.get(DeliveryKey("p", "outbox"))
        assert held is not None and held.state is DeliveryState.PLANNED
        offset[0] = dt.timedelta(0)
        assert wait_for(lambda: outbox(project, "p").exists(), timeout=60), caplog.text
        assert "clock back in step with the database" in caplog.text
        assert daemon.failure is None
    assert "Traceback" not in caplog.text
