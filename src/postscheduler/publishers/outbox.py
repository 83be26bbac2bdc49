"""Outbox: publishes into a local folder, one JSON file per delivery plus a readable timeline."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
from pathlib import Path

from ..errors import OutcomeUnknownError, PermanentError, TransientError
from ..platforms.outbox import OutboxAccount
from .base import Published, Publisher, PublishJob, Resolution

TIMELINE = "timeline.txt"


def _identity_in(path: Path) -> str | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record.get("id") if isinstance(record, dict) else None


class OutboxPublisher(Publisher):
    platform = "outbox"
    # The file name is the delivery's identity: writing it again changes nothing, and the
    # timeline gets an entry only with the file's first writing.
    idempotent = True
    uses_http = False

    @property
    def folder(self) -> Path:
        assert isinstance(self.config, OutboxAccount)
        return self.settings.base_dir / self.config.path

    def _file(self, job: PublishJob) -> Path:
        """``<post>.<account>.<part>.json``; ids and account names may hold dots, so two
        deliveries can share that name (post ``a.b`` to ``c``, post ``a`` to ``b.c``): the
        second one's file then carries its identity too."""
        plain = self.folder / f"{job.key.post_id}.{job.key.account}.{job.key.part + 1}.json"
        if not plain.exists() or _identity_in(plain) == job.identity:
            return plain
        return plain.with_name(f"{plain.stem}.{job.identity}.json")

    def _timeline_entry(self, job: PublishJob) -> str:
        zone = self.settings.config.zone
        # The time the post was scheduled for: the timeline reads as the campaign's calendar
        # (the JSON file also has when it was written).
        head = (
            f"=== {job.due_at.astimezone(zone):%Y-%m-%d %H:%M %Z} · {job.key.post_id} → "
            f"{job.key.account} · part {job.key.part + 1}/{job.parts} · {job.identity}"
        )
        lines = [head, job.text]
        if job.image is not None:
            lines.append(f"[image: {job.image.file or job.image.url} · alt: {job.image.alt}]")
        return "\n".join(lines) + "\n\n"

    def _append_timeline(self, job: PublishJob) -> None:
        with (self.folder / TIMELINE).open("a", encoding="utf-8") as fh:
            fh.write(self._timeline_entry(job))
            fh.flush()
            os.fsync(fh.fileno())

    def _in_timeline(self, job: PublishJob) -> bool:
        path = self.folder / TIMELINE
        return path.exists() and job.identity in path.read_text(encoding="utf-8")

    async def publish(self, job: PublishJob) -> Published:
        try:
            target, fresh = self._write(job)
        except OSError as exc:
            raise self._cannot_write(exc) from None
        try:
            # A file already there may lack its timeline entry (a crash between the two).
            if fresh or not self._in_timeline(job):
                self._append_timeline(job)
        except OSError as exc:  # the delivery's file is there: it is published
            raise OutcomeUnknownError(
                f"{target.name} is in the outbox but its timeline entry could not be written: "
                f"{exc.strerror or exc}"
            ) from None
        return Published(job.identity, target.resolve().as_uri())

    def _cannot_write(self, exc: OSError) -> Exception:
        """An OSError as publishers say failures: a full disk may clear by itself, a folder
        that is a file or is not ours to write will not."""
        why = f"cannot write to the outbox folder {self.folder}: {exc.strerror or exc}"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            return TransientError(why)
        return PermanentError(f"{why} (fix the folder, or the account's path:, then retry it)")

    def _write(self, job: PublishJob) -> tuple[Path, bool]:
        """The delivery's file, written unless it was already; and whether it was just now."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self._file(job)
        if target.exists():
            return target, False
        now = dt.datetime.now(dt.UTC)
        record = job.as_record() | {"published_at": (job.sent_at or now).isoformat()}
        tmp = target.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(record, fh, ensure_ascii=False, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target)  # atomic: the file is there whole or not at all
        return target, True

    async def resolve_in_doubt(self, job: PublishJob) -> Published | Resolution:
        if self._file(job).exists():
            return await self.publish(job)  # completes the timeline if needed
        return Resolution.NOT_SENT

    async def check_credentials(self) -> str:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._cannot_write(exc) from None
        if not os.access(self.folder, os.W_OK):
            raise PermanentError(f"cannot write to {self.folder}")
        return f"folder {self.folder}"
