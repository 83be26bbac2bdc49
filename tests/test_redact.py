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


def test_derived_kept_and_learned_secrets_are_masked(project: Project) -> None:
    import base64

    from postscheduler.redact import Redactor, learn_secret

    project.config_path.write_text(
        "ledger: state/ledger.db\n"
        "accounts:\n"
        "  x: {platform: x, client_id: app-42, client_secret: '${XS}', refresh_token: '${XR}'}\n"
        "  d: {platform: discord, webhook_url: '${DW}'}\n"
    )
    hook = "https://discord.test/api/webhooks/1111/canary-discord-webhook-TOKEN"
    state = project.root / "state"
    state.mkdir()
    (state / "x-x.refresh-token").write_text("canary-rotated-refresh-token-0001\n")
    (state / "bluesky-b.session").write_text(
        '{"service": "https://bsky.social", "accessJwt": "canary-access-jwt-0001",'
        ' "refreshJwt": "canary-refresh-jwt-0001", "did": "did:plc:abc"}'
    )
    settings = project.settings({"XS": "canary-client-SECRET", "XR": "r0", "DW": hook})
    redact = Redactor.for_settings(settings)
    basic = base64.b64encode(b"app-42:canary-client-SECRET").decode()
    learn_secret("canary-learned-at-run-time-0001")
    echoed = (
        f"Authorization: Basic {basic} / {{'auth': '{basic}'}} / Cannot POST "
        "/api/webhooks/1111/canary-discord-webhook-TOKEN?wait=true / "
        "canary-rotated-refresh-token-0001 canary-access-jwt-0001 canary-refresh-jwt-0001 "
        "canary-learned-at-run-time-0001 did:plc:abc "
        "https%3A%2F%2Fdiscord.test%2Fapi%2Fwebhooks%2F1111%2Fcanary-discord-webhook-TOKEN"
    )
    shown = redact(echoed)
    assert "canary" not in shown and basic not in shown, shown
    assert "did:plc:abc" in shown  # not a secret: left alone
