"""Secrets never reach a log line: ours, or a library's."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from postscheduler.redact import setup_logging

from .conftest import Project

CANARY = "canary-Tg-7731:AAE-bot-token-must-not-appear"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("postscheduler")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    ours.handlers[:], ours.level, ours.propagate = saved[2], saved[3], saved[4]


@pytest.mark.usefixtures("restored_logging")
def test_library_loggers_go_through_the_redactor(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(project.settings({"TELEGRAM_BOT_TOKEN": CANARY}))
    try:
        raise RuntimeError(f"POST https://api.telegram.org/bot{CANARY}/sendMessage failed")
    except RuntimeError:
        # What APScheduler does when a job raises: its own logger, with the traceback.
        logging.getLogger("apscheduler.executors.default").exception("Job raised an exception")
    logging.getLogger("asyncio").error("Task exception was never retrieved: %s", CANARY)
    logging.getLogger("postscheduler").warning("our own line about %s", CANARY)
    err = capsys.readouterr().err
    assert "Job raised an exception" in err and "Traceback" in err
    assert "our own line" in err and "never retrieved" in err
    assert CANARY not in err
