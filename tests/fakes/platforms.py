"""Loopback fakes of the platforms' APIs (Telegram, Discord, Slack, X, Mastodon, Bluesky's
XRPC, and a receiver of the signed webhook).

Each answers as the platform's documentation says (shapes of success and error bodies,
rate-limit fields), records what it received and counts every request, and takes queued
faults, one per request: ``(status, headers, body)`` to answer with, ``("slow", seconds)`` to
answer late, ``"drop"`` to close without acting on the request, ``"lose"`` to act on it
and close without answering, or ``"echo"`` to answer 500 with the request (path, headers,
body) repeated back, as careless error pages do.
"""

from __future__ import annotations

import collections
import email.parser
import email.policy
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, dict[str, str], bytes]


def parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Form fields as text, files as (filename, bytes)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        fields[str(name)] = (filename, payload) if filename else payload.decode()
    return fields


class FakePlatform:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.faults: collections.deque[Any] = collections.deque()
        self.latency = 0.0  # seconds each answer takes, to widen the window for a crash
        self.requests = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("multipart/form-data"):
                    body: Any = parse_multipart(ctype, raw)
                elif ctype.startswith("application/json"):
                    body = json.loads(raw)
                else:
                    try:
                        body = raw.decode()
                    except UnicodeDecodeError:
                        body = raw  # an upload of raw bytes (Bluesky's uploadBlob)
                split = urlsplit(self.path)
                request = {
                    "method": self.command,
                    "path": split.path,
                    "query": parse_qs(split.query),
                    "headers": dict(self.headers),
                    "body": body,
                    "raw": raw,
                }
                with fake.lock:
                    fake.requests += 1
                    faultable = fake.faultable(request)
                    fault = fake.faults.popleft() if fake.faults and faultable else None
                if fault == "drop":
                    self._abort()
                    return
                if fault == "echo":  # a server error page that repeats the request back
                    echo = {
                        "error": f"Cannot {self.command} {self.path}",
                        "message": f"Cannot {self.command} {self.path}",
                        "description": f"Cannot {self.command} {self.path}",
                        "detail": f"Cannot {self.command} {self.path}",
                        "headers": dict(self.headers),
                        "body": raw.decode("utf-8", "replace"),
                    }
                    self._answer(
                        500, {"Content-Type": "application/json"}, json.dumps(echo).encode()
                    )
                    return
                if isinstance(fault, tuple) and fault[0] == "slow":
                    time.sleep(fault[1])
                elif isinstance(fault, tuple):
                    self._answer(*fault)
                    return
                status, headers, answer = fake.respond(request)
                if fake.latency:
                    time.sleep(fake.latency)
                if 200 <= status < 300 and fake.records(request):
                    with fake.lock:
                        fake.received.append(request)
                if fault == "lose":
                    self._abort()
                    return
                self._answer(status, headers, answer)

            def _abort(self) -> None:
                # RST instead of FIN: the client sees the connection fail, with no answer
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                self.connection.close()
                self.close_connection = True

            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def do_PUT(self) -> None:
                self._handle()

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def respond(self, request: dict[str, Any]) -> Answer:
        raise NotImplementedError

    def faultable(self, request: dict[str, Any]) -> bool:
        """Whether a queued fault may hit this request (not a login a test does not see)."""
        return True

    def records(self, request: dict[str, Any]) -> bool:
        """Whether a successful request is kept in ``received``."""
        return True

    def __enter__(self) -> FakePlatform:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


class FakeTelegram(FakePlatform):
    """https://core.telegram.org/bots/api: every answer is {ok, result} or {ok: false, ...}."""

    TOKEN = "123456:canary-telegram-TOKEN"

    def __init__(self) -> None:
        super().__init__()
        self.next_id = 100

    @staticmethod
    def error(code: int, description: str, **parameters: Any) -> Answer:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return _json(code, body)

    def respond(self, request: dict[str, Any]) -> Answer:
        prefix, _, method = request["path"].rpartition("/")
        if prefix != f"/bot{self.TOKEN}":
            return self.error(401, "Unauthorized")
        body = request["body"] if isinstance(request["body"], dict) else {}
        chat = {
            "id": -1001234567890,
            "title": "Campaign",
            "username": "campaign",
            "type": "channel",
        }
        if method == "getMe":
            return _json(
                200, {"ok": True, "result": {"id": 42, "is_bot": True, "username": "campaign_bot"}}
            )
        if method == "getChat":
            return _json(200, {"ok": True, "result": chat})
        if method in ("sendMessage", "sendPhoto"):
            if method == "sendMessage" and len(body.get("text", "")) > 4096:
                return self.error(400, "Bad Request: message is too long")
            if method == "sendPhoto" and len(body.get("caption", "")) > 1024:
                return self.error(400, "Bad Request: message caption is too long")
            self.next_id += 1
            return _json(
                200, {"ok": True, "result": {"message_id": self.next_id, "chat": chat, "date": 0}}
            )
        return self.error(404, "Not Found")


class FakeDiscord(FakePlatform):
    """https://discord.com/developers/docs/resources/webhook (Execute / Get Webhook with Token)."""

    HOOK = "/api/webhooks/1111/canary-discord-TOKEN"

    def __init__(self) -> None:
        super().__init__()
        self.next_id = 900

    def respond(self, request: dict[str, Any]) -> Answer:
        if request["path"] != self.HOOK:
            return _json(404, {"message": "Unknown Webhook", "code": 10015})
        if request["method"] == "GET":
            return _json(200, {"id": "1111", "name": "Campaign bot", "channel_id": "2222"})
        if request["query"].get("wait") != ["true"]:
            return 204, {}, b""  # accepted, not yet saved: the failure mode wait=true avoids
        body = request["body"]
        payload = json.loads(body["payload_json"]) if "payload_json" in body else body
        if len(payload.get("content", "")) > 2000:
            return _json(400, {"message": "Invalid Form Body", "code": 50035})
        self.next_id += 1
        return _json(
            200, {"id": str(self.next_id), "channel_id": "2222", "content": payload.get("content")}
        )


class FakeSlack(FakePlatform):
    """https://api.slack.com/messaging/webhooks: 200 "ok", or a status with a plain-text code."""

    HOOK = "/services/T000/B000/canary-slack-TOKEN"

    def respond(self, request: dict[str, Any]) -> Answer:
        if request["path"] != self.HOOK:
            return 404, {"Content-Type": "text/plain"}, b"no_service"
        if not isinstance(request["body"], dict) or not request["body"].get("text"):
            return 400, {"Content-Type": "text/plain"}, b"no_text"
        return 200, {"Content-Type": "text/plain"}, b"ok"


class FakeX(FakePlatform):
    """X API v2 (docs.x.com): checks each request's OAuth 1.0a signature like X does."""

    CREDS: ClassVar[dict[str, str]] = {
        "consumer_key": "canary-x-CONSUMER-key",
        "consumer_secret": "canary-x-CONSUMER-secret",
        "token": "canary-x-ACCESS-token",
        "token_secret": "canary-x-ACCESS-secret",
    }

    CLIENT_ID = "campaign-client"

    def __init__(self) -> None:
        super().__init__()
        self.next_id = 1000
        self.texts: set[str] = set()
        # OAuth 2.0: each refresh rotates the refresh token and issues a new access token
        self.refresh_token = "canary-x-REFRESH-0"
        self.access_token: str | None = None
        self.token_grants = 0

    def _grant(self, request: dict[str, Any]) -> Answer:
        form = {k: v[0] for k, v in parse_qs(request["body"]).items()}
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("client_id") != self.CLIENT_ID
            or form.get("refresh_token") != self.refresh_token
        ):
            return _json(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "Value passed for the token was invalid.",
                },
            )
        self.token_grants += 1
        self.refresh_token = f"canary-x-REFRESH-{self.token_grants}"
        self.access_token = f"canary-x-BEARER-{self.token_grants}"
        return _json(
            200,
            {
                "token_type": "bearer",
                "expires_in": 7200,
                "access_token": self.access_token,
                "scope": "tweet.read tweet.write users.read offline.access",
                "refresh_token": self.refresh_token,
            },
        )

    def _signed(self, request: dict[str, Any]) -> bool:
        from postscheduler.publishers.x import oauth1_authorization

        header = request["headers"].get("Authorization", "")
        if header.startswith("Bearer "):
            return self.access_token is not None and header == f"Bearer {self.access_token}"
        if not header.startswith("OAuth "):
            return False
        params = {
            k.strip(): v.strip().strip('"')
            for k, v in (p.split("=", 1) for p in header[6:].split(","))
        }
        query = "&".join(f"{k}={v[0]}" for k, v in request["query"].items())
        url = f"{self.base}{request['path']}" + (f"?{query}" if query else "")
        expected = oauth1_authorization(
            request["method"],
            url,
            nonce=params.get("oauth_nonce"),
            timestamp=params.get("oauth_timestamp"),
            **self.CREDS,
        )
        return header == expected

    def respond(self, request: dict[str, Any]) -> Answer:
        if request["path"].startswith("/media/"):  # an image on some public web server
            return 200, {"Content-Type": "image/jpeg"}, b"\xff\xd8\xff\xe0 a jpeg"
        if request["path"] == "/2/oauth2/token":
            return self._grant(request)
        if not self._signed(request):
            return _json(401, {"title": "Unauthorized", "detail": "Unauthorized", "status": 401})
        path, body = request["path"], request["body"]
        if path == "/2/users/me":
            return _json(200, {"data": {"id": "7", "name": "Campaign", "username": "campaign"}})
        if path == "/2/media/upload":
            return _json(200, {"data": {"id": "555", "media_key": "3_555"}})
        if path == "/2/media/metadata":
            return _json(200, {"data": {"associated_metadata": True}})
        if path == "/2/tweets":
            if body["text"] in self.texts:
                return _json(
                    403,
                    {
                        "detail": "You are not allowed to create a Tweet with duplicate content.",
                        "type": "about:blank",
                        "title": "Forbidden",
                        "status": 403,
                    },
                )
            self.texts.add(body["text"])
            self.next_id += 1
            return _json(201, {"data": {"id": str(self.next_id), "text": body["text"]}})
        return _json(404, {"title": "Not Found Error", "detail": f"no {path}", "status": 404})


class FakeWebhook(FakePlatform):
    """A receiver of the signed webhook, verifying signatures as README.md tells receivers to."""

    SECRET = "canary-webhook-SECRET-9"
    PATH = "/hooks/posts"

    def __init__(self, secret: str = SECRET) -> None:
        super().__init__()
        self.secret = secret
        self.bad_signatures = 0

    @property
    def url(self) -> str:
        return self.base + self.PATH

    def keys(self) -> list[str]:
        """The Idempotency-Key of every delivery stored, in arrival order."""
        with self.lock:
            return [r["headers"].get("Idempotency-Key", "") for r in self.received]

    def respond(self, request: dict[str, Any]) -> Answer:
        from postscheduler.publishers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

        raw, headers = request["raw"], request["headers"]
        if request["path"] != self.PATH:
            return _json(404, {"error": "no such hook"})
        timestamp, signature = headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
        if not verify(self.secret, timestamp, raw, signature):
            with self.lock:
                self.bad_signatures += 1
            return _json(401, {"error": "bad signature"})
        n = len(self.received) + 1
        return _json(200, {"id": f"w{n}", "url": f"https://site.test/{n}"})


class FakeMastodon(FakePlatform):
    """The Mastodon API as docs.joinmastodon.org describes it, where mastodon-mock is lenient:
    Idempotency-Key replays, media processed asynchronously (202, then 206, then 200)."""

    TOKEN = "canary-mastodon-TOKEN"

    def __init__(self) -> None:
        super().__init__()
        self.next_id = 110000000000000000
        self.by_key: dict[str, dict[str, Any]] = {}
        self.media_checks: dict[str, int] = {}
        self.instance_max_characters = 500
        self.instance_image_size_limit = 16_777_216

    def respond(self, request: dict[str, Any]) -> Answer:
        if request["path"] == "/public/moved.jpg":  # image hosts often redirect to a CDN
            return 302, {"Location": "/public/a.jpg"}, b""
        if request["path"].startswith("/public/"):  # an image on some public web server
            return 200, {"Content-Type": "image/jpeg"}, b"\xff\xd8\xff\xe0 a jpeg"
        if request["path"] == "/api/v2/instance":  # public: no token needed
            statuses = {
                "max_characters": self.instance_max_characters,
                "max_media_attachments": 4,
                "characters_reserved_per_url": 23,
            }
            media = {"image_size_limit": self.instance_image_size_limit}
            configuration = {"statuses": statuses, "media_attachments": media}
            return _json(200, {"domain": "mastodon.test", "configuration": configuration})
        if request["headers"].get("Authorization") != f"Bearer {self.TOKEN}":
            return _json(401, {"error": "The access token is invalid"})
        path, method = request["path"], request["method"]
        if path == "/api/v1/accounts/verify_credentials":
            return _json(200, {"id": "1", "username": "campaign", "acct": "campaign"})
        if path == "/api/v2/media" and method == "POST":
            self.next_id += 1
            media_id = str(self.next_id)
            self.media_checks[media_id] = 0
            return _json(
                202,
                {
                    "id": media_id,
                    "type": "image",
                    "url": None,
                    "description": request["body"].get("description"),
                },
            )
        if path.startswith("/api/v1/media/"):
            media_id = path.rsplit("/", 1)[1]
            self.media_checks[media_id] += 1
            if self.media_checks[media_id] < 2:
                return _json(206, {"id": media_id, "url": None})
            return _json(200, {"id": media_id, "url": f"{self.base}/media/{media_id}.jpg"})
        if path == "/api/v1/statuses" and method == "POST":
            form = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(request["body"]).items()}
            key = request["headers"].get("Idempotency-Key")
            if key and key in self.by_key:
                return _json(200, self.by_key[key])  # the first status, not a second one
            if len(form.get("status", "")) > 500:
                return _json(
                    422, {"error": "Validation failed: Text character limit of 500 exceeded"}
                )
            self.next_id += 1
            status = {
                "id": str(self.next_id),
                "url": f"{self.base}/@campaign/{self.next_id}",
                "in_reply_to_id": form.get("in_reply_to_id"),
                "media_ids": form.get("media_ids[]"),
                "content": form.get("status"),
            }
            if key:
                self.by_key[key] = status
            return _json(200, status)
        return _json(404, {"error": "Record not found"})


def _jwt(claims: dict[str, Any]) -> str:
    import base64

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(claims)}.sig"


def tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 40)).save(out, "JPEG")
    return out.getvalue()


class FakeBluesky(FakePlatform):
    """A PDS's XRPC as the lexicons describe it (com.atproto.server.*Session, repo.putRecord
    with swapRecord, getRecord, uploadBlob, identity.resolveHandle), errors as
    ``{"error", "message"}``. Logins are not recorded and take no faults: the contract tests
    see the publishing calls. The real PDS is tested in test_bluesky_pds.py."""

    HANDLE = "campaign.test"
    DID = "did:plc:campaign0000000000000000"
    PASSWORD = "canary-bluesky-APP-PASSWORD"
    SESSION_ENDPOINTS = (
        "/xrpc/com.atproto.server.createSession",
        "/xrpc/com.atproto.server.refreshSession",
    )

    def __init__(self) -> None:
        super().__init__()
        self.records_by_key: dict[str, dict[str, Any]] = {}
        self.tokens: set[str] = set()
        self.blobs = 0

    def faultable(self, request: dict[str, Any]) -> bool:
        return request["path"] not in self.SESSION_ENDPOINTS

    def records(self, request: dict[str, Any]) -> bool:
        return request["path"] not in self.SESSION_ENDPOINTS

    def _session(self) -> Answer:
        expiry = int(time.time()) + 7200
        access = _jwt({"sub": self.DID, "exp": expiry, "n": len(self.tokens)})
        refresh = _jwt({"sub": self.DID, "exp": expiry + 86400, "n": len(self.tokens), "r": 1})
        self.tokens.update({access, refresh})
        return _json(
            200,
            {"did": self.DID, "handle": self.HANDLE, "accessJwt": access, "refreshJwt": refresh},
        )

    @staticmethod
    def error(status: int, error: str, message: str) -> Answer:
        return _json(status, {"error": error, "message": message})

    def respond(self, request: dict[str, Any]) -> Answer:
        path, body = request["path"], request["body"]
        if path.startswith("/public/"):  # an image on some public web server
            return 200, {"Content-Type": "image/jpeg"}, tiny_jpeg()
        if path == "/xrpc/com.atproto.server.createSession":
            if body.get("identifier") != self.HANDLE or body.get("password") != self.PASSWORD:
                return self.error(401, "AuthenticationRequired", "Invalid identifier or password")
            return self._session()
        if path == "/xrpc/com.atproto.identity.resolveHandle":
            handle = request["query"].get("handle", [""])[0]
            if handle == self.HANDLE:
                return _json(200, {"did": self.DID})
            return self.error(400, "InvalidRequest", "Unable to resolve handle")
        if path == "/xrpc/com.atproto.repo.getRecord":
            rkey = request["query"].get("rkey", [""])[0]
            if rkey not in self.records_by_key:
                return self.error(400, "RecordNotFound", f"Could not locate record: {rkey}")
            return _json(200, self.records_by_key[rkey])
        token = request["headers"].get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return self.error(401, "InvalidToken", "Token could not be verified")
        if path == "/xrpc/com.atproto.server.refreshSession":
            return self._session()
        if path == "/xrpc/com.atproto.server.getSession":
            return _json(200, {"did": self.DID, "handle": self.HANDLE})
        if path == "/xrpc/com.atproto.repo.uploadBlob":
            self.blobs += 1
            size = len(request["raw"])
            blob = {
                "$type": "blob",
                "ref": {"$link": f"bafkreiblob{self.blobs:04d}"},
                "mimeType": request["headers"].get("Content-Type"),
                "size": size,
            }
            return _json(200, {"blob": blob})
        if path == "/xrpc/com.atproto.repo.putRecord":
            rkey = body["rkey"]
            if rkey in self.records_by_key and "swapRecord" in body:
                return self.error(400, "InvalidSwap", "Record was at another cid")
            uri = f"at://{self.DID}/{body['collection']}/{rkey}"
            cid = f"bafyreirecord{len(self.records_by_key):04d}"
            self.records_by_key[rkey] = {"uri": uri, "cid": cid, "value": body["record"]}
            return _json(200, {"uri": uri, "cid": cid})
        return self.error(501, "MethodNotImplemented", f"{path} is not implemented here")
