"""Threads (Meta's Threads API): ``POST /{user}/threads`` makes a container (``TEXT`` or
``IMAGE`` from the image's public address, with ``alt_text``; a thread part carries
``reply_to_id``, so it is a real reply), its ``status`` is polled until FINISHED, and
``POST /{user}/threads_publish`` publishes it. The container id is in the ledger before the
publishing call (``graph.py``): every part of a thread is published at most once, whatever
crashes or answers are lost.

The quota (``threads_publishing_limit``: posts and replies per 24 hours) is read before a
container is made; a full quota is a retry later. Tokens are refreshed (``th_refresh_token``)
once a day old and kept beside the ledger.
"""

from __future__ import annotations

from ..errors import PermanentError
from ..platforms.threads import ThreadsAccount
from .base import Published, PublishJob, Resolution
from .graph import GraphPublisher


class ThreadsPublisher(GraphPublisher):
    platform = "threads"
    container_path = "/threads"
    publish_path = "/threads_publish"
    status_field = "status"
    refresh_grant = "th_refresh_token"

    @property
    def _config(self) -> ThreadsAccount:
        assert isinstance(self.config, ThreadsAccount)
        return self.config

    def refreshes(self) -> bool:
        return True  # every Threads token is a long-lived one

    async def publish(self, job: PublishJob) -> Published:
        create = {"media_type": "TEXT", "text": job.text}
        if job.image is not None:
            create.update(
                media_type="IMAGE", image_url=self.image_address(job), alt_text=job.image.alt
            )
        if job.key.part > 0:
            parent = job.reply_to.remote_id if job.reply_to else None
            if not parent:
                raise PermanentError("threads: the part this one replies to has no media id")
            create["reply_to_id"] = parent

        async def check_quota() -> None:
            await self._check_quota(reply=job.key.part > 0)

        return await self.publish_container(job, create, self._find, check_quota)

    async def _check_quota(self, *, reply: bool) -> None:
        await self.check_quota(
            "threads_publishing_limit",
            "quota_usage,config,reply_quota_usage,reply_config",
            prefix="reply_" if reply else "",
            what="replies" if reply else "posts",
        )

    async def _find(self, job: PublishJob) -> Published:
        """The published post of a container whose answer was lost: among the account's
        newest posts (or replies) with these words. Found or not, it is out."""
        edge = "replies" if job.key.part > 0 else "threads"
        post = await self.find_recent(
            job, f"/{self.user}/{edge}", "id,text,permalink,timestamp", "text"
        )
        return Published(str(post["id"]), post.get("permalink")) if post else Published(None)

    async def resolve_in_doubt(self, job: PublishJob) -> Published | Resolution:
        return await self.resolve_container(job, self._find)

    async def check_credentials(self) -> str:
        answer = await self.call("GET", "/me", "account", params={"fields": "id,username"})
        if not answer.get("username"):
            raise PermanentError("threads: the token names no Threads account")
        return f"@{answer['username']}"
