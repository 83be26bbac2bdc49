"""``preview --html``: one self-contained page showing a post as each account will publish it.

For organisers who review a campaign in a browser or attach the page to a pull request: the
same renderings as the text preview, each part with its counts against the platform's limits
(over-limit parts marked), its image inline with the alt text as the image's ``alt``, and the
credit.
"""

from __future__ import annotations

import base64
import html

from .preview import ImageView, Preview

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
.account{border:1px solid #ccc;border-radius:10px;margin:1.5rem 0;padding:0 1rem 1rem}
.part{border-top:1px dashed #ddd;padding-top:.6rem;margin-top:.6rem}
.text{white-space:pre-wrap}.counts{color:#666;font-size:.85em}.over{color:#b00;font-weight:bold}
img{max-width:100%;border-radius:6px;margin-top:.4rem}.credit,.alt{font-size:.85em;color:#555}
.finding{color:#b00}.warning{color:#a60}
"""


def _image_html(view: ImageView | None) -> str:
    if view is None:
        return ""
    image = view.image
    alt = html.escape(image.alt)
    if image.file is not None:
        if view.info is None:
            problem = html.escape(view.problem or "unreadable")
            return f'<p class="finding">image {html.escape(image.file)}: {problem}</p>'
        data = base64.b64encode(view.info.path.read_bytes()).decode()
        src = f"data:{view.info.mime_type};base64,{data}"
    else:
        src = html.escape(image.url or "")
    return (
        f'<img src="{src}" alt="{alt}">'
        f'<div class="alt">alt: {alt}</div>'
        f'<div class="credit">credit: {html.escape(image.credit)}</div>'
    )


def preview_page(preview: Preview, when: str) -> str:
    post_id = preview.post.id
    out = [
        "<!doctype html><meta charset=utf-8>",
        f"<title>{html.escape(post_id)} · postscheduler preview</title>",
        f"<style>{_STYLE}</style>",
        f"<h1>{html.escape(post_id)}</h1><p>{html.escape(when)}</p>",
    ]
    for view in preview.accounts:
        rendering = view.rendering
        out.append('<section class="account">')
        out.append(
            f"<h2>{html.escape(rendering.account)} "
            f"<small>({html.escape(rendering.platform.label)})</small></h2>"
        )
        total = len(view.parts)
        for part_view in view.parts:
            part = part_view.part
            counts = ", ".join(str(m) for m in part.measures)
            over = ' <span class="over">over the limit</span>' if part.over_limit else ""
            out.append('<div class="part">')
            out.append(f'<div class="counts">part {part.index + 1}/{total} · {counts}{over}</div>')
            out.append(f'<div class="text">{html.escape(part.text)}</div>')
            out.append(_image_html(part_view.image))
            out.append("</div>")
        for f in view.findings:
            css = "finding" if f.is_error else "finding warning"
            words = f"{f.severity.value}: {f.message}"
            out.append(f'<p class="{css}">{html.escape(words)}</p>')
        out.append("</section>")
    return "\n".join(out) + "\n"
