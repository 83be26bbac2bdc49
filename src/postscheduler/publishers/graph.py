"""What Facebook, Instagram and Threads share: Meta's Graph API.

- Its error envelope, ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``,
  and what its codes mean: throttling (4, 17, 32, 613, 80001 and the other Business Use Case
  codes) arrives as a 400 or 403 and is transient, with the wait Meta gives in
  ``X-Business-Use-Case-Usage`` (``estimated_time_to_regain_access``, minutes); 1 and 2 are
  temporary; 368 is a temporary block (wait long); 190 is a token expired or revoked
  (permanent, "re-authorize"); everything else is permanent, in Meta's words.
- Tokens sent in the ``Authorization`` header, never in a URL (URLs reach logs and errors).
- Long-lived tokens (Instagram, Threads: 60 days) refreshed once they are a day old, the
  newest kept beside the ledger (mode 0600) with when it expires.
- Containers (Instagram, Threads): created, then published. The container id is written to
  the ledger before the publishing call, and its status answers what a crash or a lost
  answer left unknown: PUBLISHED (it went out; find its media), FINISHED or IN_PROGRESS (not
  published: publish it), EXPIRED or ERROR (make a new one). A container is published at
  most once, so asking again can never post twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import httpx

from ..errors import OutcomeUnknownError, PermanentError, TransientError
from ..posts.images import public_image_url
from ..redact import learn_secret
from .base import (
    CLOCK_SKEW,
    RECENT,
    Published,
    Publisher,
    PublishJob,
    Resolution,
    expiry_warning,
    write_private_file,
)
from .http import body_excerpt, error_body, number, retry_after_seconds, send

log = logging.getLogger("postscheduler")

THROTTLED = frozenset({4, 17, 32, 613, *range(80001, 80015)})
TEMPORARY = frozenset({1, 2, 368})
TOKEN_INVALID = 190
BLOCKED_WAIT = 3600.0  # seconds after a 368 "temporarily blocked": Meta gives no figure
# Instagram's subcodes that a later attempt can get past: the publishing limit (wait for the
# window), and Meta failing to download the image (the host was slow or not yet updated).
TRANSIENT_SUBCODES = frozenset({2207042, 2207003, 2207052})
CONTAINER_GONE_SUBCODES = frozenset({2207008, 2207020})  # expired: make a new one
REFRESH_AGE = 86_400.0  # a long-lived token can be refreshed once it is a day old
QUOTA_WAIT = 3600.0  # seconds: the window is rolling 24 h and Meta does not say when it frees
CONTAINER_POLL = 30  # checks of a container still IN_PROGRESS, 1 s apart, then try later
CONTAINER_POLL_EVERY = 1.0  # seconds


@dataclasses.dataclass(frozen=True, slots=True)
class GraphError:
    message: str
    code: int | None
    subcode: int | None


def graph_error(response: httpx.Response) -> GraphError:
    error = error_body(response).get("error")
    if not isinstance(error, dict):
        return GraphError(body_excerpt(response), None, None)
    code, subcode = number(error.get("code")), number(error.get("error_subcode"))
    return GraphError(
        str(error.get("error_user_msg") or error.get("message") or body_excerpt(response)),
        int(code) if code is not None else None,
        int(subcode) if subcode is not None else None,
    )


def error_text(response: httpx.Response) -> str:
    error = graph_error(response)
    if error.code is None:
        return error.message
    codes = f"code {error.code}" + (f", subcode {error.subcode}" if error.subcode else "")
    hint = ""
    if error.code == TOKEN_INVALID:
        hint = " (the token expired or was revoked: re-authorize the app and set a new token)"
    elif error.code == 10 or 200 <= error.code < 300:
        hint = " (a permission is missing: see the README's Getting credentials)"
    elif error.code == 506:
        hint = " (Facebook refuses the same words posted twice in a row: change the text)"
    return f"{error.message} [{codes}]{hint}"


def is_transient(response: httpx.Response) -> bool:
    error = graph_error(response)
    return error.code in THROTTLED or error.code in TEMPORARY or error.subcode in TRANSIENT_SUBCODES


def usage_wait(response: httpx.Response) -> float | None:
    """Seconds until Meta lets the account call again: the longest
    ``estimated_time_to_regain_access`` (minutes) in ``X-Business-Use-Case-Usage``, else
    ``Retry-After``, else an hour after a temporary block."""
    waits: list[float] = []
    header = response.headers.get("x-business-use-case-usage")
    if header:
        try:
            usage = json.loads(header)
        except ValueError:
            usage = {}
        for entries in usage.values() if isinstance(usage, dict) else []:
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, dict):
                    continue
                minutes = number(entry.get("estimated_time_to_regain_access"))
                if minutes is not None and minutes > 0:
                    waits.append(minutes * 60.0)
    if waits:
        return max(waits)
    hinted = retry_after_seconds(response)
    if hinted is not None:
        return hinted
    return BLOCKED_WAIT if graph_error(response).code == 368 else None


def graph_time(value: Any) -> dt.datetime | None:
    """A Graph API time ("2021-07-04T19:50:58+0000") or None."""
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def same_words(a: str | None, b: str) -> bool:
    return " ".join((a or "").split()) == " ".join(b.split())


class GraphPublisher(Publisher):
    """A publisher on Meta's Graph API; the account model has ``token`` and ``api_base``."""

    refresh_grant: ClassVar[str] = ""  # the grant_type of refresh_access_token

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._token_lock = asyncio.Lock()
        self._kept: dict[str, Any] | None = None

    @property
    def api_base(self) -> str:
        return str(getattr(self.config, "api_base"))  # noqa: B009 - each model declares it

    # --- calls ------------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, what: str, *, token: str | None = None, **kwargs: Any
    ) -> Any:
        """One Graph API call; its JSON answer (a dict; {} for an empty body)."""
        assert self.http is not None, f"the {self.platform} publisher needs an HTTP client"
        http = self.http
        url = path if path.startswith("http") else f"{self.api_base}{path}"
        bearer = token or await self.token()
        headers = {"Authorization": f"Bearer {bearer}"}
        response = await send(
            f"{self.platform} {what}",
            lambda: http.request(method, url, headers=headers, **kwargs),
            error_text=error_text,
            retry_after=usage_wait,
            transient=is_transient,
        )
        answer = error_body(response)
        if response.content and not answer:
            raise PermanentError(
                f"{self.platform} {what}: unexpected answer {body_excerpt(response, 200)}"
            )
        return answer

    # --- long-lived tokens, refreshed and kept --------------------------------------------

    @property
    def token_file(self) -> Path:
        return self.settings.state_dir / f"{self.platform}-{self.account}.session"

    def _read_kept(self, configured: str) -> dict[str, Any] | None:
        """The kept token, if it was refreshed from the token configured now (a new token in
        the environment, after a person re-authorized, replaces what was kept)."""
        try:
            kept = json.loads(self.token_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(kept, dict) or kept.get("from") != _fingerprint(configured):
            return None
        if not isinstance(kept.get("token"), str):
            return None
        learn_secret(kept["token"])
        return kept

    async def token(self) -> str:
        configured = self.secret("token")
        if not self.refreshes():
            return configured
        async with self._token_lock:
            if self._kept is None or self._kept.get("from") != _fingerprint(configured):
                self._kept = self._read_kept(configured) or {
                    "token": configured,
                    "from": _fingerprint(configured),
                    "since": time.time(),  # first seen: its real age is not known
                    "expires": None,
                }
            if time.time() - float(self._kept.get("since") or 0) >= REFRESH_AGE:
                await self._refresh(configured)
            return str(self._kept["token"])

    async def _refresh(self, configured: str) -> None:
        assert self._kept is not None and self.http is not None
        current = str(self._kept["token"])
        origin = httpx.URL(self.api_base).copy_with(path="/", query=None)
        url = str(origin.join("/refresh_access_token"))
        try:
            answer = await self.call(
                "GET",
                url,
                "token refresh",
                token=current,
                params={"grant_type": self.refresh_grant},
            )
            fresh = str(answer["access_token"])
            lifetime = number(answer.get("expires_in"))
        except (TransientError, OutcomeUnknownError, KeyError) as exc:
            # The token in hand still works for weeks: try again on the next call.
            log.warning("%s: could not refresh the token yet: %s", self.account, exc)
            return
        learn_secret(fresh)
        now = time.time()
        self._kept = {
            "token": fresh,
            "from": _fingerprint(configured),
            "since": now,
            "expires": now + lifetime if lifetime else None,
        }
        write_private_file(self.token_file, json.dumps(self._kept))

    def refreshes(self) -> bool:
        """Whether this account's token is a long-lived one the publisher refreshes."""
        return False

    def credential_warnings(self, now: dt.datetime) -> list[str]:
        if not self.refreshes():
            return []
        try:
            configured = self.secret("token")
        except PermanentError:
            return []
        kept = self._kept or self._read_kept(configured)
        expires = number(kept.get("expires")) if kept else None
        if expires is None:
            return []
        return expiry_warning(self.account, dt.datetime.fromtimestamp(expires, dt.UTC), now)

    # --- containers (Instagram, Threads) ----------------------------------------------------

    container_path: ClassVar[str] = ""  # POST {user}{container_path} makes one
    publish_path: ClassVar[str] = ""  # POST {user}{publish_path}?creation_id= publishes it
    status_field: ClassVar[str] = ""  # status_code (Instagram) or status (Threads)

    @property
    def user(self) -> str:
        return str(getattr(self.config, "user_id"))  # noqa: B009 - each model declares it

    async def container_status(self, container: str) -> tuple[str, str]:
        answer = await self.call(
            "GET", f"/{container}", "container status", params={"fields": self.status_field}
        )
        status = str(answer.get(self.status_field) or "").upper()
        detail = str(answer.get("error_message") or answer.get("status") or status)
        return status, detail

    async def publish_container(
        self,
        job: PublishJob,
        create: dict[str, str],
        find: Finder,
        check_quota: Callable[[], Any],
    ) -> Published:
        """Create (or reuse) the job's container, record it, wait for it, publish it."""
        container = _container(job.progress)
        if container is not None:
            status, _ = await self.container_status(container)
            if status == "PUBLISHED":  # an earlier attempt's answer was lost
                return await find(job)
            if status in ("EXPIRED", "ERROR"):
                container = None
        await check_quota()
        if container is None:
            answer = await self.call(
                "POST", f"/{self.user}{self.container_path}", "create", data=create
            )
            container = str(answer.get("id") or "")
            if not container:
                raise PermanentError(f"{self.platform} create: no container id in {answer}")
            await job.record(json.dumps({"container": container}))
        await self._wait_until_finished(container)
        try:
            answer = await self.call(
                "POST",
                f"/{self.user}{self.publish_path}",
                "publish",
                data={"creation_id": container},
            )
        except PermanentError:
            # Published by an attempt whose answer was lost, the container refuses a second
            # publish: it is out, not failed.
            status, _ = await self.container_status(container)
            if status == "PUBLISHED":
                return await find(job)
            raise
        media_id = str(answer.get("id") or "")
        if not media_id:
            raise OutcomeUnknownError(f"{self.platform} publish: no media id in the answer")
        return Published(media_id, await self.permalink(media_id))

    async def _wait_until_finished(self, container: str) -> None:
        for _ in range(CONTAINER_POLL):
            status, detail = await self.container_status(container)
            if status in ("FINISHED", ""):
                return
            if status == "ERROR":
                raise PermanentError(
                    f"{self.platform} container: {detail} (is the image at a public address, "
                    "JPEG, within the size and aspect limits?)"
                )
            if status == "EXPIRED":
                raise TransientError(f"{self.platform} container expired; a new one is made")
            if status == "PUBLISHED":
                raise PermanentError(f"{self.platform} container {container} is already published")
            await asyncio.sleep(CONTAINER_POLL_EVERY)
        raise TransientError(f"{self.platform} container still {status}; will try again")

    async def resolve_container(self, job: PublishJob, find: Finder) -> Published | Resolution:
        container = _container(job.progress)
        if container is None:
            # The container id is recorded before anything is published: none recorded,
            # nothing was published.
            return Resolution.NOT_SENT
        status, _ = await self.container_status(container)
        if status == "PUBLISHED":
            return await find(job)
        return Resolution.NOT_SENT  # FINISHED: publish it; EXPIRED, ERROR: make a new one

    async def check_quota(
        self, edge: str, fields: str, prefix: str = "", what: str = "posts"
    ) -> None:
        """Read the account's publishing quota (``{prefix}quota_usage`` of
        ``{prefix}config.quota_total`` in a rolling 24 hours); a full one is a retry later."""
        answer = await self.call(
            "GET", f"/{self.user}/{edge}", "publishing quota", params={"fields": fields}
        )
        data = answer.get("data")
        entry = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
        usage, config = entry.get(f"{prefix}quota_usage"), entry.get(f"{prefix}config") or {}
        total = config.get("quota_total") if isinstance(config, dict) else None
        if isinstance(usage, int) and isinstance(total, int) and usage >= total:
            raise TransientError(
                f"{self.platform}: the publishing quota is used up ({usage} of {total} {what} "
                "in 24 hours); will try again when the window moves on",
                retry_after=QUOTA_WAIT,
            )

    def image_address(self, job: PublishJob) -> str:
        """Where the platform fetches the job's image from (``media_url``)."""
        assert job.image is not None
        url = public_image_url(job.image, self.settings.config.media_url)
        if url is None:
            raise PermanentError(
                f"{self.platform}: the image has no public address (set media_url in "
                "scheduler.yaml)"
            )
        return url

    async def recent(self, path: str, fields: str) -> list[dict[str, Any]]:
        """The newest entries of an edge (an account's media, a post's comments)."""
        answer = await self.call(
            "GET", path, "recent", params={"fields": fields, "limit": str(RECENT)}
        )
        data = answer.get("data")
        return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []

    async def find_recent(
        self, job: PublishJob, path: str, fields: str, words: str, at: str = "timestamp"
    ) -> dict[str, Any] | None:
        """The newest entry of ``path`` whose ``words`` field is the job's text, made after
        the job was due: the post (or comment) an answer was lost for."""
        for entry in await self.recent(path, fields):
            created = graph_time(entry.get(at))
            if (
                entry.get("id")
                and same_words(entry.get(words), job.text)
                and (created is None or created >= job.due_at - CLOCK_SKEW)
            ):
                return entry
        return None

    async def permalink(self, media_id: str) -> str | None:
        """The published post's address; None if Meta will not say just now (it is out: a
        failure here must not turn a success into a retry)."""
        try:
            answer = await self.call(
                "GET", f"/{media_id}", "permalink", params={"fields": "permalink"}
            )
        except (PermanentError, TransientError, OutcomeUnknownError):
            return None
        link = answer.get("permalink")
        return str(link) if link else None


Finder = Callable[[PublishJob], Awaitable[Published]]


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]  # short: never masked as a secret


def _container(progress: str | None) -> str | None:
    if not progress:
        return None
    try:
        value = json.loads(progress).get("container")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None
