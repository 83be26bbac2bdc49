"""The CLI: exit codes, output formats, no tracebacks, help everywhere, a light start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postscheduler.cli import app, schema_text

from .conftest import PROJECT_ROOT, Project

runner = CliRunner()
# These tests date their posts in January 2027 and expect them upcoming.
pytestmark = pytest.mark.usefixtures("before_the_examples")

GOOD = "id: good\nat: 2027-01-14 09:00\ntext: Hello.\n"


def invoke(project: Project, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, "--config", str(project.config_path)], catch_exceptions=False)


def test_validate_clean_exit_0(project: Project) -> None:
    project.write("good.yaml", GOOD)
    result = invoke(project, "validate")
    assert result.exit_code == 0, result.output
    assert "1 file, 1 post: 0 errors" in result.stderr


def test_validate_errors_exit_1_with_positions(project: Project) -> None:
    project.write("good.yaml", GOOD)
    project.write("bad.yaml", "id: bad\nat: 2027-01-14 09:00\ntxt: hi\n")
    result = invoke(project, "validate")
    assert result.exit_code == 1
    assert "bad.yaml:3:1: error: [bad] unknown key 'txt' (did you mean 'text'?)" in result.stdout
    assert "Traceback" not in result.output


def test_config_before_the_command(project: Project) -> None:
    project.write("bad.yaml", "id: bad\nat: 2027-01-14 09:00\ntxt: hi\n")
    result = runner.invoke(app, ["--config", str(project.config_path), "validate"])
    assert result.exit_code == 1, result.output  # the project's posts, not the embedded default
    assert "bad.yaml:3:1" in result.stdout


def test_validate_paths_argument(project: Project) -> None:
    good = project.write("good.yaml", GOOD)
    project.write("bad.yaml", "nope: [")
    assert (
        runner.invoke(app, ["validate", str(good), "-c", str(project.config_path)]).exit_code == 0
    )


def test_validate_posts_folder_named_is_the_whole_folder(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`validate posts/`, as people type it, says what `validate` says, in every format,
    and keeps what it read as `validate` does."""
    from postscheduler.posts import cache, parsed

    monkeypatch.setattr(cache, "SAVE_AFTER", 1)
    project.write("good.yaml", GOOD)
    project.write("warn.yaml", "id: warn\nat: 2027-01-14 10:00\ntext: Join us #Peru\n")
    project.write("bad.yaml", "id: bad\nat: 2027-01-14 09:00\ntxt: hi\n")
    project.write("broken.yaml", "id: broken\ntext: 'unclosed\n")
    project.write("twice.yaml", "id: good\nat: 2027-01-15 09:00\ntext: Again.\n")
    project.write(
        "pack.yaml",
        "accounts: [outbox, nobody]\nposts:\n  - {id: p1, at: 2027-01-16 09:00, text: One.}\n"
        "  - {id: p2, at: 2027-01-16 10:00, text: Two., image: {file: images/none.png}}\n",
    )
    monkeypatch.chdir(project.root)
    kept = project.settings().state_dir / parsed.FILE_NAME
    for fmt in ("text", "json", "github"):
        whole = invoke(project, "validate", "--format", fmt)
        named = invoke(project, "validate", "posts/", "--format", fmt)
        assert (named.exit_code, named.stdout, named.stderr) == (
            whole.exit_code,
            whole.stdout,
            whole.stderr,
        )
        assert whole.exit_code == 1 and kept.is_file()
        kept.unlink()
        assert invoke(project, "validate", "posts/", "--format", fmt).stdout == whole.stdout
        assert kept.is_file()


def test_validate_json(project: Project) -> None:
    project.write("bad.yaml", "id: bad\nat: 2027-01-14 09:00\ntext: hi\naccounts: [nope]\n")
    result = invoke(project, "validate", "--format", "json")
    assert result.exit_code == 1
    (finding,) = json.loads(result.stdout)
    assert finding["code"] == "unknown-account"
    assert (finding["line"], finding["column"], finding["post_id"]) == (4, 12, "bad")
    assert finding["file"].endswith("bad.yaml")


def test_validate_json_clean_is_an_empty_list(project: Project) -> None:
    project.write("good.yaml", GOOD)
    result = invoke(project, "validate", "--format", "json")
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


def test_validate_github_annotations(project: Project) -> None:
    project.write("bad.yaml", "id: bad\nat: 2027-01-14 09:00\ntext: hi\nlink: 'javascript:x'\n")
    result = invoke(project, "validate", "--format", "github")
    assert result.exit_code == 1
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("::error file=")
    assert ",line=4,col=7,title=postscheduler invalid-value::[bad] link: only http" in line


def test_validate_unusable_config_is_a_finding(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project("timezone: Nowhere/Atlantis\n")
    result = invoke(project, "validate", "--format", "github")
    assert result.exit_code == 2  # the command could not run, as README says; still annotated
    assert "::error file=" in result.stdout and "unknown time zone" in result.stdout


def test_queue_lists_in_local_time_and_marks_blocked(project: Project) -> None:
    project.write("a.yaml", "id: summer\nat: 2027-07-01T09:00Z\ntext: Summer post.\n")
    project.write(
        "b.yaml", "id: winter\nat: 2027-01-14 09:00\ntext: |\n  First line\n  second line\n"
    )
    project.write("c.yaml", "id: broken\nat: 2027-02-01 09:00\ntext: hi\naccounts: [nope]\n")
    project.write("d.yaml", "id: later\nstatus: draft\ntext: not yet\n")
    result = invoke(project, "queue", "--from", "2027-01-01 00:00")
    assert result.exit_code == 1  # a queued post is blocked
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["WHEN", "POST", "ACCOUNTS", "FIRST", "LINE", "NOTES"]
    assert "Thu 2027-01-14 09:00 GMT  winter" in lines[2]
    assert "broken" in lines[3] and "HELD: account 'nope'" in lines[3]
    assert "Thu 2027-07-01 10:00 BST  summer" in lines[4]  # shown in the configured zone
    assert "1 drafts" in result.stderr


def test_queue_days_and_account_filters(project: Project) -> None:
    project.write("a.yaml", "id: soon\nat: 2027-01-02 09:00\ntext: a\naccounts: [outbox]\n")
    project.write("b.yaml", "id: far\nat: 2027-03-01 09:00\ntext: b\naccounts: [outbox]\n")
    result = invoke(project, "queue", "--from", "2027-01-01 00:00", "--days", "7")
    assert result.exit_code == 0 and "soon" in result.stdout and "far" not in result.stdout
    result = invoke(project, "queue", "--from", "2027-01-01 00:00", "--account", "mastodon")
    assert result.exit_code == 0 and "Nothing queued" in result.stdout
    result = invoke(project, "queue", "--account", "mastodn")
    assert result.exit_code == 2 and "did you mean 'mastodon'" in result.stderr


def test_preview_shows_final_text_counts_and_credit(project: Project) -> None:
    project.image()
    project.write(
        "p.yaml",
        "id: p\nat: 2027-01-14 09:00\naccounts: [outbox, bluesky]\ntext: A march.\n"
        "link: https://example.org/a\n"
        "image: {file: images/photo.jpg, alt: Marchers., credit: Jane Doe}\n",
    )
    result = invoke(project, "preview", "p")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "=== p → bluesky (Bluesky) · Thu 2027-01-14 09:00 GMT" in out
    assert "A march.\n\nhttps://example.org/a\n\n📷 Jane Doe\n" in out  # the outbox
    assert "A march.\n\nexample.org/a\n\n📷 Jane Doe\n" in out  # Bluesky shows links short
    assert "35/300 graphemes, 38/3000 UTF-8 bytes" in out
    assert "[image: images/photo.jpg · JPEG 64×48" in out
    assert "[alt: Marchers.]" in out and "[credit: Jane Doe]" in out
    only = invoke(project, "preview", "p", "--account", "outbox").stdout
    assert "bluesky" not in only


def test_preview_says_what_bluesky_will_do_to_a_large_image_and_a_link(
    project: Project,
) -> None:
    path = project.image("images/big.png", fmt="PNG", size=(700, 700))
    os.truncate(path, 1_200_000)
    project.write(
        "p.yaml",
        "id: p\nat: 2027-01-14 09:00\naccounts: [bluesky]\ntext: A march.\n"
        "image: {file: images/big.png, alt: Marchers., credit: Jane Doe}\n"
        "thread: [{text: 'Read more: https://example.org/a'}]\n"
        "link: https://example.org/a\n",
    )
    out = invoke(project, "preview", "p").stdout
    assert "!!! warning: big.png (PNG, 1,200,000 bytes) will be re-encoded" in out
    assert "--- link card" not in out  # the image is shown; the link stays a link
    project.write(
        "p.yaml",
        "id: p\nat: 2027-01-14 09:00\naccounts: [bluesky]\ntext: A march.\n"
        "link: https://example.org/a\n",
    )
    out = invoke(project, "preview", "p").stdout
    assert "--- link card: the page's title, description and image, fetched when published" in out


def test_preview_over_limit_and_unknown_post(project: Project) -> None:
    project.write("p.yaml", f"id: peru\nat: 2027-01-14 09:00\naccounts: [x]\ntext: {'y' * 300}\n")
    result = invoke(project, "preview", "peru")
    assert result.exit_code == 1
    assert "300/280 weighted characters  ** OVER THE LIMIT **" in result.stdout
    result = invoke(project, "preview", "peur")
    assert result.exit_code == 2 and "no post with id 'peur'" in result.stderr
    assert "did you mean 'peru'" in result.stderr


def test_preview_of_an_invalid_post_lists_its_errors(project: Project) -> None:
    project.write("p.yaml", "id: p\nat: 2027-13-01 09:00\ntext: hi\n")
    result = invoke(project, "preview", "p")
    assert result.exit_code == 2 and "month must be in 1..12" in result.stderr


def test_schema_matches_committed_copy() -> None:
    committed = (PROJECT_ROOT / "posts" / "post.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(), "run: postscheduler schema -o posts/post.schema.json"
    schema = json.loads(committed)
    assert {"Image", "Quote", "Post"} <= set(schema["$defs"])
    assert schema["$defs"]["Image"]["required"] == ["alt", "credit"]


def test_init_scaffolds_a_valid_project(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "campaign")])
    assert result.exit_code == 0, result.output
    root = tmp_path / "campaign"
    assert (root / "scheduler.yaml").is_file() and (root / "posts" / "post.schema.json").is_file()
    example = (root / "posts" / "welcome.yaml").read_text()
    assert example.startswith("# yaml-language-server: $schema=post.schema.json")
    result = runner.invoke(app, ["validate", "-c", str(root / "scheduler.yaml")])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["init", str(root)])
    assert again.exit_code == 0 and again.stdout.count("kept") == 4


def test_init_uses_the_local_zone_and_keeps_secrets_out_of_git(tmp_path: Path) -> None:
    root = tmp_path / "campaign"
    root.mkdir()
    (root / ".gitignore").write_text("node_modules/\n.env\n")  # an existing repository's
    result = runner.invoke(app, ["init", str(root)], env={"TZ": "America/Lima"})
    assert result.exit_code == 0, result.output
    assert "timezone: America/Lima" in (root / "scheduler.yaml").read_text()
    ignored = (root / ".gitignore").read_text().splitlines()
    assert ignored[:2] == ["node_modules/", ".env"] and ignored.count(".env") == 1
    assert ".postscheduler/" in ignored and "outbox/" in ignored


def test_every_command_has_help_with_an_example() -> None:
    import typer.main

    readme = (PROJECT_ROOT / "README.md").read_text()

    def walk(group: object, prefix: str) -> list[tuple[str, object]]:
        found = []
        for name, command in group.commands.items():  # type: ignore[attr-defined]
            full = f"{prefix}{name}"
            if hasattr(command, "commands"):
                found.extend(walk(command, full + " "))
            else:
                found.append((full, command))
        return found

    commands = walk(typer.main.get_command(app), "")
    assert len(commands) >= 12
    for name, command in commands:
        assert command.help, name  # type: ignore[attr-defined]
        assert "Example: postscheduler " + name in command.help, name  # type: ignore[attr-defined]
        assert f"`{name}" in readme, f"README lacks {name}"
        # The --help listing shows the first paragraph as one line, however the source wraps it
        first = " ".join(command.help.split("\n\n")[0].split())  # type: ignore[attr-defined]
        assert command.short_help == first, name  # type: ignore[attr-defined]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("postscheduler ")


@pytest.mark.parametrize("command", [["validate"], ["queue"], ["preview", "peru-article"]])
def test_organiser_commands_stay_light(command: list[str]) -> None:
    """validate, queue and preview must not pull in the network or scheduler stacks."""
    code = (
        "import sys\n"
        "from postscheduler.cli import app\n"
        f"sys.argv = ['postscheduler', *{command!r}]\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('httpx', 'apscheduler', 'twitter_text') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_examples_are_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    result = runner.invoke(app, ["validate", "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_a_folder_of_bad_files_never_gives_a_traceback(project: Project) -> None:
    """Every kind of bad input at once, through the real entry point: each file is reported."""
    from .conftest import alias_bomb

    project.write("syntax.yaml", 'id: a\ntext: "unclosed\n')
    project.write("types.yaml", "id: b\nat: 2027-01-14 09:00\ntext: {a: 1}\n")
    project.write("keys.yaml", "id: c\nat: 2027-01-14 09:00\ntxt: hi\n")
    project.write("dup1.yaml", "id: d\nat: 2027-01-14 09:00\ntext: one\n")
    project.write("dup2.yaml", "id: d\nat: 2027-01-14 09:00\ntext: two\n")
    project.write("empty.yaml", "")
    project.write("list.yaml", "- a\n")
    project.write_bytes("latin1.yaml", b"id: e\ntext: caf\xe9\n")
    project.write_bytes("junk.yaml", bytes(range(256)) * 8)
    project.write("bomb.yaml", alias_bomb())
    project.write("huge.yaml", "text: " + "x" * (1024 * 1024) + "\n")
    project.write(
        "escape.yaml", "id: f\nat: 2027-01-14 09:00\nimage: {file: ../x.jpg, alt: a, credit: b}\n"
    )
    project.write("js.yaml", "id: g\nat: 2027-01-14 09:00\nlink: javascript:alert(1)\n")
    project.write("nothing.yaml", "id: h\nat: 2027-01-14 09:00\n")
    project.write("account.yaml", "id: i\nat: 2027-01-14 09:00\ntext: hi\naccounts: [nobody]\n")
    project.write("good.yaml", GOOD)
    env = {**os.environ, "MASTODON_TOKEN": CANARY}
    outputs = {}
    for command in ("validate", "queue", "preview"):
        extra = {"queue": ["--from", "2027-01-01 00:00"], "preview": ["good"]}.get(command, [])
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "postscheduler",
                command,
                *extra,
                "-c",
                str(project.config_path),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        outputs[command] = result.stdout + result.stderr
        assert "Traceback" not in outputs[command], outputs[command]
        assert CANARY not in outputs[command]
        assert result.returncode == (0 if command == "preview" else 1), outputs[command]
    reported = {Path(line.split(":", 1)[0]).name for line in outputs["validate"].splitlines()}
    expected = {p.name for p in project.posts.glob("*.yaml")} - {"good.yaml"}
    assert expected <= reported


CANARY = "canary-7Hq2-SECRET-must-not-appear"


def test_a_bug_is_said_to_be_one_with_its_traceback_and_no_secret(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What no check foresaw still ends in words: a bug, not the user's input, exit 70, and
    the traceback to report with the configuration's secrets masked."""
    from postscheduler import cli
    from postscheduler.delivery import checks

    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError(f"unhashable type: 'list' (token={CANARY})")

    project.write("good.yaml", GOOD)
    monkeypatch.setenv("MASTODON_TOKEN", CANARY)
    monkeypatch.setattr(checks, "validate_posts", broken)
    monkeypatch.setattr(sys, "argv", ["postscheduler", "validate", "-c", str(project.config_path)])
    with pytest.raises(SystemExit) as done:
        cli.entry_point()
    assert done.value.code == cli.EXIT_BUG == 70
    said = capsys.readouterr().err
    assert said.startswith("internal error: TypeError: unhashable type: 'list' (token=***)\n")
    assert "This is a bug in postscheduler" in said and "Traceback (most recent call last)" in said
    assert CANARY not in said


def test_preview_html_page(project: Project, tmp_path: Path) -> None:
    project.image()
    project.write(
        "p.yaml",
        "id: p\nat: 2027-01-14 09:00\naccounts: [outbox, x]\ntext: Fish & <chips>\n"
        'image: {file: images/photo.jpg, alt: Marchers "with" a banner., credit: Jane Doe}\n',
    )
    page_file = tmp_path / "preview.html"
    result = invoke(project, "preview", "p", "--html", str(page_file))
    assert result.exit_code == 0, result.output
    page = page_file.read_text()
    assert "Fish &amp; &lt;chips&gt;" in page  # escaped, never markup
    assert 'alt="Marchers &quot;with&quot; a banner."' in page
    assert 'src="data:image/jpeg;base64,' in page  # self-contained
    assert "credit: Jane Doe" in page and "weighted characters" in page
    assert page.count('<article class="mock"') == 2
    assert "Content-Security-Policy" in page and "<script" not in page


def test_status_and_history_never_pass_control_sequences_to_the_terminal(
    project: Project,
) -> None:
    import datetime as dt

    from postscheduler.ledger import DeliveryKey
    from postscheduler.ledger.sqlite import SqliteLedger

    hostile = "500 \x1b]0;owned\x07\x1b[2Jgone\rOK published"
    now = dt.datetime(2027, 1, 14, 9, tzinfo=dt.UTC)
    ledger = SqliteLedger(project.root / ".postscheduler" / "ledger.db")
    key = DeliveryKey("p", "outbox")
    ledger.plan(key, now, "h", now)
    ledger.claim(key, "id-1", now)
    ledger.record_failed(key, hostile, now)
    ledger.close()
    for command in ("status", "history"):
        result = invoke(project, command)
        assert "\x1b" not in result.output and "\x07" not in result.output, command
        assert "\r" not in result.output, command
        assert "\\x1b]0;owned\\x07" in result.output, command


def test_a_ledger_that_cannot_be_used_is_a_clean_error(project: Project) -> None:
    (project.root / "blocker").write_text("a file where a folder should be")
    project.config_path.write_text(project.config_path.read_text() + "ledger: blocker/ledger.db\n")
    project.write("good.yaml", GOOD)
    for command in ("run", "status"):
        args = ["run", "--once"] if command == "run" else [command]
        result = invoke(project, *args)
        assert result.exit_code == 2, result.output
        assert "ledger" in result.stderr and "Traceback" not in result.output
    corrupt = project.root / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    project.config_path.write_text(
        project.config_path.read_text().replace("blocker/ledger.db", "corrupt.db")
    )
    for args in (["status"], ["history"], ["run", "--once"], ["validate"]):
        result = invoke(project, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "corrupt.db" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["schema", "-o", "/nonexistent-dir/x/post.schema.json"],
        ["queue", "--days", "nan"],
        ["queue", "--days", "1e10"],
        ["queue", "--from", "0001-01-01 00:00"],
    ],
    ids=["schema-missing-dir", "days-nan", "days-huge", "from-year-1"],
)
def test_odd_options_are_clean_errors(project: Project, args: list[str]) -> None:
    extra = [] if args[0] == "schema" else ["--config", str(project.config_path)]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback


def test_preview_shows_a_content_warning_only_where_it_is_sent(project: Project) -> None:
    project.write(
        "cw.yaml",
        "id: cw\nat: 2027-01-14 09:00\ntext: Hard news.\ncontent_warning: violence\n"
        "accounts: [mastodon, x]\n",
    )
    result = invoke(project, "preview", "cw")
    mastodon, x = result.stdout.split("=== cw → x")
    assert "--- content warning: violence" in mastodon
    assert "--- content warning" not in x and "X has no content warnings" in x


def test_a_swallowed_hashtag_shows_wherever_the_post_is_shown(project: Project) -> None:
    project.write(
        "pack.yaml",
        "posts:\n"
        "  - id: first\n    at: 2027-01-14 09:00\n    text: Fine.\n"
        "  - id: tagged\n    at: 2027-01-15 09:00\n    text: Join us #Peru\n",
    )
    queue = invoke(project, "queue")
    (line,) = [row for row in queue.stdout.splitlines() if "tagged" in row]
    assert "comment" in line  # the warning, in the queue's notes
    assert not [row for row in queue.stdout.splitlines() if "first" in row and "comment" in row]
    preview = invoke(project, "preview", "tagged")
    assert "!!! warning:" in preview.stdout and "#Peru" in preview.stdout


def test_the_validate_summary_adds_up(project: Project) -> None:
    project.write("good.yaml", GOOD)
    project.write("rule.yaml", "id: rule\nat: 2027-01-14 09:00\ntext: hi\naccounts: [nope]\n")
    project.write("model.yaml", "id: model\nat: 2027-01-14 09:00\ntxt: hi\n")
    project.write("syntax.yaml", "id: [\n")
    result = invoke(project, "validate")
    assert "4 files, 3 posts (1 ready, 2 blocked by errors): 3 errors" in result.stderr


def test_queue_after_a_run_shows_only_what_is_still_to_go(project: Project) -> None:
    """Posts the daemon published are left out (--all shows them); failures are marked."""
    import datetime as dt

    from postscheduler.ledger import DeliveryKey
    from postscheduler.ledger.sqlite import SqliteLedger

    project.write("sent.yaml", "id: sent\nat: 2027-01-14 09:00\ntext: Gone out.\n")
    project.write("failed.yaml", "id: failed\nat: 2027-01-14 10:00\ntext: Refused.\n")
    project.write("next.yaml", "id: next\nat: 2027-01-15 09:00\ntext: Still to go.\n")
    t = dt.datetime(2027, 1, 14, 9, tzinfo=dt.UTC)
    ledger = SqliteLedger(project.root / ".postscheduler" / "ledger.db")
    for post, done in (("sent", "published"), ("failed", "failed")):
        key = DeliveryKey(post, "outbox")
        ledger.plan(key, t, "h", t)
        ledger.claim(key, f"id-{post}", t)
        if done == "published":
            ledger.record_published(key, "r1", None, t)
        else:
            ledger.record_failed(key, "422 no", t)
    ledger.close()
    queue = invoke(project, "queue", "--from", "2027-01-14 08:00")
    posts = [line.split()[4] for line in queue.stdout.splitlines()[2:]]
    assert posts == ["failed", "next"], queue.stdout
    assert "outbox: failed" in queue.stdout
    assert "1 already published or skipped" in queue.stderr
    everything = invoke(project, "queue", "--from", "2027-01-14 08:00", "--all")
    assert "sent" in everything.stdout and "outbox: published" in everything.stdout


def test_status_says_a_post_is_held_why_and_until_when(project: Project) -> None:
    import datetime as dt

    from postscheduler.ledger import DeliveryKey
    from postscheduler.ledger.sqlite import SqliteLedger

    t = dt.datetime(2027, 1, 14, 9, tzinfo=dt.UTC)
    ledger = SqliteLedger(project.root / ".postscheduler" / "ledger.db")
    ledger.plan(DeliveryKey("p", "outbox"), t, "h", t)  # planned while the file was fine
    ledger.close()
    project.write("p.yaml", "id: p\nat: 2027-01-14 09:00\ntxt: a typo since\n")
    result = invoke(project, "status")
    assert result.exit_code == 1
    (line,) = [row for row in result.stdout.splitlines() if row.startswith("HELD")]
    assert "p → outbox" in line and "unknown key 'txt'" in line and "p.yaml:3:1" in line
    assert "skipped as late after Thu 2027-01-14 09:30 GMT" in line
    assert "next:" not in result.stdout  # a held delivery is not what goes out next
