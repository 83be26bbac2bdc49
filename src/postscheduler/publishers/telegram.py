"""Telegram: a bot posts to a channel through the Bot API (``sendMessage`` / ``sendPhoto``).

Text goes as HTML (``parse_mode=HTML``) with ``&``, ``<`` and ``>`` escaped, so nothing in a
post is read as markup. A photo's caption holds at most 1,024 characters: a longer post goes
as the photo with its credit as caption, then the text as a reply to it (render splits it,
``platforms/telegram.py``, so preview shows both messages). The bot token is part
of every request URL, so URLs are never put in a message or a log line.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import httpx

from ..errors import OutcomeUnknownError, PermanentError, PublishError
from ..platforms.base import Message
from ..platforms.telegram import TelegramAccount
from .base import Published, Publisher, PublishJob
from .http import answer_field, answer_object, body_excerpt, error_body, number, send


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    parameters = body.get("parameters")
    return parameters if isinstance(parameters, dict) else {}


def _description(response: httpx.Response) -> str:
    body = error_body(response)
    if "description" not in body:
        return body_excerpt(response)
    text = str(body["description"])
    migrate = _parameters(body).get("migrate_to_chat_id")
    if migrate:
        text += f" (the group became a supergroup: set chat_id to {migrate})"
    return text


def _retry_after(response: httpx.Response) -> float | None:
    return number(_parameters(error_body(response)).get("retry_after"))


class TelegramPublisher(Publisher):
    platform = "telegram"

    @property
    def _config(self) -> TelegramAccount:
        assert isinstance(self.config, TelegramAccount)
        return self.config

    async def _call(self, method: str, *, data: dict[str, Any], files: Any = None) -> Any:
        assert self.http is not None, "the Telegram publisher needs an HTTP client"
        url = f"{self._config.api_base}/bot{self.secret('bot_token')}/{method}"
        http = self.http
        if files is None:
            request = lambda: http.post(url, json=data)  # noqa: E731
        else:
            form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
            request = lambda: http.post(url, data=form, files=files)  # noqa: E731
        response = await send(
            f"telegram {method}", request, error_text=_description, retry_after=_retry_after
        )
        body = answer_object(response, f"telegram {method}")
        if not body.get("ok"):
            raise PermanentError(f"telegram {method}: {body.get('description', 'not ok')}")
        result = body.get("result")
        if not isinstance(result, dict):  # every method this publisher calls answers one
            raise OutcomeUnknownError(f"telegram {method}: the answer has no 'result' object")
        return result

    def _message(self, job: PublishJob, text: str, reply_to: str | None) -> dict[str, Any]:
        message: dict[str, Any] = {
            "chat_id": self._config.chat_id,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": not self._config.link_preview},
        }
        if text:
            message["text"] = html.escape(text, quote=False)
        if reply_to:
            message["reply_parameters"] = {"message_id": int(reply_to)}
        return message

    def _published(self, result: dict[str, Any]) -> Published:
        message_id = answer_field(result, "message_id", "telegram")
        chat = result.get("chat")
        username = chat.get("username") if isinstance(chat, dict) else None
        if not isinstance(username, str) or not username.replace("_", "").isalnum():
            username = None
        return Published(message_id, f"https://t.me/{username}/{message_id}" if username else None)

    async def _photo(self, job: PublishJob, caption: str, reply_to: str | None) -> Published:
        assert job.image is not None
        data = self._message(job, "", reply_to)
        data["caption"] = html.escape(caption, quote=False)
        if job.image_path is not None:
            photo = Path(job.image_path)
            files = {"photo": (photo.name, photo.read_bytes())}
            return self._published(await self._call("sendPhoto", data=data, files=files))
        data["photo"] = job.image.url
        return self._published(await self._call("sendPhoto", data=data))

    async def _send(self, job: PublishJob, message: Message, reply_to: str | None) -> Published:
        if message.image is not None:
            return await self._photo(job, message.text, reply_to)
        result = await self._call("sendMessage", data=self._message(job, message.text, reply_to))
        return self._published(result)

    async def publish(self, job: PublishJob) -> Published:
        """Send the part's messages as render split them (``platforms/telegram.py``): a
        photo whose text is too long for a caption goes first, the text replying to it."""
        reply_to = job.reply_to.remote_id if job.reply_to else None
        first, *rest = job.messages or (Message(job.text, job.image),)
        published = await self._send(job, first, reply_to)
        for message in rest:
            try:
                published = await self._send(job, message, published.remote_id)
            except PublishError as exc:
                # The photo is out: sending again would post it twice. A person decides.
                raise OutcomeUnknownError(
                    f"the photo was posted (message {published.remote_id}) but its text was "
                    f"not: {exc.message}"
                ) from None
        return published

    async def check_credentials(self) -> str:
        bot = await self._call("getMe", data={})
        chat = await self._call("getChat", data={"chat_id": self._config.chat_id})
        where = chat.get("title") or chat.get("username") or self._config.chat_id
        return f"@{bot.get('username')} posting to {where}"
