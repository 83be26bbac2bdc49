"""Facebook Pages (Graph API): ``POST /{page}/feed`` (``message``, ``link``) for text and
link posts, ``POST /{page}/photos`` (the file's bytes as ``source``, or an image's address
as ``url``, with ``message`` and ``alt_text_custom``) for a post with an image, and thread
parts as comments on the post (``POST /{post}/comments``).

Facebook has no idempotency and no handle to ask about: a lost answer is looked for among
the Page's newest posts (``published_posts``) or the post's comments, by its words and time,
and recorded as published when found; otherwise it is ``unconfirmed``, never resent
blindly. Errors are the Graph API's (``graph.py``): throttling waits, 190 means re-authorize,
506 is the same words posted twice in a row.
"""

from __future__ import annotations

from ..errors import PermanentError
from ..platforms.facebook import FacebookAccount
from .base import Published, PublishJob, Resolution
from .graph import GraphPublisher


class FacebookPublisher(GraphPublisher):
    platform = "facebook"

    @property
    def _config(self) -> FacebookAccount:
        assert isinstance(self.config, FacebookAccount)
        return self.config

    @staticmethod
    def post_url(post_id: str) -> str:
        return f"https://www.facebook.com/{post_id}"

    async def publish(self, job: PublishJob) -> Published:
        page = self._config.page_id
        if job.key.part > 0:
            root = job.root.remote_id if job.root else None
            if not root:
                raise PermanentError("facebook: the post this comment belongs to has no id")
            answer = await self.call(
                "POST", f"/{root}/comments", "comment", data={"message": job.text}
            )
            comment = str(answer.get("id") or "")
            if not comment:
                raise PermanentError(f"facebook comment: no id in the answer {answer}")
            return Published(comment, answer.get("permalink_url") or self.post_url(root))
        if job.image is not None:
            form = {"message": job.text, "alt_text_custom": job.image.alt, "published": "true"}
            if job.image_path is None and job.image.url is not None:
                # Facebook fetches an address itself: nothing to download here.
                answer = await self.call(
                    "POST", f"/{page}/photos", "photo", data={**form, "url": job.image.url}
                )
            else:
                name, content = await self.image_bytes(job, self.image_limit())
                answer = await self.call(
                    "POST", f"/{page}/photos", "photo", data=form, files={"source": (name, content)}
                )
            # The photo's id, and the post it made, which comments belong to.
            post_id = str(answer.get("post_id") or answer.get("id") or "")
        else:
            form = {"message": job.text}
            if job.link:
                form["link"] = job.link
            answer = await self.call("POST", f"/{page}/feed", "post", data=form)
            post_id = str(answer.get("id") or "")
        if not post_id:
            raise PermanentError(f"facebook: no post id in the answer {answer}")
        return Published(post_id, self.post_url(post_id))

    async def resolve_in_doubt(self, job: PublishJob) -> Published | Resolution:
        if job.key.part > 0:
            root = job.root.remote_id if job.root else None
            if not root:
                return Resolution.UNKNOWN
            comment = await self.find_recent(
                job,
                f"/{root}/comments",
                "id,message,created_time,permalink_url",
                "message",
                at="created_time",
            )
            if comment is None:
                return Resolution.UNKNOWN
            return Published(
                str(comment["id"]), comment.get("permalink_url") or self.post_url(root)
            )
        post = await self.find_recent(
            job,
            f"/{self._config.page_id}/published_posts",
            "id,message,created_time,permalink_url",
            "message",
            at="created_time",
        )
        if post is None:
            return Resolution.UNKNOWN  # not among the newest: a person decides
        return Published(str(post["id"]), post.get("permalink_url") or self.post_url(post["id"]))

    async def check_credentials(self) -> str:
        page = self._config.page_id
        answer = await self.call("GET", f"/{page}", "page", params={"fields": "id,name"})
        if not answer.get("name"):
            raise PermanentError(f"facebook: the token cannot read Page {page}")
        return f"{answer['name']} (Page {answer.get('id', page)})"
