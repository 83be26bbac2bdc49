"""``scheduler.yaml``: time zone, where the posts are, the ledger, and the accounts.

Secrets are never written in the file: a secret field holds a reference such as
``${MASTODON_TOKEN}``, resolved from the environment (or a ``.env`` file beside the config)
only when a publisher needs it. The resolved value is never stored on the model, so it cannot
leak into a repr, a log line or an error message.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError, Finding, TimeError, YamlSourceError, error, warning
from .platforms import PLATFORMS
from .platforms.base import AccountConfig, Duration, EnvRef, HttpUrl, LocalPath, Secret, local_path
from .posts.models import no_control_characters
from .posts.times import get_zone, parse_time
from .posts.validation import findings_from_validation_error
from .posts.yamlsource import Document, parse_yaml, read_yaml

DEFAULT_CONFIG_NAME = "scheduler.yaml"
DOTENV_NAME = ".env"  # secrets beside the configuration, under the real environment


def _account(value: Any) -> Any:
    if isinstance(value, AccountConfig):
        return value
    if not isinstance(value, dict):
        raise ValueError("an account is a mapping with platform: and its settings")
    platform = value.get("platform")
    if platform is None:
        raise ValueError(f"missing platform: (one of {', '.join(PLATFORMS)})")
    spec = PLATFORMS.get(str(platform))
    if spec is None:
        raise ValueError(f"unknown platform {platform!r}; expected one of {', '.join(PLATFORMS)}")
    model = spec.account_model
    # A ValidationError raised here is merged into the config's, under this account's key.
    return model.model_validate(value)


Account = Annotated[AccountConfig, BeforeValidator(_account)]


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    accounts: list[str] = Field(default_factory=list)


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    attempts: int = Field(default=5, ge=1)
    first_delay: Duration = dt.timedelta(seconds=30)
    max_delay: Duration = dt.timedelta(minutes=30)
    # The longest wait a platform's retry hint (Retry-After, a rate-limit reset) is obeyed for.
    max_wait: Duration = dt.timedelta(hours=1)


def _at_least(value: dt.timedelta, seconds: float, message: str) -> dt.timedelta:
    if value < dt.timedelta(seconds=seconds):
        raise ValueError(message)
    return value


class Publishing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    late_grace: Duration = dt.timedelta(minutes=30)
    retry: RetryPolicy = RetryPolicy()
    min_gap: Duration = dt.timedelta(0)
    # The burst guard: at most this many posts (threads count once) per account per hour, so
    # a mistaken mass edit cannot flood an account; the rest wait, and a person is alerted.
    max_per_hour: int | None = Field(default=None, gt=0)
    # A daemon's registration on the ledger lasts this long unless renewed (a quarter of it
    # apart): a daemon silent for longer is taken for dead, and another resolves what it had
    # in flight. Longer than any one request may take (30 s read, 10 s connect), so a daemon
    # cut off from the database has had its answer before another asks the platform.
    lease: Duration = dt.timedelta(seconds=60)

    @field_validator("lease")
    @classmethod
    def _lease_long_enough(cls, value: dt.timedelta) -> dt.timedelta:
        return _at_least(value, 2, "lease must be at least 2s (60s is the default)")


class LinkCards(BaseModel):
    """How article pages are fetched to build link cards (platforms that need the client to)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    timeout: Duration = dt.timedelta(seconds=10)
    max_bytes: int = Field(default=2_000_000, ge=10_000)  # per page or card image
    allow_private_addresses: bool = False


# Where an alert can go among the configured accounts: a chat or a webhook someone reads.
ALERT_PLATFORMS = ("telegram", "discord", "slack", "webhook")


class Smtp(BaseModel):
    """E-mail alerts through the campaign's own mail server (or its provider's relay)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    # STARTTLS on a plain connection (port 587), or TLS from the start (port 465).
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password: Secret | None = None
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    timeout: Duration = dt.timedelta(seconds=30)

    @model_validator(mode="after")
    def _one_tls(self) -> Smtp:
        if self.ssl and self.starttls:
            raise ValueError("choose ssl: true (port 465) or starttls: true (port 587), not both")
        return self


class Alerts(BaseModel):
    """Who is told when something needs a person, and how often at most."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    accounts: list[str] = Field(default_factory=list)
    smtp: Smtp | None = None
    # Per channel: more alerts than this in an hour wait and go as one summary.
    max_per_hour: int = Field(default=12, ge=1)
    # Alerts raised this close together go as one message when there are more than three:
    # a storm of failures is one summary, not a message each.
    gather: Duration = dt.timedelta(seconds=10)
    # A daily digest at this local time (HH:MM): the next day's posts, and what needs a person.
    digest: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")

    @property
    def configured(self) -> bool:
        return bool(self.accounts or self.smtp)


_CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class Blackout(BaseModel):
    """A window in which nothing is published: every night (``from: "22:00"``,
    ``until: "07:00"``, in the configuration's time zone), or once (``from: 2027-01-20``,
    ``until: 2027-01-21``: a day of mourning). A post due inside one is held to its end, or
    (``action: refuse``) refused by ``validate`` and not sent until it is moved."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str
    start: str = Field(alias="from")
    end: str = Field(alias="until")
    accounts: list[str] | None = None  # None: every account
    action: Literal["hold", "refuse"] = "hold"

    @property
    def daily(self) -> bool:
        return bool(_CLOCK_TIME.match(self.start))

    @model_validator(mode="after")
    def _same_kind(self) -> Blackout:
        daily_start, daily_end = (
            bool(_CLOCK_TIME.match(self.start)),
            bool(_CLOCK_TIME.match(self.end)),
        )
        if daily_start != daily_end:
            raise ValueError(
                'from and until must both be times of day ("22:00") or both dates and '
                'times ("2027-01-20 00:00")'
            )
        if daily_start and self.start == self.end:
            raise ValueError("from and until are the same time of day: the window is empty")
        return self

    def occurrence(
        self, when: dt.datetime, zone: ZoneInfo
    ) -> tuple[dt.datetime, dt.datetime] | None:
        """The window (start, end) that holds ``when``, if one does."""
        if not self.daily:
            start, end = parse_time(self.start, zone), parse_time(self.end, zone)
            return (start, end) if start <= when < end else None
        local = when.astimezone(zone)
        h1, m1 = (int(x) for x in self.start.split(":"))
        h2, m2 = (int(x) for x in self.end.split(":"))
        for days_back in (0, 1):  # tonight's window, or last night's reaching into today
            day = local.date() - dt.timedelta(days=days_back)
            start = dt.datetime.combine(day, dt.time(h1, m1), tzinfo=zone)
            end_day = day if (h2, m2) > (h1, m1) else day + dt.timedelta(days=1)
            end = dt.datetime.combine(end_day, dt.time(h2, m2), tzinfo=zone)
            if start <= when < end:
                return start, end
        return None

    def covers(self, account: str) -> bool:
        return self.accounts is None or account in self.accounts


class PostsRepo(BaseModel):
    """The posts live in a git repository: the daemon keeps a clone of its own up to date
    (fast-forward only) and reads ``posts_dir`` inside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str  # anything `git clone` takes: https://…, git@host:org/repo.git, a path
    branch: str = "main"
    every: Duration = dt.timedelta(seconds=60)
    checkout: LocalPath = ".postscheduler/posts-repo"  # relative to the configuration's folder

    @field_validator("url")
    @classmethod
    def _no_password(cls, value: str) -> str:
        if re.match(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", value, re.IGNORECASE):
            raise ValueError(
                "the URL holds a password, which would be written to the checkout's "
                ".git/config and shown in logs: use an SSH deploy key, or a git credential "
                "helper for https"
            )
        return value

    @field_validator("every")
    @classmethod
    def _often_enough(cls, value: dt.timedelta) -> dt.timedelta:
        return _at_least(value, 1, "must be at least 1s")

    @field_validator("branch")
    @classmethod
    def _branch_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._/-]+", value) or value.startswith("-"):
            raise ValueError(f"{value!r} is not a branch name")
        return value


class Config(BaseModel):
    """The whole of ``scheduler.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    posts_dir: LocalPath = "posts"
    ledger: str = ".postscheduler/ledger.db"
    credit_format: str = "📷 {credit}"
    # Where posts/ is served on the web (the campaign's site, a raw git host), for the
    # platforms that fetch images themselves: posts/images/x.jpg is <media_url>/images/x.jpg.
    media_url: HttpUrl | None = None
    accounts: dict[str, Account] = Field(default_factory=dict)
    defaults: Defaults = Defaults()
    publishing: Publishing = Publishing()
    link_cards: LinkCards = LinkCards()
    alerts: Alerts = Alerts()
    posts_repo: PostsRepo | None = None
    blackout: list[Blackout] = Field(default_factory=list)

    @field_validator("ledger")
    @classmethod
    def _ledger_place(cls, value: str) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            if "\0" in value:
                raise ValueError("a URL cannot contain a NUL character")
            return value
        return local_path(value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            get_zone(value)
        except TimeError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("credit_format")
    @classmethod
    def _has_credit(cls, value: str) -> str:
        no_control_characters(value)  # it is published with every credit
        if "{credit}" not in value:
            raise ValueError('must contain {credit}, e.g. "📷 {credit}"')
        try:
            value.format(credit="x")
        except (KeyError, IndexError, ValueError):
            raise ValueError("may use only the placeholder {credit}") from None
        return value

    @field_validator("accounts")
    @classmethod
    def _account_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(name)):
                raise ValueError(f"account name {name!r} must be letters, digits, '_', '.' or '-'")
        return value

    @model_validator(mode="after")
    def _defaults_exist(self) -> Config:
        for name in self.defaults.accounts:
            if name not in self.accounts:
                raise ValueError(
                    f"defaults.accounts names {name!r}, which is not in accounts "
                    f"(known: {', '.join(self.accounts) or 'none'})"
                )
        return self

    @model_validator(mode="after")
    def _alert_accounts(self) -> Config:
        for name in self.alerts.accounts:
            account = self.accounts.get(name)
            if account is None:
                raise ValueError(
                    f"alerts.accounts names {name!r}, which is not in accounts "
                    f"(known: {', '.join(self.accounts) or 'none'})"
                )
            if account.platform not in ALERT_PLATFORMS:
                raise ValueError(
                    f"alerts.accounts names {name!r}, a {account.platform} account: alerts go "
                    f"to {', '.join(ALERT_PLATFORMS)} accounts, or by e-mail (alerts.smtp)"
                )
            if name in self.defaults.accounts:
                raise ValueError(
                    f"{name!r} is both an alert account and in defaults.accounts, so every "
                    "post would go to it: take it out of defaults.accounts (a post can still "
                    "name it)"
                )
        return self

    @model_validator(mode="after")
    def _blackouts(self) -> Config:
        for window in self.blackout:
            for name in window.accounts or []:
                if name not in self.accounts:
                    raise ValueError(
                        f"blackout {window.name!r} names account {name!r}, which is not in "
                        f"accounts (known: {', '.join(self.accounts) or 'none'})"
                    )
            if not window.daily:
                try:
                    start, end = (
                        parse_time(window.start, self.zone),
                        parse_time(window.end, self.zone),
                    )
                except TimeError as exc:
                    raise ValueError(f"blackout {window.name!r}: {exc}") from None
                if end <= start:
                    raise ValueError(f"blackout {window.name!r}: until is not after from")
        return self

    def _windows_at(self, when: dt.datetime, account: str) -> list[tuple[Blackout, dt.datetime]]:
        return [
            (w, span[1])
            for w in self.blackout
            if w.covers(account) and (span := w.occurrence(when, self.zone))
        ]

    def blackout_at(self, when: dt.datetime, account: str) -> tuple[Blackout, dt.datetime] | None:
        """The blackout ``when`` falls in for ``account`` (a refusing one first), and when
        publishing is allowed again (after windows back to back); None: allowed now."""
        hits = self._windows_at(when, account)
        if not hits:
            return None
        refusing = [w for w, _ in hits if w.action == "refuse"]
        window = refusing[0] if refusing else hits[0][0]
        end = max(e for _, e in hits)
        for _ in self.blackout:
            more = self._windows_at(end, account)
            if not more:
                break
            end = max(e for _, e in more)
        return window, end

    def release_time(self, when: dt.datetime, account: str) -> dt.datetime:
        """When a post due at ``when`` may go to ``account``: at once, or a hold window's end."""
        hit = self.blackout_at(when, account)
        return when if hit is None or hit[0].action == "refuse" else hit[1]

    @property
    def zone(self) -> ZoneInfo:
        return get_zone(self.timezone)


@dataclasses.dataclass(frozen=True)
class Settings:
    """A loaded configuration and where it came from."""

    config: Config
    path: Path | None  # None: the embedded default
    base_dir: Path  # relative paths in the config are relative to this
    env: Mapping[str, str]
    # A digest of the file's bytes as read (None: the embedded default, or not known), so a
    # daemon can tell whether the file changed before it began watching it.
    digest: str | None = None
    # The same of the ``.env`` beside it (None: there is none): a token rotated there is a
    # configuration change too, or a running daemon would go on with the revoked one.
    env_digest: str | None = None

    @property
    def dotenv_path(self) -> Path:
        return self.base_dir / DOTENV_NAME

    def changed_on_disk(self) -> bool:
        """Whether the configuration file or its ``.env`` now differs from what these
        settings were read from (a file gone or unreadable counts as changed: the reload
        says why)."""
        return self.path is not None and (
            file_digest(self.path) != self.digest
            or file_digest(self.dotenv_path) != self.env_digest
        )

    @property
    def posts_dir(self) -> Path:
        repo = self.config.posts_repo
        base = self.base_dir if repo is None else self.base_dir / repo.checkout
        return (base / self.config.posts_dir).resolve()

    @property
    def checkout(self) -> Path | None:
        """The daemon's own clone of ``posts_repo``, if there is one."""
        repo = self.config.posts_repo
        return None if repo is None else (self.base_dir / repo.checkout).resolve()

    @property
    def ledger_path(self) -> Path:
        return self.base_dir / self.config.ledger

    @property
    def ledger_is_url(self) -> bool:
        return self.config.ledger.startswith(("postgresql://", "postgres://"))

    @property
    def ledger_name(self) -> str:
        """The ledger for messages: its file, or its URL without the password."""
        if self.ledger_is_url:
            from .urls import without_password

            return without_password(self.config.ledger)
        return str(self.ledger_path)

    @property
    def state_dir(self) -> Path:
        """Where the sessions and caches kept beside the ledger live (a database ledger:
        .postscheduler beside the configuration)."""
        return self.base_dir / ".postscheduler" if self.ledger_is_url else self.ledger_path.parent

    def ledger_exists(self) -> bool:
        """Whether a ledger is there to read (a database is asked when opened)."""
        return self.ledger_is_url or self.ledger_path.is_file()

    def describe(self) -> str:
        return str(self.path) if self.path else "the embedded default configuration"

    def secret_refs(self) -> list[tuple[str, str, EnvRef]]:
        """(who, field, reference) for every secret the configuration refers to."""
        refs = [
            (name, field, ref)
            for name, account in self.config.accounts.items()
            for field, ref in account.secrets().items()
        ]
        smtp = self.config.alerts.smtp
        if smtp is not None and smtp.password is not None:
            refs.append(("alerts.smtp", "password", smtp.password))
        return refs

    def shared_ledger_warnings(self) -> list[Finding]:
        """A warning per account several daemons sharing the ledger cannot all publish to
        (none on a SQLite ledger: one daemon)."""
        if not self.ledger_is_url:
            return []
        return [
            warning(
                "account-not-shareable",
                problem,
                file=self.path,
                account=name,
                hint="give it credentials that do not rotate (for X: consumer_key, "
                "consumer_secret, access_token, access_token_secret), or list it in one "
                "daemon's scheduler.yaml only",
            )
            for name, account in self.config.accounts.items()
            if (problem := account.shared_ledger_problem()) is not None
        ]

    def missing_secrets(self) -> list[Finding]:
        """A warning per account whose secret is not in the environment."""
        found = []
        for name, field, ref in self.secret_refs():
            if ref.resolve(self.env) is None:
                found.append(
                    warning(
                        "secret-missing",
                        f"{field} refers to ${{{ref.name}}}, which is not set",
                        file=self.path,
                        account=name,
                        hint=f"export {ref.name}=… or add it to .env beside the config; "
                        + (
                            "alerts cannot be e-mailed without it"
                            if name == "alerts.smtp"
                            else "the daemon cannot publish to this account without it"
                        ),
                    )
                )
        return found


def embedded_default_text() -> str:
    return (resources.files(__package__) / "scheduler.yaml").read_text(encoding="utf-8")


def _read_env(base_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    dotenv = base_dir / DOTENV_NAME
    if dotenv.is_file():
        env.update(_dotenv_values(dotenv))
    env.update(environ)  # the real environment wins over .env
    return env


def _dotenv_values(path: Path) -> dict[str, str]:
    """The NAME=value lines of a .env file, by python-dotenv. A line it cannot read is an
    error naming the line: python-dotenv would skip it with a warning that names no file,
    and the secret on it would be missing without a word of why."""
    import io

    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    hint = "one NAME=value per line, as UTF-8 text; quote a value that has spaces or #"
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        found = error("dotenv", "invalid UTF-8", file=path, line=line, column=column, hint=hint)
        raise ConfigError(f"{path} cannot be read", [found]) from None
    bad = [b.original.line for b in parse_stream(io.StringIO(text)) if b.error]
    if bad:
        findings = [
            error(
                "dotenv",
                "cannot read this line as NAME=value",
                file=path,
                line=n,
                column=1,
                hint=hint,
            )
            for n in bad
        ]
        raise ConfigError(f"{path} cannot be read", findings)
    values = dotenv_values(stream=io.StringIO(text))
    return {k: v for k, v in values.items() if v is not None}


def _config_from_document(doc: Document) -> Config:
    if doc.data is None:
        return Config()
    if not isinstance(doc.data, dict):
        raise ConfigError(
            f"{doc.path}: the configuration must be a mapping of keys such as timezone "
            "and accounts",
        )
    try:
        return Config.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(
            f"{doc.path} is not a valid configuration",
            findings_from_validation_error(exc, doc, Config),
        ) from None


def load_settings(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Load ``path``, else ``./scheduler.yaml``, else the embedded default."""
    cwd = cwd or Path.cwd()
    environ = os.environ if environ is None else environ
    if path is None and (cwd / DEFAULT_CONFIG_NAME).is_file():
        path = cwd / DEFAULT_CONFIG_NAME
    try:
        if path is None:
            doc = parse_yaml(embedded_default_text(), Path(DEFAULT_CONFIG_NAME))
            base, digest, env_digest = cwd, None, None
        else:
            if not path.exists():
                raise ConfigError(
                    f"{path}: no such configuration file (run `postscheduler init` to create one)"
                )
            # Taken before the read: a write in between makes the digest older than the
            # settings, so the change is seen once more (a harmless reload), never missed.
            digest = file_digest(path)
            doc = read_yaml(path)
            base = path.absolute().parent  # not resolve(): a symlinked config keeps its folder
            env_digest = file_digest(base / DOTENV_NAME)
    except YamlSourceError as exc:
        raise ConfigError("the configuration cannot be read", [exc.finding]) from None
    config = _config_from_document(doc)
    return Settings(config, path, base, _read_env(base, environ), digest, env_digest)


def file_digest(path: Path) -> str | None:
    """sha256 of the file's bytes; None when it cannot be read."""
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def unknown_account_finding(name: str, settings: Settings, **where: Any) -> Finding:
    import difflib

    known = list(settings.config.accounts)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known accounts: {', '.join(known)}"
    return error(
        "unknown-account",
        f"account {name!r} is not configured in {settings.describe()}",
        hint=hint,
        **where,
    )
