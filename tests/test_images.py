"""Fitting images to a platform's size limit (Bluesky), and removing EXIF on the way."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from postscheduler.errors import ImageError
from postscheduler.posts.images import prepare_upload

from .conftest import Project

FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP"})
LIMIT = 1_000_000


def _noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    rng = random.Random(7)
    return Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * len(mode)))


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def test_a_small_clean_jpeg_is_sent_as_it_is() -> None:
    data = _encode(Image.new("RGB", (640, 360), (10, 20, 30)), "JPEG")
    prepared = prepare_upload(data, LIMIT, FORMATS)
    assert prepared.data == data and prepared.note is None
    assert (prepared.width, prepared.height, prepared.mime_type) == (640, 360, "image/jpeg")


def test_a_large_photo_is_reencoded_and_downscaled_to_fit() -> None:
    data = _encode(_noise((2400, 1800)), "PNG")
    assert len(data) > 5 * LIMIT
    prepared = prepare_upload(data, LIMIT, FORMATS)
    assert len(prepared.data) <= LIMIT and prepared.mime_type == "image/jpeg"
    with Image.open(io.BytesIO(prepared.data)) as im:
        assert im.size == (prepared.width, prepared.height)
        assert abs(im.width / im.height - 4 / 3) < 0.01  # the shape is kept
    assert prepared.note is not None and "downscaled from 2400×1800" in prepared.note


def test_transparency_survives_as_png_when_it_fits() -> None:
    image = Image.new("RGBA", (400, 400), (255, 0, 0, 0))
    data = _encode(image, "TIFF")  # a format Bluesky does not take
    prepared = prepare_upload(data, LIMIT, FORMATS)
    assert prepared.mime_type == "image/png"
    with Image.open(io.BytesIO(prepared.data)) as im:
        assert im.mode == "RGBA" and im.getpixel((0, 0))[3] == 0


def test_exif_with_a_location_is_removed_without_reencoding_loss() -> None:
    exif = Image.Exif()
    exif[0x8825] = {2: (51.0, 30.0, 0.0), 4: (0.0, 7.0, 0.0)}  # GPSInfo: where it was taken
    exif[0x010F] = "Camera maker"
    data = _encode(_noise((320, 240)), "JPEG", exif=exif, quality=85)
    prepared = prepare_upload(data, LIMIT, FORMATS)
    assert prepared.note == "EXIF metadata removed"
    with Image.open(io.BytesIO(prepared.data)) as im:
        assert not im.getexif() and "exif" not in im.info
        assert im.quantization == Image.open(io.BytesIO(data)).quantization  # same quality


def test_an_exif_rotation_is_applied_before_the_tag_goes() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° when shown
    data = _encode(Image.new("RGB", (300, 100)), "JPEG", exif=exif)
    prepared = prepare_upload(data, LIMIT, FORMATS)
    assert (prepared.width, prepared.height) == (100, 300)


def test_an_image_that_cannot_shrink_enough_is_refused() -> None:
    data = _encode(_noise((64, 64)), "PNG")
    with pytest.raises(ImageError, match="smaller than 10 bytes"):
        prepare_upload(data, 10, FORMATS)


def test_an_image_claiming_too_many_pixels_is_a_located_error(project: Project) -> None:
    """A PNG header saying 30000×30000: Pillow refuses to decode it (a decompression bomb);
    validate says so where the image is named instead of printing a traceback."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    project.write_bytes("images/bomb.png", png)
    project.write(
        "p.yaml",
        "id: p\nat: 2027-01-14 09:00\ntext: Hi.\n"
        "image: {file: images/bomb.png, alt: A., credit: B}\n",
    )
    from postscheduler.posts.rules import validate

    (finding,) = [f for f in validate(project.settings()).findings if f.is_error]
    assert finding.code == "image-invalid" and "more pixels" in finding.message
    assert finding.line == 4


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_an_image_cut_short_is_an_error_where_a_whole_one_is_not(
    project: Project, fmt: str
) -> None:
    """A file that ends before its image does still opens with its size and format; it
    would be published half grey, or refused at the time of sending."""
    from postscheduler.posts.images import inspect_image

    whole = _encode(_noise((300, 200), "RGB" if fmt != "GIF" else "L"), fmt)
    for cut in (len(whole) // 2, len(whole) - 20):
        path = project.write_bytes(f"images/cut{cut}.{fmt.lower()}", whole[:cut])
        with pytest.raises(ImageError, match="is cut short: the file ends before the image"):
            inspect_image(path)
    path = project.write_bytes(f"images/whole.{fmt.lower()}", whole)
    assert (inspect_image(path).width, inspect_image(path).format) == (300, fmt)
