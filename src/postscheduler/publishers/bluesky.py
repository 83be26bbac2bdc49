"""Bluesky (AT Protocol) through the account's PDS: the XRPC endpoints, nothing else.

Exactly once: a post's record key is a TID chosen when the delivery is claimed (so it is in
the ledger before the first request) and the record is written with ``putRecord`` and
``swapRecord: null``. A resend of the same record under the same key is a no-op on the
server, and ``createdAt`` comes from the TID, so a resend is byte-for-byte the first request.
If the record differs on a resend (a link card fetched differently), the server answers
``InvalidSwap``: the key holds our first record, which is read back and reported.
(``createRecord`` with a taken key answers 500, which is why it is not used.)

Sessions: ``createSession`` with the app password once, then ``refreshSession``, whose
refresh token rotates; the session is written at once, mode 0600, beside the ledger, so a
restart, a ``run --once`` from cron or ``accounts check`` in another shell reuses or renews
it instead of logging in again (logins are rate-limited per account).

Rich text (``postscheduler.platforms.bluesky``): links, mentions and hashtags become facets with
UTF-8 byte offsets, found the way Bluesky's own client finds them; links come from render,
which shows them short as the app does. Mentions are resolved to DIDs; a handle that does
not resolve stays plain text. Images are fitted to 1,000,000 bytes and stripped of EXIF;
a link without an image gets a card built from the page (``linkcard``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ImageError, OutcomeUnknownError, PermanentError
from ..ledger import DeliveryKey
from ..platforms.base import LinkSpan
from ..platforms.bluesky import FACET, BlueskyAccount, detect_facets
from ..posts.images import prepare_upload
from ..redact import learn_secret
from .base import (
    Published,
    Publisher,
    PublishJob,
    Resolution,
    delivery_identity,
    write_private_file,
)
from .http import answer_field, answer_object, body_excerpt, epoch_reset, error_body, send

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

POST = "app.bsky.feed.post"
THUMB_MAX_BYTES = 1_000_000  # app.bsky.embed.external#external.thumb maxSize
MAX_SOURCE_IMAGE_BYTES = 50_000_000  # an image downloaded to be fitted (the PDS's own cap)
REFRESH_MARGIN = 300.0  # renew an access token this long before it expires

# --- record keys ----------------------------------------------------------------------------

_B32 = "234567abcdefghijklmnopqrstuvwxyz"  # base32-sortable, as TIDs are written


def make_tid(micros: int, clock_id: int) -> str:
    """A TID: 53 bits of microseconds since the epoch and a 10-bit clock id, 13 characters."""
    value = ((micros & ((1 << 53) - 1)) << 10) | (clock_id & 0x3FF)
    return "".join(_B32[(value >> (5 * i)) & 31] for i in range(12, -1, -1))


def tid_micros(tid: str) -> int:
    value = 0
    for ch in tid:
        value = (value << 5) | _B32.index(ch)
    return value >> 10


def is_tid(value: str) -> bool:
    return len(value) == 13 and value[0] in _B32[:16] and all(c in _B32 for c in value)


_tid_lock = threading.Lock()
_last_micros = 0


def _clock_id(key: DeliveryKey) -> int:
    return int(delivery_identity(key)[-3:], 16) & 0x3FF  # 10 bits of the delivery's hash


def created_at(tid: str) -> str:
    """The record's ``createdAt``: the TID's own time, so every resend carries the same."""
    when = dt.datetime.fromtimestamp(tid_micros(tid) / 1e6, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the publisher --------------------------------------------------------------------------


def _error_text(response: httpx.Response) -> str:
    body = error_body(response)
    if body.get("error"):
        return f"{body['error']}: {body.get('message') or ''}".rstrip(": ")
    return body_excerpt(response)


_retry_after = epoch_reset("ratelimit-reset")  # RateLimit-Reset: Unix seconds on the PDS


def _xrpc_error(response: httpx.Response) -> str | None:
    error = error_body(response).get("error")
    return str(error) if error else None


def _jwt_expiry(token: str) -> float:
    """When a session JWT expires (read, not verified: the server verifies it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return time.time() + 600  # unknown: assume short-lived, renew on ExpiredToken


class _Session:
    __slots__ = ("access", "did", "expires", "handle", "refresh")

    def __init__(self, answer: dict[str, Any]) -> None:
        self.did = answer_field(answer, "did", "bluesky session")
        self.handle = str(answer.get("handle") or "")
        self.access = answer_field(answer, "accessJwt", "bluesky session")
        self.refresh = answer_field(answer, "refreshJwt", "bluesky session")
        self.expires = _jwt_expiry(self.access)
        learn_secret(self.access)
        learn_secret(self.refresh)


_AUTH_ERRORS = {"ExpiredToken", "InvalidToken"}


class BlueskyPublisher(Publisher):
    platform = "bluesky"
    idempotent = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session_value: _Session | None = None
        self._session_lock = asyncio.Lock()
        self._cids: dict[str, str] = {}  # at-uri -> cid of the records published here
        self._dids: dict[str, str | None] = {}  # handle -> DID, None when it does not resolve
        # Blobs are content-addressed, so one upload serves every post showing the same bytes
        # (the article's card image on each quote post of a pack). Only blobs a published
        # record holds are reused: the server deletes unreferenced uploads after a while.
        self._blobs: dict[str, dict[str, Any]] = {}  # sha256 of the bytes -> blob
        self._uploaded: dict[str, str] = {}  # blob ref -> sha256 of the bytes

    @property
    def _config(self) -> BlueskyAccount:
        assert isinstance(self.config, BlueskyAccount)
        return self.config

    @property
    def _service(self) -> str:
        return str(self._config.service).rstrip("/")

    def identity(self, key: DeliveryKey, now: dt.datetime | None = None) -> str:
        """A TID for the record key: the claim time, and a clock id from the delivery."""
        global _last_micros
        when = now or dt.datetime.now(dt.UTC)
        with _tid_lock:  # strictly increasing, so no two claims share a key even at one instant
            _last_micros = max(int(when.timestamp() * 1_000_000), _last_micros + 1)
            return make_tid(_last_micros, _clock_id(key))

    def _rkey(self, job: PublishJob) -> str:
        if is_tid(job.identity):
            return job.identity
        # Claimed before this publisher existed (the identity is another kind): derive a TID
        # from what is fixed about the delivery, so every attempt still uses the same key.
        micros = int(job.due_at.timestamp() * 1_000_000)
        clock = int(
            hashlib.sha256((job.identity or delivery_identity(job.key)).encode()).hexdigest(), 16
        )
        return make_tid(micros, clock)

    # --- session ----------------------------------------------------------------------------

    @property
    def _session_file(self) -> Path:
        return self.settings.state_dir / f"bluesky-{self.account}.session"

    def _stored(self) -> _Session | None:
        """The session kept on disk: the newest, whichever process renewed it last."""
        try:
            stored = json.loads(self._session_file.read_text())
            # A session of another handle or server (the config changed) is not ours to use.
            if stored["service"] != self._service or stored["handle"] != self._config.handle:
                return None
            return _Session(stored)
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def _store(self, session: _Session) -> None:
        write_private_file(
            self._session_file,
            json.dumps(
                {
                    "service": self._service,
                    "handle": self._config.handle,
                    "did": session.did,
                    "accessJwt": session.access,
                    "refreshJwt": session.refresh,
                }
            ),
        )

    async def _post_session(self, nsid: str, label: str, **kwargs: Any) -> httpx.Response:
        assert self.http is not None, "the Bluesky publisher needs an HTTP client"
        http, url = self.http, f"{self._service}/xrpc/{nsid}"
        return await send(
            f"bluesky {label}",
            lambda: http.post(url, **kwargs),
            error_text=_error_text,
            retry_after=_retry_after,
        )

    async def _login(self) -> _Session:
        try:
            response = await self._post_session(
                "com.atproto.server.createSession",
                "login",
                json={"identifier": self._config.handle, "password": self.secret("app_password")},
            )
        except PermanentError as exc:
            raise PermanentError(
                f"{exc.message} (check handle {self._config.handle!r} and that app_password "
                "is an app password from Settings → Privacy and security → App passwords)"
            ) from None
        log.info("bluesky %s: logged in as %s", self.account, self._config.handle)
        return _Session(answer_object(response, "bluesky login"))

    async def _refresh(self, refresh: str) -> _Session | None:
        try:
            response = await self._post_session(
                "com.atproto.server.refreshSession",
                "session refresh",
                headers={"Authorization": f"Bearer {refresh}"},
            )
        except PermanentError as exc:
            log.info("bluesky %s: the stored session was refused (%s)", self.account, exc.message)
            return None  # expired or revoked: log in again
        return _Session(answer_object(response, "bluesky session refresh"))

    async def _session(self, *, renew: bool = False) -> _Session:
        async with self._session_lock:
            current = self._session_value
            if current and not renew and time.time() < current.expires - REFRESH_MARGIN:
                return current
            # Another process (`accounts check`, a `run --once` from cron) may have renewed
            # the session since: its refresh token is the one that still works.
            stored = self._stored()
            if stored and not renew and time.time() < stored.expires - REFRESH_MARGIN:
                self._session_value = stored
                return stored
            refresh = stored.refresh if stored else current.refresh if current else None
            session = await self._refresh(refresh) if refresh else None
            if session is None:
                session = await self._login()
            self._store(session)  # the old refresh token is spent once rotated
            self._session_value = session
            return session

    # --- XRPC -------------------------------------------------------------------------------

    async def _call(
        self, method: str, nsid: str, label: str, *, auth: bool = True, **kwargs: Any
    ) -> Any:
        assert self.http is not None, "the Bluesky publisher needs an HTTP client"
        http, url = self.http, f"{self._service}/xrpc/{nsid}"
        headers = dict(kwargs.pop("headers", None) or {})

        async def request() -> httpx.Response:
            if auth:
                headers["Authorization"] = f"Bearer {(await self._session()).access}"
            response = await http.request(method, url, headers=headers, **kwargs)
            if (
                auth
                and response.status_code in (400, 401)
                and _xrpc_error(response) in _AUTH_ERRORS
            ):
                # Refused before it was acted on: renew the session and ask once more.
                session = await self._session(renew=True)
                headers["Authorization"] = f"Bearer {session.access}"
                response = await http.request(method, url, headers=headers, **kwargs)
            return response

        response = await send(
            f"bluesky {label}", request, error_text=_error_text, retry_after=_retry_after
        )
        return answer_object(response, f"bluesky {label}") if response.content else {}

    async def _get_record(self, did: str, rkey: str) -> dict[str, Any] | None:
        try:
            return dict(
                await self._call(
                    "GET",
                    "com.atproto.repo.getRecord",
                    "read record",
                    auth=False,
                    params={"repo": did, "collection": POST, "rkey": rkey},
                )
            )
        except PermanentError as exc:
            if "RecordNotFound" in exc.message:
                return None
            raise

    async def _strong_ref(self, published: Published) -> dict[str, str]:
        uri = str(published.remote_id)
        cid = self._cids.get(uri)
        if cid is None:  # published before a restart: ask the server
            repo, _, rkey = uri.removeprefix("at://").split("/")
            record = await self._get_record(repo, rkey)
            if record is None:
                raise PermanentError(f"bluesky: the post this replies to ({uri}) is gone")
            cid = self._cids[uri] = answer_field(record, "cid", "bluesky read record")
        return {"uri": uri, "cid": cid}

    async def _did_of(self, handle: str) -> str | None:
        """The DID ``handle`` resolves to; None when the server says it names no account.
        Other failures (the server down, a 5xx) raise, with the platform's words."""
        if handle not in self._dids:
            try:
                answer = await self._call(
                    "GET",
                    "com.atproto.identity.resolveHandle",
                    "resolve handle",
                    auth=False,
                    params={"handle": handle},
                )
                self._dids[handle] = answer_field(answer, "did", "bluesky resolve handle")
            except PermanentError as exc:
                if exc.status != 400:  # 400: no account has this handle
                    raise
                self._dids[handle] = None
        return self._dids[handle]

    async def _resolve_handle(self, handle: str) -> str | None:
        try:
            did = await self._did_of(handle)
        except PermanentError as exc:
            did, reason = None, exc.message
        else:
            reason = "no account has this handle"
        if did is None:
            log.warning("bluesky %s: @%s is left as plain text: %s", self.account, handle, reason)
        return did

    async def unresolved_mentions(self, text: str) -> list[str]:
        unresolved = []
        for facet in detect_facets(text, links=False):
            handle = facet["features"][0].get("handle")
            if handle and await self._did_of(handle) is None:
                unresolved.append(handle)
        return unresolved

    async def _facets(self, text: str, links: tuple[LinkSpan, ...] | None) -> list[dict[str, Any]]:
        facets: list[dict[str, Any]] = [
            {
                "index": {"byteStart": start, "byteEnd": end},
                "features": [{"$type": f"{FACET}#link", "uri": uri}],
            }
            for start, end, uri in links or ()
        ]
        for facet in detect_facets(text, links=links is None):
            feature = facet["features"][0]
            if "handle" in feature:
                did = await self._resolve_handle(feature["handle"])
                if did is None:
                    continue
                feature = {"$type": feature["$type"], "did": did}
                facet = {**facet, "features": [feature]}
            facets.append(facet)
        facets.sort(key=lambda f: int(f["index"]["byteStart"]))
        return facets

    async def _upload(self, data: bytes, mime_type: str) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        if digest in self._blobs:
            return self._blobs[digest]
        answer = await self._call(
            "POST",
            "com.atproto.repo.uploadBlob",
            "image upload",
            content=data,
            headers={"Content-Type": mime_type},
        )
        blob = answer.get("blob")
        if not isinstance(blob, dict):
            raise OutcomeUnknownError("bluesky image upload: the answer has no 'blob' object")
        self._uploaded[str(blob.get("ref", {}).get("$link"))] = digest
        return blob

    async def _images_embed(self, job: PublishJob) -> dict[str, Any]:
        assert job.image is not None
        platform = self.spec
        assert platform.max_image_bytes is not None and platform.image_formats is not None
        _, raw = await self.image_bytes(job, MAX_SOURCE_IMAGE_BYTES)
        try:
            # Re-encoding a large photo takes a while: off the event loop, so other accounts'
            # deliveries are not held up (Pillow releases the GIL while it works).
            image = await asyncio.to_thread(
                prepare_upload, raw, platform.max_image_bytes, platform.image_formats
            )
        except ImageError as exc:
            raise PermanentError(f"bluesky image: {exc}") from None
        except OSError as exc:  # Pillow cannot read it (a downloaded URL that is no image)
            raise PermanentError(f"bluesky image: not an image Pillow can read ({exc})") from None
        if image.note:
            log.info("bluesky %s: %s image %s", self.account, job.key, image.note)
        blob = await self._upload(image.data, image.mime_type)
        return {
            "$type": "app.bsky.embed.images",
            "images": [
                {
                    "alt": job.image.alt,
                    "image": blob,
                    "aspectRatio": {"width": image.width, "height": image.height},
                }
            ],
        }

    async def _card_embed(self, job: PublishJob) -> dict[str, Any] | None:
        from ..errors import CardError
        from .linkcard import fetch_card, fetch_image

        settings = self.settings.config.link_cards
        assert job.link is not None and self.http is not None
        try:
            card = await fetch_card(self.http, job.link, settings)
        except Exception as exc:  # a card is optional: no problem of the page stops the post
            reason = str(exc) if isinstance(exc, CardError) else f"{type(exc).__name__}: {exc}"
            log.warning(
                "bluesky %s: %s goes out without a link card: %s", self.account, job.key, reason
            )
            return None
        external: dict[str, Any] = {
            "uri": card.url,
            "title": card.title,
            "description": card.description,
        }
        if card.image_url:
            try:
                raw = await fetch_image(self.http, card.image_url, settings)
                platform = self.spec
                assert platform.image_formats is not None
                thumb = await asyncio.to_thread(
                    prepare_upload, raw, THUMB_MAX_BYTES, platform.image_formats
                )
                external["thumb"] = await self._upload(thumb.data, thumb.mime_type)
            except (CardError, OSError, ValueError) as exc:  # ImageError is a ValueError
                log.warning(
                    "bluesky %s: link card of %s without its image: %s", self.account, job.key, exc
                )
        return {"$type": "app.bsky.embed.external", "external": external}

    async def build_record(self, job: PublishJob, rkey: str) -> dict[str, Any]:
        """The ``app.bsky.feed.post`` record for ``job`` (uploads its image or card image)."""
        record: dict[str, Any] = {"$type": POST, "text": job.text, "createdAt": created_at(rkey)}
        facets = await self._facets(job.text, job.links)
        if facets:
            record["facets"] = facets
        language = job.language or self._config.language
        if language:
            record["langs"] = [language]
        if job.reply_to is not None and job.root is not None:
            record["reply"] = {
                "root": await self._strong_ref(job.root),
                "parent": await self._strong_ref(job.reply_to),
            }
        if job.image is not None:
            record["embed"] = await self._images_embed(job)
        elif job.link and job.key.part == 0 and self.settings.config.link_cards.enabled:
            card = await self._card_embed(job)
            if card is not None:
                record["embed"] = card
        return record

    def _keep_blobs(self, record: dict[str, Any]) -> None:
        embed = record.get("embed") or {}
        blobs = [image["image"] for image in embed.get("images", [])]
        if "thumb" in embed.get("external", {}):
            blobs.append(embed["external"]["thumb"])
        for blob in blobs:
            digest = self._uploaded.get(str(blob.get("ref", {}).get("$link")))
            if digest is not None:
                self._blobs[digest] = blob

    def _published(self, session: _Session, uri: str, cid: str) -> Published:
        self._cids[uri] = cid
        rkey = uri.rsplit("/", 1)[-1]
        return Published(
            uri, f"https://bsky.app/profile/{session.handle or session.did}/post/{rkey}"
        )

    async def publish(self, job: PublishJob) -> Published:
        session = await self._session()
        rkey = self._rkey(job)
        record = await self.build_record(job, rkey)
        body = {
            "repo": session.did,
            "collection": POST,
            "rkey": rkey,
            "record": record,
            "swapRecord": None,  # create only: never overwrite a record under this key
        }
        try:
            answer = await self._call("POST", "com.atproto.repo.putRecord", "publish", json=body)
        except PermanentError as exc:
            if " InvalidSwap" not in exc.message:
                raise
            # The key holds a record already: ours, from an attempt whose answer was lost.
            existing = await self._get_record(session.did, rkey)
            if existing is None:
                raise
            self._check_ours(job, rkey, existing)
            published = self._published_as(session, existing, "read record")
            log.info(
                "bluesky %s: %s was already published as %s",
                self.account,
                job.key,
                published.remote_id,
            )
            return published
        self._keep_blobs(record)
        return self._published_as(session, answer, "publish")

    def _published_as(self, session: _Session, answer: Any, label: str) -> Published:
        uri = answer_field(answer, "uri", f"bluesky {label}")
        return self._published(session, uri, answer_field(answer, "cid", f"bluesky {label}"))

    def _check_ours(self, job: PublishJob, rkey: str, existing: dict[str, Any]) -> None:
        """A record under this delivery's key is this delivery's: the key holds the claim's
        own microsecond, so only this delivery made it. Its ``createdAt`` must say so; its
        text may differ when the post file was edited while the outcome was in doubt."""
        value = existing.get("value")
        if not isinstance(value, dict):
            value = {}
        if value.get("createdAt") != created_at(rkey):
            raise PermanentError(
                f"bluesky: record key {existing.get('uri')} holds a post this delivery did "
                "not make; nothing was published for it"
            )
        if value.get("text") != job.text:
            log.warning(
                "bluesky %s: %s went out before its post file was edited; %s has the earlier "
                "text (edit or delete it on Bluesky if needed)",
                self.account,
                job.key,
                existing.get("uri"),
            )

    async def resolve_in_doubt(self, job: PublishJob) -> Published | Resolution:
        session = await self._session()
        rkey = self._rkey(job)
        existing = await self._get_record(session.did, rkey)
        if existing is None:
            return Resolution.NOT_SENT
        self._check_ours(job, rkey, existing)
        return self._published_as(session, existing, "read record")

    async def check_credentials(self) -> str:
        answer = await self._call("GET", "com.atproto.server.getSession", "getSession")
        return f"@{answer.get('handle')} ({answer.get('did')})"
