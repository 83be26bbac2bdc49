"""The ``postscheduler`` command: a thin shell over the library.

Each command gathers its options, calls one library function, prints the result and maps
``PostschedulerError`` to a message and an exit code. Nothing here is needed by the daemon,
and nothing here imports httpx or apscheduler, so the organiser's commands start fast.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__
from .errors import ConfigError, Finding, PostschedulerError, error

app = typer.Typer(
    name="postscheduler",
    help="Schedule campaign posts from YAML files and publish them to social accounts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_FINDINGS = 1
EXIT_UNUSABLE = 2
EXIT_BUG = 70  # EX_SOFTWARE (sysexits.h): this program's fault, not the input's
MAX_QUEUE_DAYS = 36_500


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="POSTSCHEDULER_CONFIG",
        help="Configuration file (default: ./scheduler.yaml, else the embedded default).",
        dir_okay=False,
    ),
]


def _echo_err(message: str) -> None:
    typer.echo(message, err=True)


@contextmanager
def _reported() -> Iterator[None]:
    """Turn library errors into a clean message and exit code, never a traceback."""
    try:
        yield
    except ConfigError as exc:
        _echo_err(f"error: {exc}")
        raise typer.Exit(EXIT_UNUSABLE) from None
    except PostschedulerError as exc:
        _echo_err(f"error: {exc}")
        raise typer.Exit(EXIT_UNUSABLE) from None


# --config given before the command (`postscheduler --config X validate`); set by main() on
# every invocation.
_config_before_command: Path | None = None


def _config_path(config: Path | None) -> Path | None:
    """The command's --config, else the one given before the command."""
    return config if config is not None else _config_before_command


# The configuration this invocation loaded: its secrets are masked in a bug's report.
_loaded: list[Any] = []


def _settings(config: Path | None) -> Any:
    from .config import load_settings

    settings = load_settings(_config_path(config))
    _loaded[:] = [settings]
    return settings


def _now(value: str | None, settings: Any, option: str = "--from") -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    from .errors import TimeError
    from .posts.times import parse_time

    try:
        return parse_time(value, settings.config.zone)
    except TimeError as exc:
        raise PostschedulerError(f"{option}: {exc}") from None


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shown(text: str | None) -> str:
    """What a platform said, safe on a terminal: control characters (escape sequences, BEL,
    a carriage return that hides what came before) shown as codes, never acted on."""
    if not text:
        return ""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"postscheduler {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Schedule campaign posts from YAML files and publish them to social accounts."""
    global _config_before_command
    _config_before_command = config


# --- validate ---------------------------------------------------------------------------


def _github_escape(text: str, *, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def format_findings(findings: list[Finding], fmt: OutputFormat) -> str:
    if fmt is OutputFormat.json:
        return json.dumps([f.as_dict() for f in findings], ensure_ascii=False, indent=2)
    if fmt is OutputFormat.github:
        lines = []
        for f in findings:
            props = []
            if f.file is not None:
                props.append(f"file={_github_escape(str(f.file), prop=True)}")
                if f.line:
                    props.append(f"line={f.line}")
                    props.append(f"col={f.column}")
            props.append(f"title={_github_escape('postscheduler ' + f.code, prop=True)}")
            message = f.as_text().split(": ", 2)[-1] if f.file else f.as_text()
            lines.append(f"::{f.severity.value} {','.join(props)}::{_github_escape(message)}")
        return "\n".join(lines)
    return "\n".join(f.as_text() for f in findings)


def _relative(findings: list[Finding]) -> list[Finding]:
    import dataclasses

    cwd = Path.cwd()
    out = []
    for f in findings:
        if f.file is not None and f.file.is_absolute() and f.file.is_relative_to(cwd):
            f = dataclasses.replace(f, file=f.file.relative_to(cwd))
        out.append(f)
    return out


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@app.command()
def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Post files or folders (default: the configured posts_dir)."),
    ] = None,
    output: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="text, json, or github (workflow annotations)."),
    ] = OutputFormat.text,
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="Count against each Mastodon instance's own limits, and check that "
            "Bluesky @mentions resolve (asks the servers).",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Check post files: syntax, keys, times, accounts, images, credits and per-platform limits.

    Exit status 0 when there is no error (warnings are shown but allowed), 1 when a post has
    errors, 2 when the configuration cannot be used.

    Example: postscheduler validate posts/ --format github
    """
    from .delivery.checks import validate_posts

    try:
        settings = _settings(config)
    except ConfigError as exc:
        # Still said as findings, so a pull request shows the bad line of scheduler.yaml.
        findings = list(exc.findings) or [error("config", str(exc))]
        typer.echo(format_findings(_relative(findings), output))
        raise typer.Exit(EXIT_UNUSABLE) from None
    with _reported():
        result = validate_posts(settings, paths, now=_now(None, settings), online=online)
    findings = _relative(list(result.findings))
    if findings or output is OutputFormat.json:
        typer.echo(format_findings(findings, output))
    if output is OutputFormat.text:
        # Posts = ready + blocked, so the numbers add up for a reader.
        posts = result.ready + result.blocked
        summary = f"{_n(len(result.catalog.files), 'file')}, {_n(posts, 'post')}"
        if result.blocked:
            summary += f" ({result.ready} ready, {result.blocked} blocked by errors)"
        summary += f": {_n(result.errors, 'error')}, {_n(result.warnings, 'warning')}"
        _echo_err(summary)
    if result.errors:
        raise typer.Exit(EXIT_FINDINGS)


# --- queue ------------------------------------------------------------------------------


def _fmt_when(when: dt.datetime) -> str:
    return when.strftime("%a %Y-%m-%d %H:%M %Z")


def _fmt_exact(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S %Z")


_ISO_UTC = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\+00:00|Z)")


def _local_times(text: str, zone: Any) -> str:
    """UTC timestamps in a ledger detail, shown in the local clock like the rest."""

    def local(m: re.Match[str]) -> str:
        try:
            when = dt.datetime.fromisoformat(m[0].replace("Z", "+00:00"))
        except ValueError:
            return m[0]
        return _fmt_exact(when.astimezone(zone))

    return _ISO_UTC.sub(local, text)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
    return "\n".join(lines)


@app.command()
def queue(
    days: Annotated[
        float | None, typer.Option("--days", "-d", help="Only posts due within this many days.")
    ] = None,
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only posts going to this account.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--from", help="Show the queue as of this time instead of now."),
    ] = None,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", help="Also posts already published or skipped, and those in the past."
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """List what goes out next, soonest first, in the configured time zone.

    Posts every account has already published (or skipped) are left out once the daemon has
    run; held, failed and unconfirmed ones are marked.

    Example: postscheduler queue --days 7 --account mastodon
    """
    from .delivery.queue import queue_posts

    if days is not None and not 0 <= days <= MAX_QUEUE_DAYS:  # also refuses nan
        _echo_err(f"error: --days must be a number of days from 0 to {MAX_QUEUE_DAYS}")
        raise typer.Exit(EXIT_UNUSABLE)
    with _reported():
        settings = _settings(config)
        agenda = queue_posts(
            settings, now=_now(since, settings), days=days, account=account, show_all=show_all
        )
    rows = []
    for entry in agenda.entries:
        errors = [f for f in entry.findings if f.is_error]
        warnings = [f for f in entry.findings if not f.is_error]
        notes = [f"{name}: {state}" for name, state in entry.states if state != "queued"]
        if errors:
            first = errors[0]
            held = f"HELD: {first.message} ({_relative([first])[0].location()})"
            if len(errors) > 1:
                held += f" (+{len(errors) - 1})"
            if entry.late_after is not None:
                held += f"; skipped as late after {_fmt_when(entry.late_after)} if not fixed"
            notes.insert(0, held)
        elif warnings:
            notes.append(
                f"warning: {warnings[0].message}"
                + (f" (+{len(warnings) - 1})" if len(warnings) > 1 else "")
            )
        note = "; ".join(notes)
        rows.append(
            [_fmt_when(entry.when), entry.post_id, ",".join(entry.accounts), entry.first_line, note]
        )
    zone = settings.config.timezone
    if rows:
        typer.echo(_table(rows, ["WHEN", "POST", "ACCOUNTS", "FIRST LINE", "NOTES"]))
    else:
        typer.echo(
            "Nothing queued" + (f" in the next {days:g} days" if days is not None else "") + "."
        )
    extra = []
    if agenda.drafts:
        extra.append(f"{agenda.drafts} drafts")
    if agenda.past:
        extra.append(f"{agenda.past} past or expired")
    if agenda.done:
        extra.append(f"{agenda.done} already published or skipped (--all shows them)")
    if agenda.files_with_errors:
        extra.append(
            f"{len(agenda.files_with_errors)} files with errors (run `postscheduler validate`)"
        )
    _echo_err(
        f"{len(rows)} queued (times in {zone})"
        + (f"; not shown: {', '.join(extra)}" if extra else "")
    )
    if agenda.blocked:
        raise typer.Exit(EXIT_FINDINGS)


# --- preview ----------------------------------------------------------------------------


@app.command()
def preview(
    post_id: Annotated[str, typer.Argument(metavar="POST", help="The post id.")],
    account: Annotated[
        list[str] | None, typer.Option("--account", "-a", help="Only this account (repeatable).")
    ] = None,
    html_file: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the preview as a self-contained HTML page."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Show a post exactly as each account will publish it, with counts against each limit.

    Example: postscheduler preview peru-article --account outbox
    """
    from .posts.preview import preview_post

    with _reported():
        settings = _settings(config)
        shown = preview_post(settings, post_id, account, now=_now(None, settings))
    when = (
        "draft (never published)"
        if shown.post.is_draft
        else _fmt_when(shown.at)
        if shown.at
        else ""
    )
    for view in shown.accounts:
        rendering = view.rendering
        typer.echo(f"=== {post_id} → {rendering.account} ({rendering.platform.label}) · {when}")
        total = len(view.parts)
        for part_view in view.parts:
            part = part_view.part
            counts = ", ".join(str(m) for m in part.measures)
            flag = "  ** OVER THE LIMIT **" if part.over_limit else ""
            typer.echo(f"--- part {part.index + 1}/{total} · {counts}{flag}")
            typer.echo(part.text)
            if part_view.image is not None:
                typer.echo(_describe_image(part_view.image))
            if part_view.split:
                typer.echo(f"--- sent as {len(part_view.split)} messages:")
                for n, message in enumerate(part_view.split, start=1):
                    what = "photo, caption" if message.image is not None else "text"
                    first = message.text.splitlines()[0] if message.text else ""
                    typer.echo(f"    {n}. {what}: {first}")
        if rendering.link:
            typer.echo(f"--- link: {rendering.link}")
            if view.card is not None:
                typer.echo(f"--- link card: {view.card}")
        if rendering.content.content_warning and rendering.platform.content_warnings:
            typer.echo(f"--- content warning: {rendering.content.content_warning}")
        for f in view.findings:
            typer.echo(f"!!! {f.severity.value}: {f.message}" + (f" ({f.hint})" if f.hint else ""))
        typer.echo("")
    if html_file is not None:
        from .posts.preview_html import preview_page

        try:
            html_file.write_text(preview_page(shown, when), encoding="utf-8")
        except OSError as exc:
            _echo_err(f"error: cannot write {html_file}: {exc.strerror}")
            raise typer.Exit(EXIT_UNUSABLE) from None
        _echo_err(f"wrote {html_file}")
    if shown.has_errors:
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
def calendar(
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path(
        "calendar.html"
    ),
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            min=1,
            max=366,
            help="How many days (default: four weeks, or to the last post).",
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", metavar="TIME", help="From this day (default: now).")
    ] = None,
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only this account.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write a calendar of what goes out, week by week, with each account's mock-up of every
    post, as one self-contained HTML page (no script, no network requests).

    Example: postscheduler calendar -o calendar.html --days 28
    """
    from .config import unknown_account_finding
    from .delivery.calendar import build_calendar
    from .delivery.calendar_html import calendar_page

    with _reported():
        settings = _settings(config)
        if account is not None and account not in settings.config.accounts:
            raise PostschedulerError(unknown_account_finding(account, settings).as_text())
        now = dt.datetime.now(dt.UTC)
        cal = build_calendar(
            settings, start=_now(start, settings), days=days, account=account, now=now
        )
        title = f"Calendar · {settings.base_dir.name or 'postscheduler'}"
        page = calendar_page(cal, title=title, today=now.astimezone(settings.config.zone).date())
    try:
        output.write_text(page, encoding="utf-8")
    except OSError as exc:
        _echo_err(f"error: cannot write {output}: {exc.strerror}")
        raise typer.Exit(EXIT_UNUSABLE) from None
    held = sum(1 for e in cal.entries if e.preview is None) + len(cal.held)
    _echo_err(
        f"wrote {output}: {_n(len(cal.entries), 'post')} over {_n(cal.days // 7, 'week')}"
        + (f", {held} held by errors" if held else "")
    )


class DiffFormat(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"


@app.command()
def diff(
    base: Annotated[str, typer.Argument(help="The git revision to compare with (main, HEAD~1).")],
    head: Annotated[
        str | None,
        typer.Argument(help="The revision with the change (default: the working tree)."),
    ] = None,
    fmt: Annotated[
        DiffFormat,
        typer.Option("--format", "-f", help="text, markdown (a pull-request comment) or json."),
    ] = DiffFormat.text,
    config: ConfigOption = None,
) -> None:
    """Say what a change does to the schedule: posts added, removed, moved and edited (each
    account's final text before and after), and validation errors it brings.

    Exit status 1 when the change brings errors.

    Example: postscheduler diff origin/main --format markdown
    """
    from .delivery.schedule_diff import as_data, as_markdown, as_text, schedule_diff

    with _reported():
        settings = _settings(config)
        result = schedule_diff(settings, base, head, now=dt.datetime.now(dt.UTC))
    zone = settings.config.zone
    if fmt is DiffFormat.json:
        typer.echo(json.dumps(as_data(result), ensure_ascii=False, indent=2))
    elif fmt is DiffFormat.markdown:
        typer.echo(as_markdown(result, zone), nl=False)
    else:
        typer.echo(_shown(as_text(result, zone)), nl=False)
    if result.new_errors:
        raise typer.Exit(EXIT_FINDINGS)


def _describe_image(view: Any) -> str:
    image = view.image
    lines = []
    if image.file is not None:
        if view.info is not None:
            info = view.info
            size = f"{info.format} {info.width}×{info.height}, {info.size:,} bytes"
            lines.append(f"[image: {image.file} · {size}]")
        else:
            lines.append(f"[image: {image.file} · PROBLEM: {view.problem}]")
    else:
        lines.append(f"[image: {image.url}]")
    lines.append(f"[alt: {image.alt}]")
    lines.append(f"[credit: {image.credit}]")
    return "\n".join(lines)


# --- the daemon and the ledger ----------------------------------------------------------


@app.command()
def run(
    once: Annotated[
        bool, typer.Option("--once", help="Send what is due now, then exit (for cron or CI).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Render and log what would be sent; send nothing.")
    ] = False,
    rehearse_all: Annotated[
        bool,
        typer.Option(
            "--rehearse",
            help="Rehearse the whole campaign: publish into the outbox accounts every post, "
            "each at its own time on a simulated clock, then exit. The ledger is not touched.",
        ),
    ] = False,
    rehearse_until: Annotated[
        str | None,
        typer.Option(
            "--rehearse-until",
            metavar="TIME",
            help="Rehearse only what is due until TIME.",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics",
            metavar="HOST:PORT",
            help="Serve Prometheus metrics on /metrics and a health check on /healthz "
            "(e.g. 127.0.0.1:9464; not authenticated: keep it private).",
        ),
    ] = None,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="text, or json: one object a line.")
    ] = LogFormat.text,
    config: ConfigOption = None,
) -> None:
    """Publish each post to each account when it is due; keeps running and follows edits.

    Stops cleanly on SIGTERM or Ctrl-C, letting deliveries in flight finish.

    Example: postscheduler run --rehearse
    """
    import asyncio
    import logging

    from .delivery.daemon import Daemon, rehearse, run_once
    from .redact import setup_logging

    with _reported():
        settings = _settings(config)
        redactor = setup_logging(settings, verbose=verbose, log_format=log_format.value)
        if metrics is not None and (once or rehearse_all or rehearse_until is not None):
            raise PostschedulerError("--metrics is for the daemon: it cannot go with --once")
        if rehearse_all or rehearse_until is not None:
            if not verbose:  # the list printed below says it all
                logging.getLogger("postscheduler").setLevel(logging.WARNING)
            until = None
            if rehearse_until is not None:
                until = _now(rehearse_until, settings, "--rehearse-until")
            done = asyncio.run(rehearse(settings, until, redactor=redactor))
            zone = settings.config.zone
            for row in done:
                when = _fmt_when((row.updated_at or row.due_at).astimezone(zone))
                typer.echo(f"{when}  {row.key}  {row.remote_url or ''}")
            _echo_err(f"rehearsed {len(done)} deliveries into the outbox")
            return
        if once:
            report = asyncio.run(run_once(settings, dry_run=dry_run, redactor=redactor))
            for key, state in sorted(report.done.items()):
                reason = report.reasons.get(key)
                typer.echo(f"{state.value}: {key}" + (f": {_shown(reason)}" if reason else ""))
            for pause, held in report.paused:
                why = f": {_shown(pause.reason)}" if pause.reason else ""
                typer.echo(
                    f"PAUSED: {pause.account or 'all accounts'}{why}; holding "
                    + ("1 due delivery" if held == 1 else f"{held} due deliveries")
                    + " (`postscheduler resume` sends them)"
                )
            tally = collections.Counter(report.done.values())
            summary = ", ".join(f"{n} {s.value}" for s, n in sorted(tally.items()))
            _echo_err(f"this run: {summary or 'nothing was due'}")
            if report.errors or report.left_problems:
                raise typer.Exit(EXIT_FINDINGS)
            return
        if metrics is not None:
            from .delivery.metrics import parse_address

            parse_address(metrics)  # a mistyped address is told before anything starts
        daemon = Daemon(
            _config_path(config),
            settings=settings,
            dry_run=dry_run,
            metrics_address=metrics,
            redactor=redactor,
        )
        asyncio.run(daemon.run())


@app.command()
def status(config: ConfigOption = None) -> None:
    """Deliveries per state, what is due next, and every failure with its reason.

    Example: postscheduler status
    """
    from .delivery.status import delivery_status
    from .ledger import DeliveryState

    with _reported():
        settings = _settings(config)
        report = delivery_status(settings)
    zone = settings.config.zone
    typer.echo("  ".join(f"{s.value}: {report.counts[s]}" for s in DeliveryState))
    for p in report.pauses:
        until = f"until {_fmt_when(p.until.astimezone(zone))}" if p.until else "until resumed"
        why = f": {_shown(p.reason)}" if p.reason else ""
        typer.echo(f"PAUSED: {p.account or 'all accounts'} {until}{why}")
    for d in report.daemons:
        typer.echo(
            f"daemon {d.id} on {d.host} (pid {d.pid}): last heartbeat "
            f"{_fmt_when(d.heartbeat_at.astimezone(zone))}, {d.in_flight} in flight"
        )
    if not report.daemons:
        typer.echo("no daemon running: nothing is sent until `postscheduler run` starts")
    if report.next is not None:
        when = report.next.next_attempt_at
        typer.echo(f"next: {report.next.key} at {_fmt_when(when.astimezone(zone))}")
    problems, waiting = report.problems, report.waiting
    for row in problems:
        typer.echo(
            f"{row.state.value.upper()}: {row.key} after {row.attempts} attempts: "
            f"{_shown(row.reason)}"
        )
    for row in waiting:
        typer.echo(f"WAITING: {row.key}, until the part before it is settled")
    for row, finding, late_after in report.held:
        where = _relative([finding])[0].location()
        typer.echo(
            f"HELD: {row.key}: {finding.message} ({where}); skipped as late after "
            f"{_fmt_when(late_after.astimezone(zone))} if not fixed"
        )
    if problems or report.held:
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
def history(
    post: Annotated[str | None, typer.Option("--post", "-p", help="Only this post.")] = None,
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only this account.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Every state change of every delivery, oldest first, in local time.

    Example: postscheduler history --post peru-article
    """
    from .delivery.status import delivery_history

    with _reported():
        settings = _settings(config)
        events = delivery_history(settings, post, account)
    zone = settings.config.zone
    rows = []
    for e, delivery in events:
        detail = _local_times(_shown(e.detail), zone)
        if e.state.value == "published" and delivery is not None:
            sent = [
                delivery.remote_url or delivery.remote_id or "",
                f"text {delivery.content_hash[:12]}",
            ]
            detail = " · ".join(part for part in (detail, *sent) if part)
        rows.append(
            [_fmt_exact(e.at.astimezone(zone)), str(e.key), e.state.value, str(e.attempt), detail]
        )
    if rows:
        typer.echo(_table(rows, ["WHEN", "DELIVERY", "STATE", "ATTEMPT", "DETAIL"]))
    else:
        typer.echo("No history yet.")


def _report_outcome(outcome: Any, settings: Any) -> None:
    for row in outcome.deliveries:
        line = f"{row.key}: {row.state.value}"
        if row.remote_url or row.remote_id:
            line += f" ({row.remote_url or row.remote_id})"
        if row.reason:
            line += f": {_shown(row.reason)}"
        typer.echo(line)
    if outcome.sent_by_daemon:
        _echo_err("a daemon is running on this ledger: it sends these within seconds")


@app.command()
def publish(
    post_id: Annotated[str, typer.Argument(metavar="POST", help="The post id.")],
    now: Annotated[bool, typer.Option("--now", help="Send it now (required).")] = False,
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only to this account.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Send a post now instead of at its time; parts already published are not sent again.

    Example: postscheduler publish peru-article --now --account outbox
    """
    from .delivery.operations import publish_now

    if not now:
        _echo_err("error: say --now to publish a post before its time")
        raise typer.Exit(EXIT_UNUSABLE)
    with _reported():
        settings = _settings(config)
        from .redact import setup_logging

        setup_logging(settings)
        outcome = publish_now(settings, post_id, account)
    _report_outcome(outcome, settings)


@app.command()
def pause(
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only this account (default: all).")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="When the pause ends by itself, e.g. '2027-01-15 09:00'."),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the log.")] = None,
    config: ConfigOption = None,
) -> None:
    """Stop publishing at once: a running daemon claims nothing more (what is in flight
    finishes) until `postscheduler resume` or --until.

    Example: postscheduler pause --reason "breaking news: review the queue"
    """
    from .delivery.operations import pause_publishing
    from .posts.times import parse_time

    with _reported():
        settings = _settings(config)
        ends = parse_time(until, settings.config.zone) if until else None
        paused = pause_publishing(settings, account, ends, reason)
    scope = f"account {paused.account}" if paused.account else "all accounts"
    ends_text = (
        f"until {_fmt_when(ends.astimezone(settings.config.zone))}"
        if ends
        else ("until `postscheduler resume" + (f" --account {account}`" if account else "`"))
    )
    typer.echo(f"paused {scope} {ends_text}")


@app.command()
def resume(
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="The account whose pause to end.")
    ] = None,
    send_held: Annotated[
        bool,
        typer.Option(
            "--send-held",
            help="Also send what the pause held past late_grace (by default skipped as late).",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """End a pause: held posts due within late_grace go out in order, older ones are
    skipped as late (or sent too, with --send-held).

    Example: postscheduler resume
    """
    from .delivery.operations import resume_publishing

    with _reported():
        settings = _settings(config)
        resumed = resume_publishing(settings, account, send_held=send_held)
    typer.echo(f"resumed {'account ' + account if account else 'all accounts'}")
    zone = settings.config.zone
    for row in resumed.sent_held:
        typer.echo(f"sending now, though held past late_grace: {row.key}")
    for row in resumed.late:
        due = _fmt_when(row.due_at.astimezone(zone))
        typer.echo(f"skipped as late (due {due}): {row.key}")
    if resumed.late:
        _echo_err(
            ("1 delivery" if len(resumed.late) == 1 else f"{len(resumed.late)} deliveries")
            + " held past late_grace "
            + f"({settings.config.publishing.late_grace}) will not be sent: `postscheduler "
            "publish POST --now` sends one anyway"
        )
    for p in resumed.still:
        typer.echo(f"still paused: {p.account or 'all accounts'}")


@app.command()
def retry(
    post_id: Annotated[
        str | None, typer.Argument(metavar="[POST]", help="The post whose failures to retry.")
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Retry every failed delivery.")] = False,
    config: ConfigOption = None,
) -> None:
    """Send failed deliveries again, after fixing what made them fail.

    Example: postscheduler retry --failed
    """
    from .delivery.operations import retry_failed

    if (post_id is None) == (not failed):
        _echo_err("error: give a POST, or --failed for every failed delivery")
        raise typer.Exit(EXIT_UNUSABLE)
    with _reported():
        settings = _settings(config)
        from .redact import setup_logging

        setup_logging(settings)
        outcome = retry_failed(settings, post_id)
    _report_outcome(outcome, settings)


@app.command()
def resolve(
    post_id: Annotated[str, typer.Argument(metavar="POST", help="The post id.")],
    account: Annotated[str, typer.Option("--account", "-a", help="The account.")],
    sent: Annotated[bool, typer.Option("--sent", help="It was published: record it.")] = False,
    resend: Annotated[bool, typer.Option("--resend", help="It was not: send it again.")] = False,
    config: ConfigOption = None,
) -> None:
    """Settle an unconfirmed delivery after checking the account by hand.

    Example: postscheduler resolve peru-article --account x --sent
    """
    from .delivery.operations import resolve_unconfirmed

    if sent == resend:
        _echo_err("error: say --sent (it went out) or --resend (it did not)")
        raise typer.Exit(EXIT_UNUSABLE)
    with _reported():
        settings = _settings(config)
        from .redact import setup_logging

        setup_logging(settings)
        outcome = resolve_unconfirmed(settings, post_id, account, sent=sent)
    _report_outcome(outcome, settings)


accounts_app = typer.Typer(help="Configured accounts.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
ledger_app = typer.Typer(help="The ledger itself: backups.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


class RowsProgress:
    """A progress bar over rows, for ``progress(done, total)`` callbacks: shown from the
    first rows copied (not while the target is still being reached, which may fail)."""

    def __init__(self, label: str, file: Any) -> None:
        self.label, self.file = label, file
        self.bar: Any = None

    def __enter__(self) -> RowsProgress:
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = typer.progressbar(length=total, label=self.label, file=self.file)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


@ledger_app.command("migrate")
def ledger_migrate(
    to: Annotated[
        str,
        typer.Option("--to", metavar="URL", help="An empty PostgreSQL database: postgresql://…"),
    ],
    config: ConfigOption = None,
) -> None:
    """Copy the SQLite ledger, every delivery with its whole history, the pauses and the
    alerts, into an empty PostgreSQL database; then point `ledger:` at it. Stop the daemon
    first (the copy refuses to run beside it).

    Example: postscheduler ledger migrate --to 'postgresql://postscheduler:${PGPASSWORD}@db/ps'
    """
    from .delivery.status import migrate_ledger

    with _reported():
        settings = _settings(config)
        with RowsProgress("copying", sys.stderr) as progress:
            done = migrate_ledger(settings, to, progress)
    counts = ", ".join(f"{n} {table}" for table, n in done.rows.items() if n)
    typer.echo(f"copied to {done.target}: {counts or 'an empty ledger'}")
    _echo_err(f"now set `ledger: {done.target}` in {settings.describe()} (the password as ${{…}})")


@ledger_app.command("export")
def ledger_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: standard output).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write the whole ledger as JSON lines: every delivery with its history, the pauses and
    the alerts; for backups (the daemon may keep running).

    Example: postscheduler ledger export -o ledger-backup.jsonl
    """
    from .delivery.status import export_ledger

    with _reported():
        settings = _settings(config)
        lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in export_ledger(settings)]
    if output is None:
        sys.stdout.write("".join(lines))
        return
    try:
        output.write_text("".join(lines), encoding="utf-8")
    except OSError as exc:
        _echo_err(f"error: cannot write {output}: {exc.strerror}")
        raise typer.Exit(EXIT_UNUSABLE) from None
    _echo_err(f"wrote {output}: {len(lines)} records")


alerts_app = typer.Typer(help="Alerts to the people who run the campaign.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("test")
def alerts_test(config: ConfigOption = None) -> None:
    """Send a test alert to every channel in alerts: (e-mail and alert accounts) now.

    Example: postscheduler alerts test
    """
    import asyncio

    from .alerts import send_test_alert
    from .redact import setup_logging

    with _reported():
        settings = _settings(config)
        if not settings.config.alerts.configured:
            raise PostschedulerError(
                f"no alerts: section in {settings.describe()}: add alerts.smtp or "
                "alerts.accounts (see the README, Alerts)"
            )
        redactor = setup_logging(settings)
        results = asyncio.run(send_test_alert(settings, redact=redactor))
    for channel, problem in results.items():
        typer.echo(f"{channel}: " + ("sent" if problem is None else f"FAILED: {_shown(problem)}"))
    if any(problem is not None for problem in results.values()):
        raise typer.Exit(EXIT_FINDINGS)


@alerts_app.command("list")
def alerts_list(
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many, newest first.")] = 20,
    full: Annotated[bool, typer.Option("--full", help="Each alert's whole text.")] = False,
    config: ConfigOption = None,
) -> None:
    """The alerts raised, newest first, and whether each reached its channels.

    Example: postscheduler alerts list --full
    """
    from .delivery.status import open_existing_ledger

    with _reported():
        settings = _settings(config)
        with open_existing_ledger(settings) as ledger:
            sends = ledger.alert_sends(limit)
    zone = settings.config.zone
    if not sends:
        typer.echo("No alerts yet.")
    for send in sends:
        when = _fmt_exact(send.created_at.astimezone(zone))
        state = send.state.value + (f" ({_shown(send.error)})" if send.error else "")
        typer.echo(f"{when}  {send.channel}: {state}: {_shown(send.alert.subject)}")
        if full:
            typer.echo(textwrap.indent(_shown(send.alert.body), "    "))


@accounts_app.command("check")
def accounts_check(
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only this account.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Verify each account's credentials with its platform.

    Example: postscheduler accounts check
    """
    import asyncio

    from .config import unknown_account_finding
    from .delivery.operations import check_accounts

    with _reported():
        settings = _settings(config)
        if account is not None and account not in settings.config.accounts:
            raise PostschedulerError(unknown_account_finding(account, settings).as_text())
        results = asyncio.run(check_accounts(settings, account))
    for r in results:
        typer.echo(f"{'ok  ' if r.ok else 'FAIL'}  {r.account} ({r.platform}): {r.detail}")
        for warning in r.warnings:
            typer.echo(f"warn  {_shown(warning)}")
    if not all(r.ok for r in results):
        raise typer.Exit(EXIT_FINDINGS)


# --- schema and init --------------------------------------------------------------------


def schema_text() -> str:
    from .posts.models import post_file_schema

    return json.dumps(post_file_schema(), indent=2, ensure_ascii=False) + "\n"


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of post files, for editors that check YAML as you type.

    Post files point at it with a first line such as
    `# yaml-language-server: $schema=post.schema.json`.

    Example: postscheduler schema -o posts/post.schema.json
    """
    text = schema_text()
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _echo_err(f"error: cannot write {output}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_UNUSABLE) from None
    _echo_err(f"wrote {output}")


@app.command()
def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to create the project (default: here).")
    ] = Path(),
) -> None:
    """Create scheduler.yaml, posts/ with an example post, and the editor schema.

    Existing files are left alone.

    Example: postscheduler init my-campaign
    """
    from .scaffold import scaffold

    with _reported():
        created, kept = scaffold(directory, schema_text(), dt.datetime.now(dt.UTC))
    for path in created:
        typer.echo(f"created {path}")
    for path in kept:
        typer.echo(f"kept    {path} (already exists)")
    typer.echo("next: postscheduler validate && postscheduler queue")


def _one_line_summaries(*apps: typer.Typer) -> None:
    """Each command's line in ``--help`` is its docstring's first paragraph; typer's rich
    listing keeps that paragraph's line breaks (made for the 100-column source), so a
    summary of two source lines printed as two ragged lines."""
    for group in apps:
        for info in group.registered_commands:
            doc = info.callback.__doc__ if info.callback is not None else None
            if info.short_help is None and info.help is None and doc:
                info.short_help = " ".join(textwrap.dedent(doc).strip().split("\n\n")[0].split())


_one_line_summaries(app, accounts_app, ledger_app, alerts_app)


def bug_report(exc: BaseException) -> str:
    """What is said when a command fails on a bug: what it was, that it is a bug, and the
    traceback for the report, with the secrets of the configuration loaded masked."""
    import traceback

    from .redact import Redactor

    redact = Redactor([])
    if _loaded:
        with suppress(Exception):  # a report must come out whatever else is broken
            redact = Redactor.for_settings(_loaded[0])
    trace = "".join(traceback.format_exception(exc))
    return redact(
        f"internal error: {type(exc).__name__}: {exc}\n"
        "This is a bug in postscheduler, not a problem with your posts or configuration. "
        "Please report it, with the traceback below (its secrets are masked).\n\n" + trace
    )


def entry_point() -> None:
    try:
        app()
    except KeyboardInterrupt:
        _echo_err("interrupted")
        sys.exit(130)
    except Exception as exc:  # every error we know of is reported by _reported: a bug
        _echo_err(bug_report(exc).rstrip("\n"))
        sys.exit(EXIT_BUG)
