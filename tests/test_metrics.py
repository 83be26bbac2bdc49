"""`run --metrics`: Prometheus metrics and /healthz of a running daemon; `--log-format json`."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from postscheduler.delivery.metrics import Metrics, parse_address, wsgi_app
from postscheduler.errors import PostschedulerError
from postscheduler.ledger.sqlite import SqliteLedger

from .conftest import Project
from .fakes import free_port
from .fakes.platforms import FakeTelegram
from .test_daemon import CONFIG, Daemon, at, outbox, wait_for
from .test_daemon import cli as run_cli


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def test_metrics_and_health_of_a_running_daemon_with_json_logs(
    make_project: Callable[[str], Project],
) -> None:
    with FakeTelegram() as telegram:
        project = make_project(
            CONFIG.replace(
                "accounts:\n",
                'accounts:\n  channel: {platform: telegram, bot_token: "${TG}", '
                f'chat_id: "@c", api_base: "{telegram.base}"}}\n',
            )
        )
        telegram.faults.append("echo")  # an error page that repeats the URL, token and all
        project.write("p.yaml", f"id: p\nat: {at(-1)}\ntext: Out on time.\n")
        project.write("t.yaml", f"id: t\nat: {at(-1)}\ntext: Hi.\naccounts: [channel]\n")
        port = free_port()
        daemon = Daemon(
            [
                sys.executable,
                "-m",
                "postscheduler",
                "run",
                "-c",
                str(project.config_path),
                "--metrics",
                f"127.0.0.1:{port}",
                "--log-format",
                "json",
            ],
            env={**os.environ, "TG": FakeTelegram.TOKEN},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            assert wait_for(lambda: outbox(project, "p").exists()), daemon.lines
            assert wait_for(lambda: get(base + "/healthz") == (200, "ok\n")), daemon.lines

            def scraped() -> str:
                return get(base + "/metrics")[1]

            assert wait_for(
                lambda: (
                    'postscheduler_deliveries{account="outbox",state="published"} 1.0' in scraped()
                )
            )
            text = scraped()
            assert 'postscheduler_publish_seconds_count{platform="outbox"} 1.0' in text
            assert 'postscheduler_lateness_seconds_count{platform="outbox"} 1.0' in text
            assert 'postscheduler_published_total{account="outbox",platform="outbox"} 1.0' in text
            assert 'postscheduler_attempts_total{outcome="retry",platform="telegram"} 1.0' in text
            assert "postscheduler_last_reload_timestamp_seconds" in text
            assert "postscheduler_heartbeat_age_seconds" in text
        finally:
            daemon.terminate()
            log, _ = daemon.communicate(timeout=30)
    lines = [json.loads(line) for line in log.splitlines()]  # every line one JSON object
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert any(e["message"].startswith("retry t → channel") for e in lines)
    assert any("metrics on http://127.0.0.1:" in e["message"] for e in lines)
    assert FakeTelegram.TOKEN not in log and "***" in log


def test_health_is_503_with_the_reason_when_something_is_wrong() -> None:
    problem: list[str | None] = ["the scheduler loop has not run for 12 s"]
    app = wsgi_app(Metrics(), lambda: problem[0])
    answers: list[Any] = []

    def call(path: str) -> bytes:
        body = app(
            {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": ""},
            lambda status, headers: answers.append(status),
        )
        return b"".join(body)

    assert call("/healthz") == b"the scheduler loop has not run for 12 s\n"
    assert answers[-1] == "503 Service Unavailable"
    problem[0] = None
    assert call("/healthz") == b"ok\n" and answers[-1] == "200 OK"
    assert b"postscheduler_reloads_total" in call("/metrics")


def test_health_says_when_the_loop_is_stuck_and_when_it_is_fine(project: Project) -> None:
    from postscheduler.delivery.daemon import Daemon as Loop

    loop = Loop(project.config_path)
    loop.metrics = Metrics()
    loop.ledger = SqliteLedger(":memory:")
    loop.scheduler = type("Scheduler", (), {"running": True})()
    loop.metrics._heartbeat = time.monotonic() - 60  # the event loop blocked for a minute
    assert (loop.health() or "").startswith("the scheduler loop has not run for 6")
    loop.metrics.beat()
    assert loop.health() is None
    loop.stop()
    assert loop.health() == "stopping"
    loop.ledger.close()


def test_the_ledger_says_when_it_takes_no_writes(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    assert ledger.writable() is None
    (tmp_path / "ledger.db").rename(tmp_path / "moved.db")
    assert "removed or replaced" in (ledger.writable() or "")
    ledger.close()


def test_a_bad_metrics_address_is_told_plainly(project: Project) -> None:
    with pytest.raises(PostschedulerError, match="HOST:PORT"):
        parse_address("9464x")
    assert parse_address(":9464") == ("127.0.0.1", 9464)
    assert parse_address("[::1]:9464") == ("::1", 9464)
    done = run_cli(project, "run", "--metrics", "nowhere")
    assert done.returncode == 2 and "give HOST:PORT" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def project(make_project: Callable[[str], Project]) -> Project:
    return make_project(CONFIG)
