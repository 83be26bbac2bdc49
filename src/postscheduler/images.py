"""Check that an image file is really an image, and where it may be read from.

Pillow reads only the header to identify the format and size, so this stays cheap even for
large photos. Paths are resolved (symlinks included) and must stay inside ``posts_dir``: a
post file must not be able to publish ``../../etc/passwd`` or a symlink to it.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path


@dataclasses.dataclass(frozen=True, slots=True)
class ImageInfo:
    path: Path
    format: str  # Pillow's name: JPEG, PNG, GIF, WEBP, ...
    width: int
    height: int
    size: int  # bytes

    @property
    def mime_type(self) -> str:
        return {
            "JPEG": "image/jpeg",
            "PNG": "image/png",
            "GIF": "image/gif",
            "WEBP": "image/webp",
            "HEIF": "image/heif",
            "AVIF": "image/avif",
        }.get(self.format, "application/octet-stream")


class ImageError(ValueError):
    """The image cannot be used; the message says why and what to do."""


def resolve_image_path(posts_dir: Path, relative: str) -> Path:
    """The real path of ``relative`` under ``posts_dir``; refuses anything outside it."""
    root = posts_dir.resolve()
    candidate = Path(relative)
    if candidate.is_absolute():
        raise ImageError(
            f"{relative!r} is an absolute path: give the path relative to {root.name}/"
        )
    target = (root / candidate).resolve()
    if not target.is_relative_to(root):
        raise ImageError(
            f"{relative!r} points outside {root.name}/ (via '..' or a symlink): "
            f"put the image inside {root.name}/"
        )
    return target


@functools.lru_cache(maxsize=1024)
def _inspect(path: Path, mtime_ns: int, size: int) -> ImageInfo:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return ImageInfo(path, str(im.format), im.width, im.height, size)
    except UnidentifiedImageError:
        raise ImageError(
            f"{path.name} is not an image Pillow can read (its bytes are not JPEG, PNG, "
            "GIF, WebP, ...)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path.name} is a damaged image: {exc}") from None


def inspect_image(path: Path) -> ImageInfo:
    """Format, dimensions and size of the image at ``path`` (cached while unchanged)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path.name} does not exist") from None
    except OSError as exc:
        raise ImageError(f"cannot read {path.name}: {exc.strerror}") from None
    if not path.is_file():
        raise ImageError(f"{path.name} is not a file")
    return _inspect(path, st.st_mtime_ns, st.st_size)
