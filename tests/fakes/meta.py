"""Loopback fakes of Meta's Graph API for Facebook Pages, Instagram and Threads, written from
the documentation (``../shared/docs/platforms.md`` sections 4–6) and answering in the shapes
of the recorded real responses in ``../shared/interop/meta/`` (python-facebook's test data).

Strict where Meta is: form-encoded bodies, the fields each call requires, a container that
must be FINISHED to publish and can be published once, the publishing quota, the error
envelope ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`` (400 with
code 190 for a bad token). Faults as in ``platforms.py``; ``expire(container)`` and
``quota_total`` for the container and quota cases.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any, ClassVar
from urllib.parse import parse_qs

from .platforms import Answer, FakePlatform, _json


def graph_error(
    status: int, message: str, code: int, subcode: int | None = None, kind: str = "OAuthException"
) -> Answer:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "AQt_hJ68vFybS4TnupatNtX"
    return _json(status, {"error": error})


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class FakeGraph(FakePlatform):
    TOKEN: ClassVar[str]
    GRAPH_PATHS: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self.tokens = {self.TOKEN}
        self.ids = itertools.count(17_900_000_000_000_001)
        self.refreshes = 0

    def new_id(self) -> str:
        return str(next(self.ids))

    @staticmethod
    def form(request: dict[str, Any]) -> dict[str, Any]:
        body = request["body"]
        if isinstance(body, dict):  # multipart (a photo's bytes)
            return dict(body)
        if request["headers"].get("Content-Type", "").startswith("application/json"):
            return {"__json__": True}
        return {k: v[0] for k, v in parse_qs(body).items()} | {
            k: v[0] for k, v in request["query"].items()
        }

    def respond(self, request: dict[str, Any]) -> Answer:
        token = request["headers"].get("Authorization", "").removeprefix("Bearer ")
        if "access_token" in request["query"]:
            return graph_error(400, "tokens go in the Authorization header in this fake", 100)
        if token not in self.tokens:
            return graph_error(400, "Error validating access token: Session has expired.", 190, 463)
        if request["path"] == "/refresh_access_token":
            return self._refresh(request, token)
        path = request["path"].removeprefix("/v25.0").removeprefix("/v1.0")
        form = self.form(request)
        if form.get("__json__"):
            return graph_error(400, "(#100) Graph API calls take form parameters", 100)
        answer = self.route(request["method"], path.strip("/").split("/"), form)
        if answer is None:
            return graph_error(
                400,
                f"Unsupported {request['method']} request. Object does not exist",
                100,
                33,
                "GraphMethodException",
            )
        return answer

    def route(self, method: str, parts: list[str], form: dict[str, Any]) -> Answer | None:
        raise NotImplementedError

    GRANT: ClassVar[str] = ""

    def _refresh(self, request: dict[str, Any], token: str) -> Answer:
        if request["query"].get("grant_type") != [self.GRANT]:
            return graph_error(400, "Unsupported grant_type", 100)
        self.refreshes += 1
        fresh = f"{self.TOKEN}-REFRESHED-{self.refreshes}"
        self.tokens.add(fresh)
        return _json(200, {"access_token": fresh, "token_type": "bearer", "expires_in": 5183944})


def required(form: dict[str, Any], *names: str) -> Answer | None:
    for name in names:
        if not form.get(name):
            return graph_error(400, f"(#100) The parameter {name} is required", 100)
    return None


class FakeFacebook(FakeGraph):
    """A Page's feed, photos and comments."""

    TOKEN = "canary-facebook-PAGE-token"
    PAGE = "1029384756"

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[dict[str, Any]] = []  # newest last
        self.comments: dict[str, list[dict[str, Any]]] = {}

    def _post(self, message: str, **extra: Any) -> dict[str, Any]:
        post_id = f"{self.PAGE}_{self.new_id()}"
        post = {
            "id": post_id,
            "message": message,
            "created_time": _now(),
            "permalink_url": f"https://www.facebook.com/{self.PAGE}/posts/{post_id.split('_')[1]}",
            **extra,
        }
        self.posts.append(post)
        self.comments[post_id] = []
        return post

    def route(self, method: str, parts: list[str], form: dict[str, Any]) -> Answer | None:
        if parts == [self.PAGE] and method == "GET":
            return _json(200, {"id": self.PAGE, "name": "Peru Solidarity Campaign"})
        if parts == [self.PAGE, "feed"] and method == "POST":
            if not form.get("message") and not form.get("link"):
                return graph_error(400, "(#100) Missing message or attachment", 100)
            if self.posts and self.posts[-1]["message"] == form.get("message"):
                return graph_error(400, "(#506) Duplicate status message", 506)
            return _json(
                200, {"id": self._post(form.get("message", ""), link=form.get("link"))["id"]}
            )
        if parts == [self.PAGE, "photos"] and method == "POST":
            source = form.get("source")
            if not (isinstance(source, tuple) and source[1]) and not form.get("url"):
                return graph_error(400, "(#100) Requires a photo: source or url", 100)
            photo_id = self.new_id()
            post = self._post(
                form.get("message", ""), photo=photo_id, alt_text=form.get("alt_text_custom")
            )
            return _json(200, {"id": photo_id, "post_id": post["id"]})
        if parts == [self.PAGE, "published_posts"] and method == "GET":
            newest = list(reversed(self.posts))[:25]
            return _json(
                200, {"data": [_fields(p, "id,message,created_time,permalink_url") for p in newest]}
            )
        if len(parts) == 2 and parts[1] == "comments" and parts[0] in self.comments:
            post_id = parts[0]
            if method == "GET":
                newest = list(reversed(self.comments[post_id]))
                return _json(200, {"data": newest})
            if missing := required(form, "message"):
                return missing
            comment_id = f"{post_id.split('_')[1]}_{self.new_id()}"
            comment = {
                "id": comment_id,
                "message": form["message"],
                "permalink_url": f"https://www.facebook.com/{post_id}?comment_id={comment_id}",
                "created_time": _now(),
            }
            self.comments[post_id].append(comment)
            return _json(200, comment)
        return None


def _fields(entry: dict[str, Any], fields: str) -> dict[str, Any]:
    return {k: entry[k] for k in fields.split(",") if k in entry}


class FakeContainers(FakeGraph):
    """Instagram's and Threads' container → publish flow, with the publishing quota."""

    USER = "17841400000000001"
    STATUS_FIELD: ClassVar[str]
    CREATE: ClassVar[str]
    PUBLISH: ClassVar[str]
    LIMIT: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.containers: dict[str, dict[str, Any]] = {}
        self.media: list[dict[str, Any]] = []  # newest last
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.quota_total = 25
        self.quota_usage = 0
        self.processing_checks = 1  # status checks that answer IN_PROGRESS first
        self.reads: list[dict[str, Any]] = []

    def faultable(self, request: dict[str, Any]) -> bool:
        # The faults hit the calls that make something (containers, publishing, comments);
        # status and quota reads are seen in ``reads``.
        return bool(request["method"] == "POST")

    def records(self, request: dict[str, Any]) -> bool:
        if request["method"] != "POST":
            self.reads.append(request)
            return False
        return True

    def expire(self, container: str) -> None:
        self.containers[container]["status"] = "EXPIRED"

    def published(self, text: str) -> list[dict[str, Any]]:
        return [m for m in self.media if m.get("text", m.get("caption")) == text]

    def check_create(self, form: dict[str, Any]) -> Answer | None:
        raise NotImplementedError

    def make_media(self, container: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def route(self, method: str, parts: list[str], form: dict[str, Any]) -> Answer | None:
        if parts == [self.USER, self.CREATE] and method == "POST":
            if problem := self.check_create(form):
                return problem
            container_id = self.new_id()
            self.containers[container_id] = {
                "id": container_id,
                "status": "IN_PROGRESS",
                "checks": 0,
                "form": form,
            }
            return _json(200, {"id": container_id})
        if parts == [self.USER, self.PUBLISH] and method == "POST":
            if missing := required(form, "creation_id"):
                return missing
            container = self.containers.get(form["creation_id"])
            if container is None:
                return graph_error(400, "(#100) Invalid creation_id", 100)
            if self.quota_usage >= self.quota_total:
                return graph_error(400, "Application request limit reached", 9, 2207042)
            if container["status"] == "EXPIRED":
                return graph_error(400, "The media container has expired", 9007, 2207008)
            if container["status"] == "PUBLISHED":
                return graph_error(400, "(#100) The media has already been published", 100, 2207006)
            if container["status"] != "FINISHED":
                return graph_error(400, "Media ID is not available", 9007, 2207027)
            container["status"] = "PUBLISHED"
            self.quota_usage += 1
            media = self.make_media(container)
            self.media.append(media)
            self.comments[media["id"]] = []
            return _json(200, {"id": media["id"]})
        if parts == [self.USER, self.LIMIT] and method == "GET":
            entry = {
                "quota_usage": self.quota_usage,
                "config": {"quota_total": self.quota_total, "quota_duration": 86400},
            }
            return _json(200, {"data": [entry]})
        if len(parts) == 1 and parts[0] in self.containers and method == "GET":
            container = self.containers[parts[0]]
            container["checks"] += 1
            if (
                container["status"] == "IN_PROGRESS"
                and container["checks"] > self.processing_checks
            ):
                container["status"] = "FINISHED"
            status = container["status"]
            return _json(
                200,
                {
                    "id": parts[0],
                    self.STATUS_FIELD: status,
                    **(
                        {"status": f"{status.title()}: Media has been uploaded"}
                        if self.STATUS_FIELD == "status_code"
                        else {}
                    ),
                },
            )
        media = {m["id"]: m for m in self.media}
        if len(parts) == 1 and parts[0] in media and method == "GET":
            return _json(200, {"id": parts[0], "permalink": media[parts[0]]["permalink"]})
        return None


class FakeInstagram(FakeContainers):
    TOKEN = "canary-instagram-TOKEN"
    STATUS_FIELD = "status_code"
    CREATE, PUBLISH, LIMIT = "media", "media_publish", "content_publishing_limit"
    GRANT = "ig_refresh_token"

    def check_create(self, form: dict[str, Any]) -> Answer | None:
        if not form.get("image_url"):
            return graph_error(
                400, "(#100) Only photo or video can be accepted as media type.", 100, 2207023
            )
        if len(form.get("caption", "")) > 2200:
            return graph_error(400, "The caption is too long", 100, 2207010)
        return None

    def make_media(self, container: dict[str, Any]) -> dict[str, Any]:
        media_id = self.new_id()
        form = container["form"]
        return {
            "id": media_id,
            "caption": form.get("caption", ""),
            "media_type": "IMAGE",
            "media_url": form["image_url"],
            "alt_text": form.get("alt_text"),
            "permalink": f"https://www.instagram.com/p/C{media_id[-8:]}/",
            "timestamp": _now(),
        }

    def route(self, method: str, parts: list[str], form: dict[str, Any]) -> Answer | None:
        if parts == [self.USER] and method == "GET":
            return _json(200, {"id": self.USER, "username": "perusolidarity"})
        if parts == [self.USER, "media"] and method == "GET":
            return _json(
                200,
                {
                    "data": [
                        _fields(m, "id,caption,permalink,timestamp") for m in reversed(self.media)
                    ]
                },
            )
        if len(parts) == 2 and parts[1] == "comments" and parts[0] in self.comments:
            if method == "GET":
                return _json(200, {"data": list(reversed(self.comments[parts[0]]))})
            if missing := required(form, "message"):
                return missing
            comment = {
                "id": self.new_id(),
                "text": form["message"],
                "timestamp": _now(),
                "username": "perusolidarity",
            }
            self.comments[parts[0]].append(comment)
            return _json(200, {"id": comment["id"]})
        return super().route(method, parts, form)


class FakeThreads(FakeContainers):
    TOKEN = "canary-threads-TOKEN"
    USER = "25000000000000001"
    STATUS_FIELD = "status"
    CREATE, PUBLISH, LIMIT = "threads", "threads_publish", "threads_publishing_limit"
    GRANT = "th_refresh_token"

    def check_create(self, form: dict[str, Any]) -> Answer | None:
        kind = form.get("media_type")
        if kind not in ("TEXT", "IMAGE"):
            return graph_error(
                400, "(#100) Param media_type must be one of {TEXT, IMAGE, VIDEO, CAROUSEL}", 100
            )
        if kind == "TEXT" and not form.get("text"):
            return graph_error(400, "(#100) The parameter text is required", 100)
        if kind == "IMAGE" and not form.get("image_url"):
            return graph_error(400, "(#100) The parameter image_url is required", 100)
        parent = form.get("reply_to_id")
        if parent and parent not in {m["id"] for m in self.media}:
            return graph_error(400, "(#100) reply_to_id is not a published post", 100)
        return None

    def make_media(self, container: dict[str, Any]) -> dict[str, Any]:
        media_id = self.new_id()
        form = container["form"]
        return {
            "id": media_id,
            "text": form.get("text", ""),
            "media_type": form["media_type"],
            "image_url": form.get("image_url"),
            "alt_text": form.get("alt_text"),
            "reply_to_id": form.get("reply_to_id"),
            "permalink": f"https://www.threads.net/@perusolidarity/post/D{media_id[-8:]}",
            "timestamp": _now(),
        }

    def route(self, method: str, parts: list[str], form: dict[str, Any]) -> Answer | None:
        if parts == ["me"] and method == "GET":
            return _json(200, {"id": self.USER, "username": "perusolidarity"})
        if parts == [self.USER, "threads"] and method == "GET":
            posts = [m for m in reversed(self.media) if not m["reply_to_id"]]
            return _json(200, {"data": [_fields(m, "id,text,permalink,timestamp") for m in posts]})
        if parts == [self.USER, "replies"] and method == "GET":
            posts = [m for m in reversed(self.media) if m["reply_to_id"]]
            return _json(200, {"data": [_fields(m, "id,text,permalink,timestamp") for m in posts]})
        if parts == [self.USER, self.LIMIT] and method == "GET":
            config = {"quota_total": self.quota_total, "quota_duration": 86400}
            return _json(
                200,
                {
                    "data": [
                        {
                            "quota_usage": self.quota_usage,
                            "config": config,
                            "reply_quota_usage": 0,
                            "reply_config": {"quota_total": 1000, "quota_duration": 86400},
                        }
                    ]
                },
            )
        return super().route(method, parts, form)
