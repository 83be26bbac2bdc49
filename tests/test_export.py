"""`postscheduler ledger export`: the whole ledger as JSON lines, for backups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

from .conftest import Project
from .fakes.platforms import FakeWebhook
from .test_daemon import CONFIG, at

CANARY = "canary-export-SECRET-4711"


def cli(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postscheduler", *args, "-c", str(project.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "S": CANARY},
    )


def test_every_delivery_with_its_history_pauses_and_no_secret(
    make_project: Callable[[str], Project],
) -> None:
    with FakeWebhook(secret=CANARY) as site:
        project = make_project(
            CONFIG.replace(
                "accounts:\n",
                f'accounts:\n  site: {{platform: webhook, url: "{site.url}", secret: "${{S}}"}}\n',
            )
        )
        body = json.dumps({"error": f"denied for {CANARY}"}).encode()
        site.faults.append((403, {"Content-Type": "application/json"}, body))
        project.write("a.yaml", f"id: a\nat: {at(-1)}\ntext: Out.\nthread: [Two.]\n")
        project.write("b.yaml", f"id: b\nat: {at(-1)}\ntext: Refused.\naccounts: [site]\n")
        project.write("c.yaml", f"id: c\nat: {at(3600)}\ntext: Later.\n")
        cli(project, "run", "--once")
    assert cli(project, "pause", "--reason", "review").returncode == 0
    done = cli(project, "ledger", "export")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    deliveries = {
        (r["key"]["post_id"], r["key"]["part"]): r for r in records if r["type"] == "delivery"
    }
    assert set(deliveries) == {("a", 0), ("a", 1), ("b", 0), ("c", 0)}
    assert [e["state"] for e in deliveries["a", 0]["events"]] == ["planned", "sending", "published"]
    assert deliveries["b", 0]["state"] == "failed" and "***" in deliveries["b", 0]["reason"]
    assert deliveries["c", 0]["state"] == "planned"
    assert [r["reason"] for r in records if r["type"] == "pause"] == ["review"]
    assert CANARY not in done.stdout
    written = cli(project, "ledger", "export", "-o", str(project.root / "backup.jsonl"))
    assert "wrote" in written.stderr and "5 records" in written.stderr


def test_migrate_moves_the_ledger_with_its_history_into_postgresql(
    make_project: Callable[[str], Project], postgres: object
) -> None:
    project = make_project(CONFIG)
    project.write("a.yaml", f"id: a\nat: {at(-1)}\ntext: Out.\nthread: [Two.]\n")
    project.write("c.yaml", f"id: c\nat: {at(3600)}\ntext: Later.\n")
    cli(project, "run", "--once")
    cli(project, "pause", "--reason", "review")
    before = cli(project, "ledger", "export").stdout
    url = postgres.new_database()  # type: ignore[attr-defined]
    moved = cli(project, "ledger", "migrate", "--to", url)
    assert moved.returncode == 0, moved.stderr
    assert "copied to" in moved.stdout and "3 deliveries" in moved.stdout
    again = cli(project, "ledger", "migrate", "--to", url)
    assert again.returncode == 2 and "already holds a ledger" in again.stderr
    text = project.config_path.read_text().replace("ledger: state/ledger.db", f'ledger: "{url}"')
    project.config_path.write_text(text)
    after = cli(project, "ledger", "export").stdout
    assert after == before  # every row and its history, as it was
    project.write("d.yaml", f"id: d\nat: {at(-1)}\ntext: After the move.\n")
    cli(project, "resume")
    done = cli(project, "run", "--once")  # the history goes on in PostgreSQL
    assert "published: d → outbox" in done.stdout, done.stderr
    events = [json.loads(line) for line in cli(project, "ledger", "export").stdout.splitlines()]
    d = next(r for r in events if r["type"] == "delivery" and r["key"]["post_id"] == "d")
    assert [e["state"] for e in d["events"]] == ["planned", "sending", "published"]


def test_the_migrate_progress_counts_rows_and_shows_only_once_copying(
    make_project: Callable[[str], Project],
) -> None:
    import io

    from postscheduler.cli import RowsProgress

    with RowsProgress("copying", io.StringIO()) as progress:
        for done in [*range(5000, 402_000, 5000), 402_000]:  # chunks of a big ledger
            progress(done, 402_000)
            assert progress.bar.pos == done  # not a table per step, done after the seventh
    assert progress.bar.pos == progress.bar.length == 402_000
    project = make_project(CONFIG)
    cli(project, "run", "--once")
    refused = cli(project, "ledger", "migrate", "--to", "postgresql://nobody@127.0.0.1:9/x")
    assert refused.returncode == 2 and "cannot open the ledger" in refused.stderr
    assert "copying" not in refused.stderr and "Traceback" not in refused.stderr
