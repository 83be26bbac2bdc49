"""A loopback fake of LinkedIn's Posts, Images and Social Actions APIs, written from
Microsoft's documentation (``../shared/docs/platforms.md`` section 7); no public recordings of
LinkedIn posting exist.

Strict where LinkedIn is: ``LinkedIn-Version`` on every call (426 for a retired one),
``X-Restli-Protocol-Version: 2.0.0``, JSON bodies with the required fields, images that must
be uploaded before a post names them, the new URN in ``x-restli-id`` with no body, 422
``DUPLICATE_POST`` naming the existing post. Commentary is read as LinkedIn reads "little
text": an unescaped reserved character silently cuts the text there, so ``shown`` says what
readers would really see.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import urllib.parse
from typing import Any

from .platforms import Answer, FakePlatform, _json

RESERVED = set("\\|{}@[]()<>#*_~")
CURRENT_VERSIONS = {"202511", "202512", "202601", "202611"}
HASHTAG = re.compile(r"\{hashtag\|\\#\|((?:[^\\{}]|\\.)+)\}")


def read_little_text(text: str) -> str:
    """What LinkedIn shows for a commentary: escapes read, hashtag templates as #tags, and
    everything from an unescaped reserved character on lost (LinkedIn's silent truncation)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        m = HASHTAG.match(text, i)
        if m:
            out.append("#" + re.sub(r"\\(.)", r"\1", m[1]))
            i = m.end()
            continue
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in RESERVED:
            out.append(text[i + 1])
            i += 2
            continue
        if c in RESERVED:
            break
        out.append(c)
        i += 1
    return "".join(out)


def li_error(status: int, message: str, code: str | None = None, **extra: Any) -> Answer:
    body: dict[str, Any] = {"message": message, "status": status, **extra}
    if code:
        body["code"] = code
    return _json(status, body)


class FakeLinkedIn(FakePlatform):
    TOKEN = "canary-linkedin-TOKEN"
    ORG = "urn:li:organization:5515715"
    PERSON = "urn:li:person:8675309"

    def __init__(self) -> None:
        super().__init__()
        self.ids = itertools.count(7_100_000_000_000_000_001)
        self.images: dict[str, bytes | None] = {}  # urn -> bytes once uploaded
        self.uploads: dict[str, str] = {}  # upload path -> image urn
        self.posts: list[dict[str, Any]] = []
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.upload_authorization: list[str | None] = []
        self.upload_host: str | None = None  # answer upload URLs on another host name

    def _upload_base(self) -> str:
        if self.upload_host is None:
            return self.base
        return f"http://{self.upload_host}:{self.httpd.server_address[1]}"

    def shown(self) -> list[str]:
        """What readers see of each post, oldest first."""
        return [read_little_text(p["commentary"]) for p in self.posts]

    def respond(self, request: dict[str, Any]) -> Answer:
        path, method, headers = request["path"], request["method"], request["headers"]
        if path.startswith("/upload/") and method == "PUT":
            urn = self.uploads.get(path)
            if urn is None:
                return li_error(404, "upload URL not found")
            self.upload_authorization.append(headers.get("Authorization"))
            self.images[urn] = request["raw"]
            return 201, {}, b""
        if path.startswith("/public/"):  # a web page and its image, for the article card
            if path.endswith(".jpg"):
                from .platforms import tiny_jpeg

                return 200, {"Content-Type": "image/jpeg"}, tiny_jpeg()
            page = (
                '<html><head><meta property="og:title" content="Solidarity with Peru">'
                '<meta property="og:description" content="What happened in Lima.">'
                '<meta property="og:image" content="/public/card.jpg"></head><body></body></html>'
            )
            return 200, {"Content-Type": "text/html; charset=utf-8"}, page.encode()
        if headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return li_error(
                401, "Invalid access token", "REVOKED_ACCESS_TOKEN", serviceErrorCode=65601
            )
        if path == "/v2/userinfo":
            return _json(200, {"sub": self.PERSON.rsplit(":", 1)[1], "name": "Ana Quispe"})
        version = headers.get("LinkedIn-Version")
        if not version:
            return li_error(
                400,
                "A version must be present. Please specify a version by adding the "
                "LinkedIn-Version header.",
                "VERSION_MISSING",
            )
        if version not in CURRENT_VERSIONS:
            return li_error(
                426, f"Requested version {version} is not active", "NONEXISTENT_VERSION"
            )
        if headers.get("X-Restli-Protocol-Version") != "2.0.0":
            return li_error(
                400, "X-Restli-Protocol-Version 2.0.0 is required by this fake", "ILLEGAL_ARGUMENT"
            )
        body = request["body"] if isinstance(request["body"], dict) else {}
        if path == "/rest/images" and request["query"].get("action") == ["initializeUpload"]:
            owner = (body.get("initializeUploadRequest") or {}).get("owner")
            if owner not in (self.ORG, self.PERSON):
                return li_error(400, "owner must be the author", "ILLEGAL_ARGUMENT")
            n = next(self.ids)
            urn = f"urn:li:image:C4E10AQ{n}"
            upload = f"/upload/{n}"
            self.uploads[upload] = urn
            self.images[urn] = None
            return _json(
                200,
                {
                    "value": {
                        "uploadUrlExpiresAt": int(time.time() * 1000) + 3600_000,
                        "uploadUrl": self._upload_base() + upload,
                        "image": urn,
                    }
                },
            )
        if path.startswith("/rest/organizations/"):
            return _json(
                200,
                {"id": int(path.rsplit("/", 1)[1]), "localizedName": "Peru Solidarity Campaign"},
            )
        if path == "/rest/posts" and method == "POST":
            return self._create(body)
        if path == "/rest/posts" and method == "GET":
            if (
                request["query"].get("q") != ["author"]
                or headers.get("X-RestLi-Method") != "FINDER"
            ):
                return li_error(400, "finder q=author required", "ILLEGAL_ARGUMENT")
            author = request["query"].get("author", [""])[0]
            posts = [p for p in reversed(self.posts) if p["author"] == author]
            return _json(200, {"elements": posts, "paging": {"start": 0, "count": 10, "links": []}})
        if path.startswith("/rest/socialActions/") and path.endswith("/comments"):
            target = urllib.parse.unquote(
                path.removeprefix("/rest/socialActions/").removesuffix("/comments")
            )
            if target not in self.comments:
                return li_error(404, f"{target} not found", "NOT_FOUND")
            if method == "GET":
                return _json(200, {"elements": list(reversed(self.comments[target]))})
            if body.get("object") != target or not (body.get("message") or {}).get("text"):
                return li_error(422, "object and message.text are required", "FIELD_VALUE_MISSING")
            n = next(self.ids)
            comment = {
                "$URN": f"urn:li:comment:({target},{n})",
                "id": str(n),
                "actor": body.get("actor"),
                "message": {"text": body["message"]["text"]},
                "created": {"time": int(time.time() * 1000)},
            }
            self.comments[target].append(comment)
            return (
                201,
                {"Content-Type": "application/json", "x-restli-id": comment["$URN"]},
                json.dumps(comment).encode(),
            )
        return li_error(404, f"no {method} {path}", "NOT_FOUND")

    def _create(self, body: dict[str, Any]) -> Answer:
        for field in ("author", "commentary", "visibility", "distribution", "lifecycleState"):
            if field not in body:
                return li_error(
                    422, f"/{field} :: field is required but not found", "FIELD_VALUE_MISSING"
                )
        if body["author"] not in (self.ORG, self.PERSON):
            return li_error(403, "Not enough permissions to post as this author", "ACCESS_DENIED")
        if body["distribution"].get("feedDistribution") != "MAIN_FEED":
            return li_error(
                422, "/distribution/feedDistribution is required", "FIELD_VALUE_MISSING"
            )
        content = body.get("content") or {}
        if "media" in content:
            urn = content["media"].get("id")
            if self.images.get(urn) is None:
                return li_error(422, f"{urn} has not been uploaded", "INVALID_CONTENT")
        if "article" in content:
            article = content["article"]
            if not article.get("source") or not article.get("title"):
                return li_error(
                    422, "/content/article/title :: field is required", "FIELD_VALUE_MISSING"
                )
            if article.get("thumbnail") and self.images.get(article["thumbnail"]) is None:
                return li_error(422, "the thumbnail has not been uploaded", "INVALID_CONTENT")
        for post in self.posts:
            if post["commentary"] == body["commentary"] and post["author"] == body["author"]:
                return li_error(
                    422,
                    f"Content is a duplicate of {post['id']}",
                    errorDetails={
                        "inputErrors": [
                            {
                                "description": "Duplicate post is detected",
                                "input": {},
                                "code": "DUPLICATE_POST",
                            }
                        ]
                    },
                )
        urn = f"urn:li:share:{next(self.ids)}"
        self.posts.append({**body, "id": urn, "createdAt": int(time.time() * 1000)})
        self.comments[urn] = []
        return 201, {"x-restli-id": urn}, b""
