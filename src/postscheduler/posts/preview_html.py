"""``preview --html``: one self-contained page showing a post as each account will publish it.

For organisers who review a campaign in a browser or attach the page to a pull request: the
same renderings as the text preview, each part with its counts against the platform's limits
(over-limit parts marked), its image inline with the alt text as the image's ``alt``, and the
credit.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable

from ..config import Settings
from ..errors import Finding, ImageError
from .images import inspect_image, resolve_image_path
from .render import Rendering

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
.account{border:1px solid #ccc;border-radius:10px;margin:1.5rem 0;padding:0 1rem 1rem}
.part{border-top:1px dashed #ddd;padding-top:.6rem;margin-top:.6rem}
.text{white-space:pre-wrap}.counts{color:#666;font-size:.85em}.over{color:#b00;font-weight:bold}
img{max-width:100%;border-radius:6px;margin-top:.4rem}.credit,.alt{font-size:.85em;color:#555}
.finding{color:#b00}.warning{color:#a60}
"""


def _image_html(rendering: Rendering, index: int, settings: Settings) -> str:
    image = rendering.parts[index].image
    if image is None:
        return ""
    alt = html.escape(image.alt)
    if image.file is not None:
        try:
            info = inspect_image(resolve_image_path(settings.posts_dir, image.file))
            data = base64.b64encode(info.path.read_bytes()).decode()
            src = f"data:{info.mime_type};base64,{data}"
        except ImageError as exc:
            return (
                f'<p class="finding">image {html.escape(image.file)}: {html.escape(str(exc))}</p>'
            )
    else:
        src = html.escape(image.url or "")
    return (
        f'<img src="{src}" alt="{alt}">'
        f'<div class="alt">alt: {alt}</div>'
        f'<div class="credit">credit: {html.escape(image.credit)}</div>'
    )


def preview_page(
    post_id: str,
    when: str,
    renderings: Iterable[Rendering],
    findings: list[Finding],
    settings: Settings,
) -> str:
    out = [
        "<!doctype html><meta charset=utf-8>",
        f"<title>{html.escape(post_id)} · postscheduler preview</title>",
        f"<style>{_STYLE}</style>",
        f"<h1>{html.escape(post_id)}</h1><p>{html.escape(when)}</p>",
    ]
    for rendering in renderings:
        out.append('<section class="account">')
        out.append(
            f"<h2>{html.escape(rendering.account)} "
            f"<small>({html.escape(rendering.platform.label)})</small></h2>"
        )
        total = len(rendering.parts)
        for part in rendering.parts:
            counts = ", ".join(str(m) for m in part.measures)
            over = ' <span class="over">over the limit</span>' if part.over_limit else ""
            out.append('<div class="part">')
            out.append(f'<div class="counts">part {part.index + 1}/{total} · {counts}{over}</div>')
            out.append(f'<div class="text">{html.escape(part.text)}</div>')
            out.append(_image_html(rendering, part.index, settings))
            out.append("</div>")
        for f in findings:
            if f.account in (None, rendering.account):
                css = "finding" if f.is_error else "finding warning"
                words = f"{f.severity.value}: {f.message}"
                out.append(f'<p class="{css}">{html.escape(words)}</p>')
        out.append("</section>")
    return "\n".join(out) + "\n"
