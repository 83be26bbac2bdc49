"""Check that an image file is really an image, and where it may be read from.

Pillow reads only the header to identify the format and size, so this stays cheap even for
large photos. Paths are resolved (symlinks included) and must stay inside ``posts_dir``: a
post file must not be able to publish ``../../etc/passwd`` or a symlink to it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import warnings
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..errors import ImageError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from .models import Image


MIME_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "HEIF": "image/heif",
    "AVIF": "image/avif",
}


@dataclasses.dataclass(frozen=True, slots=True)
class ImageInfo:
    path: Path
    format: str  # Pillow's name: JPEG, PNG, GIF, WEBP, ...
    width: int
    height: int
    size: int  # bytes

    @property
    def mime_type(self) -> str:
        return MIME_TYPES.get(self.format, "application/octet-stream")


def public_image_url(image: Image, media_url: str | None) -> str | None:
    """Where a platform that fetches images itself finds this one: its ``url``, or its file
    under ``media_url`` (posts/images/x.jpg is <media_url>/images/x.jpg); None: nowhere."""
    if image.url is not None:
        return image.url
    if image.file is None or media_url is None:
        return None
    from urllib.parse import quote

    path = "/".join(quote(segment) for segment in PurePosixPath(image.file).parts)
    return f"{media_url.rstrip('/')}/{path}"


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
        with warnings.catch_warnings():
            # Pillow warns, then refuses, for images claiming more pixels than it will
            # decode (a "decompression bomb"): both are a located error here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                info = ImageInfo(path, str(im.format), im.width, im.height, size)
                _decode(im)
                return info
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{path.name} claims more pixels than any platform shows ({Image.MAX_IMAGE_PIXELS:,}"
            " at most): resize it, or it is not the image it says it is"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{path.name} is not an image Pillow can read (its bytes are not JPEG, PNG, "
            "GIF, WebP, ...)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # Pillow's decoders' words
        if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
            raise ImageError(
                f"{path.name} is cut short: the file ends before the image does (an upload "
                "or download that stopped part way?): export or copy it again"
            ) from None
        raise ImageError(f"{path.name} is a damaged image: {exc}") from None


def _decode(im: Any) -> None:
    """Read the whole image, not just its header: a file cut short opens, shows its size and
    format, and is published half grey (Bluesky stores the file as sent) or refused at the
    time of sending. A JPEG is decoded at an eighth of its size (the whole file is still
    read: half the time of a full decode); a PNG's chunks are checked, not inflated."""
    if im.format == "JPEG":
        im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
        im.load()
    elif im.format == "PNG":
        im.verify()
    else:
        im.load()


def _not_found(path: Path) -> str:
    """Where the image was looked for, and the names there it may have meant."""
    folder = path.parent
    cwd = Path.cwd()
    shown = folder.relative_to(cwd) if folder.is_relative_to(cwd) else folder
    message = f"{path.name} is not in {shown}/"
    try:
        names = [p.name for p in folder.iterdir() if p.is_file()]
    except OSError:
        return message + " (that folder does not exist either)"
    close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.6)
    if close:
        message += f" (did you mean {', '.join(close)}?)"
    return message


def inspect_image(path: Path) -> ImageInfo:
    """Format, dimensions and size of the image at ``path`` (cached while unchanged)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(_not_found(path)) from None
    except OSError as exc:
        raise ImageError(f"cannot read {path.name}: {exc.strerror}") from None
    if not path.is_file():
        raise ImageError(f"{path.name} is not a file")
    return _inspect(path, st.st_mtime_ns, st.st_size)


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedImage:
    """Image bytes ready to upload, and what was done to them (None: sent as they were)."""

    data: bytes
    mime_type: str
    width: int
    height: int
    note: str | None


def prepare_upload(data: bytes, max_bytes: int, formats: frozenset[str]) -> PreparedImage:
    """Fit an image to a platform that stores the file as sent (Bluesky's PDS does).

    Nothing is changed for an image already in an accepted format, within ``max_bytes`` and
    without EXIF. EXIF is removed because the file itself is public there and EXIF often
    carries where a photo was taken: a JPEG is re-saved with its own quantisation tables
    (no visible loss). Too large or another format: re-encoded as JPEG (PNG when it has
    transparency), the quality lowered and then the size reduced until it fits.
    """
    import io

    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as original:
        fmt = str(original.format)
        exif = original.getexif()
        has_exif = bool(original.info.get("exif")) or len(exif) > 0
        if len(data) <= max_bytes and fmt in formats and not has_exif:
            return PreparedImage(data, MIME_TYPES[fmt], original.width, original.height, None)
        if (
            fmt == "JPEG"
            and fmt in formats
            and len(data) <= max_bytes
            and exif.get(0x0112, 1) == 1  # no rotation to apply first
            and original.mode in ("RGB", "L", "CMYK")
        ):
            out = io.BytesIO()
            original.save(out, "JPEG", quality="keep", icc_profile=original.info.get("icc_profile"))
            if out.tell() <= max_bytes:
                w, h = original.size
                return PreparedImage(out.getvalue(), "image/jpeg", w, h, "EXIF metadata removed")
        oriented = ImageOps.exif_transpose(original)
        image = oriented if oriented is not original else original.copy()
    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    note_parts = [f"re-encoded ({len(data):,} bytes {fmt})"]
    scale = 1.0
    for _ in range(12):
        candidate = image
        if scale < 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            candidate = image.resize(size, Image.Resampling.LANCZOS)
        for encoded, mime in _encodings(candidate, alpha, formats):
            if len(encoded) <= max_bytes:
                if scale < 1.0:
                    note_parts.append(
                        f"downscaled from {image.width}×{image.height} "
                        f"to {candidate.width}×{candidate.height}"
                    )
                note_parts.append(f"to {len(encoded):,} bytes to fit {max_bytes:,}")
                return PreparedImage(
                    encoded, mime, candidate.width, candidate.height, ", ".join(note_parts)
                )
        scale *= 0.75
    raise ImageError(f"cannot make the image smaller than {max_bytes:,} bytes")


def _encodings(
    image: PILImage, alpha: bool, formats: frozenset[str]
) -> Iterator[tuple[bytes, str]]:
    """Encodings to try, best first; each is made only if the previous one was too large."""
    import io

    from PIL import Image

    if alpha and "PNG" in formats:
        out = io.BytesIO()
        image.convert("RGBA").save(out, "PNG", optimize=True)
        yield out.getvalue(), "image/png"
    rgb = image
    if image.mode != "RGB":
        rgba = image.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba.getchannel("A"))
    for quality in (90, 80, 70):
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
        yield out.getvalue(), "image/jpeg"
