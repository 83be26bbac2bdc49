"""Nothing depends on today's date: the quick start and the suite after the examples' dates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postscheduler.cli import app

from .conftest import PROJECT_ROOT, TEST_CLOCK

LATER = "2027-06-01T12:00:00Z"  # months after the example campaign


@pytest.fixture
def examples_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import time_machine

    shutil.copytree(PROJECT_ROOT / "posts", tmp_path / "posts")
    monkeypatch.chdir(tmp_path)  # no scheduler.yaml here: the embedded default, as a newcomer
    traveller = time_machine.travel(LATER, tick=True)
    traveller.start()
    yield tmp_path
    traveller.stop()


def test_the_quick_start_works_after_the_examples_dates(examples_later: Path) -> None:
    runner = CliRunner()
    validate = runner.invoke(app, ["validate"], catch_exceptions=False)
    assert validate.exit_code == 0, validate.output  # "in the past" is a warning, not an error
    assert "0 errors" in validate.stderr
    queue = runner.invoke(app, ["queue"], catch_exceptions=False)
    assert queue.exit_code == 0, queue.output
    rehearsal = runner.invoke(app, ["run", "--rehearse"], catch_exceptions=False)
    assert rehearsal.exit_code == 0, rehearsal.output
    assert "rehearsed 10 deliveries" in rehearsal.stderr
    timeline = (examples_later / "outbox" / "timeline.txt").read_text()
    assert "📷 Kawsachun News/twitter" in timeline
    # Written on the rehearsal's clock: sent when due, not today.
    import json

    record = json.loads((examples_later / "outbox" / "peru-article.outbox.1.json").read_text())
    assert record["published_at"].startswith("2027-01-14T09:00")


@pytest.mark.skipif(TEST_CLOCK is not None, reason="this is the session it starts")
def test_the_suite_passes_with_the_clock_months_later() -> None:
    """Every in-process test module again, with the clock at 2027-06-01 (those that run a
    daemon or a server in another process keep that process's real clock, so they are left
    out: their times are relative to now)."""
    modules = [
        "tests/test_cli.py",
        "tests/test_config.py",
        "tests/test_engine.py",
        "tests/test_layout.py",
        "tests/test_loader.py",
        "tests/test_operations.py",
        "tests/test_render.py",
        "tests/test_rules.py",
        "tests/test_yamlsource.py",
        "tests/publishers/test_contract.py",
        "tests/publishers/test_telegram.py",
        "tests/publishers/test_x.py",
    ]
    env = {**os.environ, "POSTSCHEDULER_TEST_CLOCK": LATER}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *modules],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
