"""Secrets never reach a log line: ours, or a library's."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

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


@pytest.mark.usefixtures("restored_logging")
def test_a_secret_a_reload_brings_is_masked_in_the_log_and_the_old_ones_stay_masked(
    make_project: Callable[[str], Project],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The log handler is set up before the daemon starts; an account added to the running
    daemon's configuration brings a secret it must mask as well."""
    from .test_daemon import CONFIG, in_process, wait_for

    added = "canary-added-by-a-reload-TOKEN-42"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", CANARY)
    monkeypatch.setenv("NEW_TOKEN", added)
    first = CONFIG.replace(
        "accounts:\n",
        'accounts:\n  tg: {platform: telegram, bot_token: "${TELEGRAM_BOT_TOKEN}", '
        'chat_id: "@c"}\n',
    )
    project = make_project(first)
    settings = project.settings({"TELEGRAM_BOT_TOKEN": CANARY})
    redactor = setup_logging(settings)
    with in_process(project, settings, redactor) as daemon:
        assert wait_for(lambda: "daemon started" in capsys.readouterr().err)
        # The telegram account is gone, a mastodon one comes with a token of its own.
        project.config_path.write_text(
            CONFIG.replace(
                "accounts:\n",
                'accounts:\n  m: {platform: mastodon, instance: "https://m.test", '
                'token: "${NEW_TOKEN}"}\n',
            )
        )
        assert wait_for(lambda: "m" in daemon.settings.config.accounts)
        logging.getLogger("httpx").error("GET https://m.test/?access_token=%s failed", added)
        logging.getLogger("postscheduler").error("late answer for bot%s", CANARY)
    err = capsys.readouterr().err
    assert "access_token=***" in err and "late answer for bot***" in err
    assert added not in err and CANARY not in err
