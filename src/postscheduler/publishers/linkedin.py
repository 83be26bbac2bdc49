"""LinkedIn (Posts API): ``POST /rest/posts`` as the member or organization ``author``, with
``LinkedIn-Version`` and ``X-Restli-Protocol-Version: 2.0.0`` on every call; the new post's
URN comes back in ``x-restli-id``. The commentary is "little text" (``platforms/linkedin``).

- An image: ``POST /rest/images?action=initializeUpload``, ``PUT`` of the bytes to the
  ``uploadUrl`` it answers, then ``content.media`` with the image URN and ``altText``.
- A link: ``content.article`` with the page's title, description and image (uploaded as the
  thumbnail), read with the bounded link-card fetch: LinkedIn's API does not read the page.
- Thread parts: comments on the post (``/rest/socialActions/{urn}/comments``).

No idempotency: before the create call the delivery records that it is being sent, and a
lost answer is looked for among the author's newest posts. A later attempt of a delivery
that may have gone out, answered 422 ``DUPLICATE_POST``, is that post: the URN LinkedIn
names is recorded as published. A retired ``LinkedIn-Version`` (426) is a permanent error
that says which setting to change; 401 means re-authorize (tokens last 60 days and cannot be
refreshed without partner status: ``token_expires`` gives warnings two weeks ahead).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import urllib.parse
from typing import Any

import httpx

from ..errors import CardError, OutcomeUnknownError, PermanentError
from ..platforms.linkedin import LinkedInAccount, little_text
from .base import CLOCK_SKEW, RECENT, Published, Publisher, PublishJob, Resolution, expiry_warning
from .http import body_excerpt, error_body, send

log = logging.getLogger("postscheduler")

SENDING = "create sent"  # the progress recorded just before the create call
_DUPLICATE_URN = re.compile(r"urn:li:(?:share|ugcPost):\d+")


def error_text(response: httpx.Response) -> str:
    body = error_body(response)
    message = str(body.get("message") or body_excerpt(response))
    codes = (
        [
            str(e.get("code"))
            for e in (body.get("errorDetails") or {}).get("inputErrors") or []
            if isinstance(e, dict) and e.get("code")
        ]
        if isinstance(body.get("errorDetails"), dict)
        else []
    )
    if body.get("serviceErrorCode"):
        codes.append(str(body["serviceErrorCode"]))
    return message + (f" [{', '.join(codes)}]" if codes else "")


def duplicate_of(message: str) -> str | None:
    """The post a 422 DUPLICATE_POST names, if it names one."""
    if "DUPLICATE_POST" not in message and "duplicate" not in message.lower():
        return None
    found = _DUPLICATE_URN.search(message)
    return found[0] if found else None


class LinkedInPublisher(Publisher):
    platform = "linkedin"

    @property
    def _config(self) -> LinkedInAccount:
        assert isinstance(self.config, LinkedInAccount)
        return self.config

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.secret('token')}",
            "LinkedIn-Version": self._config.version,
            "X-Restli-Protocol-Version": "2.0.0",
        }

    def _explain(self, exc: PermanentError) -> PermanentError:
        message = exc.message
        if exc.status == 426:
            message += (
                f" (LinkedIn no longer serves API version {self._config.version}: set "
                f"`version:` under accounts.{self.account} in scheduler.yaml to a current "
                "YYYYMM, see https://learn.microsoft.com/linkedin/marketing/versioning)"
            )
        elif exc.status == 401:
            message += (
                " (the access token expired or was revoked: LinkedIn tokens last 60 days; "
                "authorize the app again and set the new token)"
            )
        elif exc.status == 403:
            message += (
                " (the token lacks w_member_social / w_organization_social, or the member "
                "has no posting role on the organization page)"
            )
        return PermanentError(message, exc.status)

    async def _call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        assert self.http is not None, "the LinkedIn publisher needs an HTTP client"
        http = self.http
        url = path if path.startswith("http") else f"{self._config.api_base}{path}"
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        try:
            return await send(
                f"linkedin {what}",
                lambda: http.request(method, url, headers=headers, **kwargs),
                error_text=error_text,
            )
        except PermanentError as exc:
            raise self._explain(exc) from None

    # --- images ----------------------------------------------------------------------------

    async def _upload(self, name: str, content: bytes) -> str:
        response = await self._call(
            "POST",
            "/rest/images",
            "image upload",
            params={"action": "initializeUpload"},
            json={"initializeUploadRequest": {"owner": self._config.author}},
        )
        value = error_body(response).get("value")
        if not isinstance(value, dict):
            value = {}
        upload_url, image = value.get("uploadUrl"), value.get("image")
        if not (
            isinstance(upload_url, str)
            and upload_url.startswith(("https://", "http://"))
            and isinstance(image, str)
        ):
            raise PermanentError(
                f"linkedin image upload: unexpected answer {body_excerpt(response)}"
            )
        assert self.http is not None
        http = self.http
        # The token goes only to LinkedIn's own hosts, whatever address the answer gives.
        host = httpx.URL(upload_url).host
        trusted = host == httpx.URL(self._config.api_base).host or host.endswith(".linkedin.com")
        headers = {"Authorization": self._headers()["Authorization"]} if trusted else {}
        await send(
            "linkedin image bytes",
            lambda: http.put(upload_url, content=content, headers=headers),
            error_text=error_text,
        )
        return image

    async def _image_urn(self, job: PublishJob) -> str:
        assert job.image is not None
        name, content = await self.image_bytes(job, self.image_limit())
        return await self._upload(name, content)

    async def _article(self, link: str) -> dict[str, Any]:
        """The card LinkedIn shows for a link, which the client must supply."""
        assert self.http is not None
        from .linkcard import fetch_card, fetch_image

        settings = self.settings.config.link_cards
        article: dict[str, Any] = {"source": link, "title": link}
        if not settings.enabled:
            return article
        try:
            card = await fetch_card(self.http, link, settings)
        except CardError as exc:
            log.warning("linkedin: %s has no card (%s); the link goes with its address", link, exc)
            return article
        article["title"] = card.title[:400]
        if card.description:
            article["description"] = card.description[:4086]
        if card.image_url:
            try:
                raw = await fetch_image(self.http, card.image_url, settings)
                article["thumbnail"] = await self._upload("thumbnail", raw)
            except CardError as exc:
                log.warning("linkedin: the card image of %s is left out (%s)", link, exc)
        return article

    # --- posts -----------------------------------------------------------------------------

    async def publish(self, job: PublishJob) -> Published:
        if job.key.part > 0:
            return await self._comment(job)
        body: dict[str, Any] = {
            "author": self._config.author,
            "commentary": little_text(job.text),
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        if job.image is not None:
            body["content"] = {
                "media": {"id": await self._image_urn(job), "altText": job.image.alt[:4086]}
            }
        elif job.link:
            body["content"] = {"article": await self._article(job.link)}
        may_be_out = job.progress == SENDING  # an earlier attempt's create may have gone out
        await job.record(SENDING)
        try:
            response = await self._call("POST", "/rest/posts", "create post", json=body)
        except PermanentError as exc:
            urn = duplicate_of(exc.message) if exc.status == 422 else None
            if may_be_out and urn:
                return Published(urn, self.post_url(urn))
            if urn:
                raise PermanentError(
                    f"{exc.message} (LinkedIn already has these words as {self.post_url(urn)}: "
                    "change the text, or `postscheduler resolve` it as sent)",
                    exc.status,
                ) from None
            raise
        urn = response.headers.get("x-restli-id") or str(error_body(response).get("id") or "")
        if not urn:
            raise OutcomeUnknownError("linkedin create post: no post URN in the answer")
        return Published(urn, self.post_url(urn))

    @staticmethod
    def post_url(urn: str) -> str:
        return f"https://www.linkedin.com/feed/update/{urn}/"

    async def _comment(self, job: PublishJob) -> Published:
        root = job.root.remote_id if job.root else None
        if not root:
            raise PermanentError("linkedin: the post this comment belongs to has no URN")
        response = await self._call(
            "POST",
            f"/rest/socialActions/{urllib.parse.quote(root, safe='')}/comments",
            "comment",
            json={
                "actor": self._config.author,
                "object": root,
                "message": {"text": little_text(job.text)},
            },
        )
        comment = response.headers.get("x-restli-id") or str(
            error_body(response).get("$URN") or error_body(response).get("id") or ""
        )
        return Published(comment or None, self.post_url(root))

    async def resolve_in_doubt(self, job: PublishJob) -> Published | Resolution:
        if job.key.part > 0:
            root = job.root.remote_id if job.root else None
            if not root:
                return Resolution.UNKNOWN
            response = await self._call(
                "GET",
                f"/rest/socialActions/{urllib.parse.quote(root, safe='')}/comments",
                "recent comments",
                params={"count": str(RECENT)},
            )
            for comment in _elements(response):
                text = (comment.get("message") or {}).get("text")
                created = (comment.get("created") or {}).get("time")
                if text == little_text(job.text) and _after(created, job.due_at):
                    return Published(
                        str(comment.get("$URN") or comment.get("id") or "") or None,
                        self.post_url(root),
                    )
            return Resolution.UNKNOWN
        try:
            response = await self._call(
                "GET",
                "/rest/posts",
                "recent posts",
                params={
                    "q": "author",
                    "author": self._config.author,
                    "count": str(RECENT),
                    "sortBy": "CREATED",
                },
                headers={"X-RestLi-Method": "FINDER"},
            )
        except PermanentError as exc:  # a member's posts need r_member_social to be read
            log.warning("linkedin: cannot read %s's posts: %s", self._config.author, exc.message)
            return Resolution.UNKNOWN
        for post in _elements(response):
            if post.get("commentary") == little_text(job.text) and _after(
                post.get("createdAt"), job.due_at
            ):
                urn = str(post.get("id") or "")
                if urn:
                    return Published(urn, self.post_url(urn))
        return Resolution.UNKNOWN

    async def check_credentials(self) -> str:
        author = self._config.author
        if self._config.is_organization:
            org = author.rsplit(":", 1)[1]
            answer = error_body(
                await self._call("GET", f"/rest/organizations/{org}", "organization")
            )
            return f"{answer.get('localizedName') or author} ({author})"
        answer = error_body(await self._call("GET", "/v2/userinfo", "userinfo"))
        if answer.get("sub") and f"urn:li:person:{answer['sub']}" != author:
            raise PermanentError(
                f"linkedin: the token is urn:li:person:{answer['sub']}'s, not {author}'s: "
                "set author to it"
            )
        return f"{answer.get('name') or author} ({author})"

    def credential_warnings(self, now: dt.datetime) -> list[str]:
        expires = self._config.token_expires
        if expires is None:
            return []
        at = dt.datetime.combine(expires, dt.time(), dt.UTC)
        return expiry_warning(self.account, at, now)


def _elements(response: httpx.Response) -> list[dict[str, Any]]:
    elements = error_body(response).get("elements")
    return [e for e in elements if isinstance(e, dict)] if isinstance(elements, list) else []


def _after(millis: Any, due: dt.datetime) -> bool:
    """Whether a LinkedIn time (epoch milliseconds) is after the delivery was due."""
    if isinstance(millis, bool) or not isinstance(millis, int | float):
        return True  # no time given: the words decide
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC) >= due - CLOCK_SKEW
