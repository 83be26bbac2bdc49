from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from postscheduler.config import embedded_default_text, load_settings
from postscheduler.errors import ConfigError
from postscheduler.platforms.base import EnvRef

from .conftest import PROJECT_ROOT, Project

CANARY = "canary-Zq8v1-SECRET-do-not-print"


def test_embedded_default_is_the_example_config() -> None:
    assert (PROJECT_ROOT / "scheduler.yaml").read_text(encoding="utf-8") == embedded_default_text()


def test_embedded_default_used_without_a_config(tmp_path: Path) -> None:
    settings = load_settings(cwd=tmp_path, environ={})
    assert settings.path is None
    assert list(settings.config.accounts) == ["outbox"]
    assert settings.posts_dir == tmp_path / "posts"


def test_secret_references_resolve_from_env_and_dotenv(project: Project) -> None:
    (project.root / ".env").write_text("MASTODON_TOKEN=from-dotenv\nX_ACCESS_TOKEN=dotenv-x\n")
    settings = project.settings({"X_ACCESS_TOKEN": "from-env"})
    mastodon = settings.config.accounts["mastodon"]
    x = settings.config.accounts["x"]
    assert mastodon.token == EnvRef("MASTODON_TOKEN")  # type: ignore[union-attr]
    assert mastodon.token.resolve(settings.env) == "from-dotenv"  # type: ignore[union-attr]
    assert x.access_token.resolve(settings.env) == "from-env"  # type: ignore[union-attr]


def test_a_dotenv_line_that_cannot_be_read_is_an_error_naming_the_line(project: Project) -> None:
    """python-dotenv would skip it with a warning naming no file, and the secret on it would
    be missing without a word of why; the line's value is never shown."""
    dotenv = project.root / ".env"
    dotenv.write_text("MASTODON_TOKEN=fine\nX_ACCESS_TOKEN='canary-unterminated\nA=1\n")
    with pytest.raises(ConfigError) as info:
        project.settings()
    (finding,) = info.value.findings
    assert (finding.file, finding.line, finding.code) == (dotenv, 2, "dotenv")
    assert "canary" not in str(info.value) and "canary" not in finding.as_text()
    dotenv.write_bytes(b"A=1\nB=caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError) as info:
        project.settings()
    (finding,) = info.value.findings
    assert (finding.line, finding.column, finding.message) == (2, 6, "invalid UTF-8")


def test_missing_secrets_are_warnings_naming_the_variable(project: Project) -> None:
    warnings = project.settings({"MASTODON_TOKEN": "t"}).missing_secrets()
    assert {w.account for w in warnings} == {"bluesky", "x", "telegram", "slack"}
    assert all(not w.is_error for w in warnings)
    assert any("${BLUESKY_APP_PASSWORD}" in w.message for w in warnings)


def test_literal_secret_is_refused_and_never_echoed(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(
        f"accounts:\n  m: {{platform: mastodon, instance: https://m.example, token: {CANARY}}}\n"
    )
    with pytest.raises(ConfigError) as info:
        project.settings()
    text = str(info.value)
    assert CANARY not in text
    assert "environment variable" in text
    (finding,) = info.value.findings
    assert (finding.line, finding.account) == (2, None)
    assert CANARY not in repr(finding.as_dict())


def test_resolved_secret_never_in_repr(project: Project) -> None:
    settings = project.settings({"MASTODON_TOKEN": CANARY})
    assert CANARY not in repr(settings.config)
    assert CANARY not in str(settings.config.model_dump())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("timezone: Mars/Olympus\n", "unknown time zone"),
        ("accounts:\n  a: {platform: myspace}\n", "unknown platform 'myspace'"),
        ("accounts:\n  a: {platform: outbox, pth: x}\n", "did you mean 'path'?"),
        ("defaults: {accounts: [nope]}\n", "not in accounts"),
        ('credit_format: "no placeholder"\n', "{credit}"),
        ('credit_format: "\\a📷 {credit}"\n', "credit_format: contains an invisible control"),
        ("publishing: {late_grace: soon}\n", "duration"),
        ("publishing: {min_gap: [5m]}\n", "publishing.min_gap: a duration must be like 30s"),
        ("publishing: {retry: {first_delay: {s: 1}}}\n", "a duration must be like"),
        ('posts_dir: "a\\0b"\n', "posts_dir: a path cannot contain a NUL character"),
        (f"ledger: {'x' * 300}.db\n", "ledger: the path is too long"),
        (f"accounts:\n  a: {{platform: outbox, path: {'y/' * 2100}}}\n", "path is too long"),
        ('ledger: "postgresql://u@h/d\\0"\n', "ledger: a URL cannot contain a NUL"),
        ("[1, 2]\n", "must be a mapping"),
        ("timezone: [\n", "YAML syntax error"),
    ],
)
def test_bad_config(make_project, config: str, message: str) -> None:  # type: ignore[no-untyped-def]
    project = make_project(config)
    with pytest.raises(ConfigError) as info:
        project.settings()
    assert message in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="postscheduler init"):
        load_settings(tmp_path / "nope.yaml")


def test_the_example_configuration_is_a_copy_of_the_embedded_default() -> None:
    """Two files, kept identical: editing the example must not silently change the built-in
    default (nor what `init` writes), as the symlink it once was did."""
    from .conftest import PROJECT_ROOT

    example = PROJECT_ROOT / "scheduler.yaml"
    assert not example.is_symlink()
    assert example.read_text(encoding="utf-8") == embedded_default_text()


def test_the_commented_alerts_blackout_and_posts_repo_examples_are_valid(tmp_path: Path) -> None:
    import re

    from postscheduler.config import load_settings

    text = (Path(__file__).parent.parent / "scheduler.yaml").read_text(encoding="utf-8")
    head, tail = text.split("# Running it for months", 1)
    accounts = re.sub(r"^  # (?=[a-z]+:)", "  ", head, flags=re.M)
    accounts = re.sub(r"^  #   ", "    ", accounts, flags=re.M)
    examples = re.sub(r"^# (?=[a-z_]+:)", "", tail, flags=re.M)
    examples = re.sub(r"^#(  +)", r"\1", examples, flags=re.M)
    examples = re.sub(r"^  # (?=max_per_hour)", "  ", accounts + "\n#" + examples, flags=re.M)
    config = tmp_path / "scheduler.yaml"
    config.write_text(examples, encoding="utf-8")
    cfg = load_settings(config, environ={}).config
    assert cfg.alerts.accounts == ["telegram"] and cfg.alerts.smtp is not None
    assert [w.name for w in cfg.blackout] == ["nights", "day of mourning"]
    assert cfg.posts_repo is not None and cfg.publishing.max_per_hour == 6


def test_the_commented_example_accounts_in_scheduler_yaml_are_valid(tmp_path: Path) -> None:
    """A newcomer uncomments an example account: it must load as written."""
    import re

    from postscheduler.config import load_settings
    from postscheduler.platforms import PLATFORMS

    text = (Path(__file__).parent.parent / "scheduler.yaml").read_text(encoding="utf-8")
    head, accounts, tail = re.split(r"^(?=accounts:|defaults:)", text, flags=re.M)
    examples = re.sub(r"^  # (?=[a-z]+:)", "  ", accounts, flags=re.M)
    examples = re.sub(r"^  #   ", "    ", examples, flags=re.M)
    config = tmp_path / "scheduler.yaml"
    config.write_text(head + examples + tail, encoding="utf-8")
    settings = load_settings(config, environ={})
    platforms = {a.platform for a in settings.config.accounts.values()}
    assert platforms == set(PLATFORMS)  # every platform has an example


def test_an_edit_of_the_configuration_or_its_dotenv_is_a_change_on_disk(project: Project) -> None:
    settings = project.settings()
    assert not settings.changed_on_disk()
    (project.root / ".env").write_text("MASTODON_TOKEN=first\n")  # a .env where there was none
    assert settings.changed_on_disk()
    settings = project.settings()
    assert settings.env["MASTODON_TOKEN"] == "first" and not settings.changed_on_disk()
    (project.root / ".env").write_text("MASTODON_TOKEN=rotated\n")
    assert settings.changed_on_disk()
    settings = project.settings()
    project.config_path.write_text(project.config_path.read_text() + "\n# a comment\n")
    assert settings.changed_on_disk()


def test_an_x_account_on_rotating_tokens_is_told_when_daemons_share_the_ledger(
    make_project: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from postscheduler.delivery.daemon import _log_account_problems

    accounts = (
        "accounts:\n"
        "  x2: {platform: x, client_id: app-42, refresh_token: '${XR}'}\n"
        "  x1: {platform: x, consumer_key: '${A}', consumer_secret: '${B}',"
        " access_token: '${C}', access_token_secret: '${D}'}\n"
    )
    alone = make_project("ledger: state/ledger.db\n" + accounts).settings()
    assert alone.shared_ledger_warnings() == []  # one daemon: its token is the only one
    shared = make_project("ledger: postgresql://ps@db.example/ps\n" + accounts).settings()
    [finding] = shared.shared_ledger_warnings()
    assert finding.account == "x2" and "refresh tokens rotate" in finding.message
    assert "consumer_key" in (finding.hint or "")
    caplog.set_level(logging.WARNING, logger="postscheduler")
    _log_account_problems(shared)
    assert "account x2: OAuth 2.0 refresh tokens rotate" in caplog.text
