"""Instagram (content publishing): ``POST /{user}/media`` makes a container from the image's
public address (``image_url``, ``caption``, ``alt_text``), ``status_code`` is polled until
FINISHED, ``POST /{user}/media_publish`` publishes it. The container id is in the ledger
before the publishing call (``graph.py``), so no crash or lost answer can post twice.

The publishing quota (``content_publishing_limit``) is read before a container is made: a
full quota is a retry once the window moves on, never a failure. Thread parts are comments
on the post (``POST /{media}/comments``), which have no container: a lost comment is looked
for among the post's comments, else ``unconfirmed``. Tokens of Instagram Login are
refreshed (``ig_refresh_token``) once a day old and kept beside the ledger.
"""

from __future__ import annotations

from ..errors import PermanentError
from ..platforms.instagram import InstagramAccount
from .base import Published, PublishJob, Resolution
from .graph import GraphPublisher


class InstagramPublisher(GraphPublisher):
    platform = "instagram"
    container_path = "/media"
    publish_path = "/media_publish"
    status_field = "status_code"
    refresh_grant = "ig_refresh_token"

    @property
    def _config(self) -> InstagramAccount:
        assert isinstance(self.config, InstagramAccount)
        return self.config

    def refreshes(self) -> bool:
        return self._config.refreshes_token

    async def publish(self, job: PublishJob) -> Published:
        if job.key.part > 0:
            return await self._comment(job)
        if job.image is None:
            raise PermanentError("instagram: Instagram has no text-only posts (add an image)")
        create = {
            "image_url": self.image_address(job),
            "caption": job.text,
            "alt_text": job.image.alt,
        }
        return await self.publish_container(job, create, self._find_media, self._check_quota)

    async def _check_quota(self) -> None:
        await self.check_quota("content_publishing_limit", "quota_usage,config")

    async def _comment(self, job: PublishJob) -> Published:
        root = job.root.remote_id if job.root else None
        if not root:
            raise PermanentError("instagram: the post this comment belongs to has no media id")
        answer = await self.call("POST", f"/{root}/comments", "comment", data={"message": job.text})
        comment = str(answer.get("id") or "")
        if not comment:
            raise PermanentError(f"instagram comment: no id in the answer {answer}")
        return Published(comment, job.root.url if job.root else None)

    async def _find_media(self, job: PublishJob) -> Published:
        """The published media of a container whose answer was lost: the newest media of the
        account with this caption. Found or not, it is out."""
        media = await self.find_recent(
            job, f"/{self.user}/media", "id,caption,permalink,timestamp", "caption"
        )
        return Published(str(media["id"]), media.get("permalink")) if media else Published(None)

    async def resolve_in_doubt(self, job: PublishJob) -> Published | Resolution:
        if job.key.part == 0:
            return await self.resolve_container(job, self._find_media)
        root = job.root.remote_id if job.root else None
        if not root:
            return Resolution.UNKNOWN
        comment = await self.find_recent(job, f"/{root}/comments", "id,text,timestamp", "text")
        if comment is not None:
            return Published(str(comment["id"]), job.root.url if job.root else None)
        return Resolution.UNKNOWN  # comments have no handle: a person decides

    async def check_credentials(self) -> str:
        answer = await self.call("GET", f"/{self.user}", "account", params={"fields": "username"})
        if not answer.get("username"):
            raise PermanentError(f"instagram: {self.user} is not an Instagram professional account")
        return f"@{answer['username']}"
