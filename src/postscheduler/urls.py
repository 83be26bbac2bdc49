"""URLs as they may be shown: in a message, a log line, an alert."""

from __future__ import annotations

import urllib.parse


def without_password(url: str) -> str:
    """``url`` with its password (a database URL's) replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
