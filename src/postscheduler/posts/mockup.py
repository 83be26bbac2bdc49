"""A post as each platform shows it, in HTML: shared by ``preview --html`` and ``calendar``.

Everything shown comes from the ``Preview`` (render's output, what the publishers send): this
module only lays it out. Every piece of text from a post file (words, alt text, credits, ids,
links) is escaped; links are ``href``s only when they are http(s), and the page has no
script, so a post can never inject markup or code.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable

from ..errors import Finding
from ..platforms.counting import url_spans
from .preview import AccountPreview, ImageView, PartView

# Each platform's accent, for its avatar placeholder.
_ACCENT = {
    "mastodon": "#6364ff",
    "bluesky": "#1185fe",
    "x": "#0f1419",
    "telegram": "#2aabee",
    "discord": "#5865f2",
    "slack": "#4a154b",
    "facebook": "#0866ff",
    "instagram": "#d62976",
    "threads": "#000000",
    "linkedin": "#0a66c2",
    "webhook": "#666666",
    "outbox": "#2e7d32",
}
# Accounts are told apart by colour in the calendar (class acc-N, N by account order).
PALETTE = (
    "#1565c0",
    "#c62828",
    "#2e7d32",
    "#6a1b9a",
    "#ef6c00",
    "#00838f",
    "#ad1457",
    "#4e342e",
    "#283593",
    "#558b2f",
)

# The page makes no network request (its Content-Security-Policy allows none): images are
# embedded, styles inline and hashed, no script at all.
STYLE = (
    """
:root{--ink:#1d1f23;--muted:#5b616b;--line:#d6d9de;--bad:#b3261e;--warn:#8a5a00;--bg:#fff}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--ink);
background:var(--bg);margin:0 auto;max-width:72rem;padding:1rem}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.4rem 0 .4rem}
h1,h2{overflow-wrap:anywhere}
.muted,small{color:var(--muted)}
.mock{border:1px solid var(--line);border-radius:12px;margin:.8rem 0;padding:.7rem .9rem;
max-width:36rem;background:#fff}
.mock header{display:flex;gap:.5rem;align-items:center;margin-bottom:.4rem}
.avatar{width:2.2rem;height:2.2rem;border-radius:50%;background:#888;flex:none}
.who b{display:block}.who span{color:var(--muted);font-size:.85em}
.platform{margin-left:auto;font-size:.8em;color:var(--muted)}
.part{white-space:pre-wrap;overflow-wrap:anywhere}
.reply{border-left:3px solid var(--line);margin:.6rem 0 0 .6rem;padding-left:.7rem}
.tag,.mention,.link{color:#1a5fb4;text-decoration:none}.link{text-decoration:underline}
figure{margin:.5rem 0}figure img{max-width:100%;border-radius:8px;display:block}
figcaption{font-size:.85em;color:var(--muted)}
.card{border:1px solid var(--line);border-radius:8px;padding:.5rem .7rem;margin-top:.5rem;
font-size:.9em}
.counts{font-size:.8em;color:var(--muted);margin-top:.3rem}.over{color:var(--bad);font-weight:700}
.finding{color:var(--bad);font-size:.9em;margin:.2rem 0}.finding.warning{color:var(--warn)}
.state{font-size:.85em;margin:.3rem 0}
@media print{.mock{break-inside:avoid}a{color:inherit}}
"""
    + "".join(f".avatar.p-{name}{{background:{colour}}}" for name, colour in _ACCENT.items())
    + "".join(
        f".acc-{i}{{border-left:4px solid {c}}}.chip.acc-{i}{{background:{c}}}"
        for i, c in enumerate(PALETTE)
    )
)

_HASHTAG = re.compile(r"(?<![\w&/])#\w+")
_MENTION = re.compile(r"(?<![\w/])@[A-Za-z0-9._]+[A-Za-z0-9_](?:@[A-Za-z0-9.-]+\.[a-z]{2,})?")
SAFE_HREF = re.compile(r"^https?://", re.IGNORECASE)


def csp_meta(style: str) -> str:
    """No script, no network: only the page's one stylesheet (by its hash) and embedded
    images."""
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    policy = (
        f"default-src 'none'; img-src data:; style-src 'sha256-{digest}'; script-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    return f'<meta http-equiv="Content-Security-Policy" content="{policy}">'


def page_head(title: str, css: str = "") -> str:
    style = STYLE + css
    return (
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        + csp_meta(style)
        + '<meta name="viewport" content="width=device-width, initial-scale=1">'
        + '<meta name="referrer" content="no-referrer">'
        + f"<title>{html.escape(title)}</title><style>{style}</style>"
    )


def _byte_to_char(text: str, spans: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    encoded = text.encode()
    return [
        (len(encoded[:a].decode(errors="ignore")), len(encoded[:b].decode(errors="ignore")), uri)
        for a, b, uri in spans
    ]


def _shown_link(text: str, platform: str) -> str:
    """A link as the platform displays it: X shows a short form of every URL."""
    if platform != "x":
        return text
    bare = re.sub(r"^https?://(www\.)?", "", text)
    return bare if len(bare) <= 24 else bare[:23] + "…"


def rich_text(part: PartView, platform: str) -> str:
    """The part's text, escaped, with links, hashtags and mentions marked as the platform
    marks them."""
    text = part.part.text
    spans = part.part.links
    links = _byte_to_char(text, spans) if spans is not None else url_spans(text)
    marks: list[tuple[int, int, str, str | None]] = [(a, b, "link", uri) for a, b, uri in links]
    taken = [(a, b) for a, b, _, _ in marks]

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e in taken)

    for pattern, kind in ((_HASHTAG, "tag"), (_MENTION, "mention")):
        for m in pattern.finditer(text):
            if free(m.start(), m.end()):
                marks.append((m.start(), m.end(), kind, None))
                taken.append((m.start(), m.end()))
    out, at = [], 0
    for a, b, kind, uri in sorted(marks):
        out.append(html.escape(text[at:a]))
        words = text[a:b]
        if kind == "link" and uri is not None and SAFE_HREF.match(uri):
            shown = html.escape(_shown_link(words, platform))
            href = html.escape(uri, quote=True)
            out.append(f'<a class="link" href="{href}" rel="noreferrer">{shown}</a>')
        else:
            out.append(f'<span class="{kind}">{html.escape(words)}</span>')
        at = b
    out.append(html.escape(text[at:]))
    return "".join(out)


def image_html(view: ImageView | None) -> str:
    if view is None:
        return ""
    image = view.image
    alt = html.escape(image.alt, quote=True)
    caption = (
        f"<figcaption>alt: {html.escape(image.alt)} · credit: {html.escape(image.credit)}"
        "</figcaption>"
    )
    if image.file is not None:
        if view.info is None:
            problem = html.escape(view.problem or "unreadable")
            return f'<p class="finding">image {html.escape(image.file)}: {problem}</p>'
        data = base64.b64encode(view.info.path.read_bytes()).decode()
        src = f"data:{view.info.mime_type};base64,{data}"
        return f'<figure><img src="{src}" alt="{alt}">{caption}</figure>'
    # The page loads nothing from the network: an image by URL is named, not fetched.
    url = html.escape(image.url or "")
    return f'<figure><p class="muted">image from {url} (not loaded here)</p>{caption}</figure>'


def findings_html(findings: Iterable[Finding]) -> str:
    out = []
    for f in findings:
        css = "finding" if f.is_error else "finding warning"
        hint = f" ({f.hint})" if f.hint else ""
        out.append(f'<p class="{css}">{html.escape(f"{f.severity.value}: {f.message}{hint}")}</p>')
    return "".join(out)


def mockup(view: AccountPreview, *, status: str = "") -> str:
    """One account's mock-up: its header, each part (replies under the first), images with
    their alt and credit, the link card where the platform builds one, the counts, and
    every finding for it."""
    rendering = view.rendering
    platform = rendering.platform
    name = html.escape(rendering.account)
    kind = html.escape(platform.name)
    out = [
        f'<article class="mock" data-account="{name}" data-platform="{kind}">',
        f'<header><span class="avatar p-{kind}"></span>',
        f'<span class="who"><b>Campaign</b><span>{_handle(rendering.account, platform.name)}'
        f'</span></span><span class="platform">{html.escape(platform.label)}</span></header>',
    ]
    if status:
        out.append(status)
    total = len(view.parts)
    for part_view in view.parts:
        part = part_view.part
        counts = ", ".join(str(m) for m in part.measures)
        over = ' <span class="over">over the limit</span>' if part.over_limit else ""
        css = "part" if part.index == 0 else "part reply"
        out.append(f'<div class="{css}" data-part="{part.index + 1}">')
        if part.index:
            out.append(f'<div class="muted">reply {part.index + 1}/{total}</div>')
        out.append(f'<div class="text">{rich_text(part_view, platform.name)}</div>')
        out.append(image_html(part_view.image))
        if part.index == 0 and view.card is not None and rendering.link:
            link = html.escape(rendering.link)
            card = html.escape(view.card)
            out.append(f'<div class="card">link card: {link}<br><small>{card}</small></div>')
        warning = rendering.content.content_warning
        if warning and platform.content_warnings and part.index == 0:
            out.append(f'<p class="muted">content warning: {html.escape(warning)}</p>')
        out.append(f'<div class="counts">{html.escape(counts)}{over}</div></div>')
    out.append(findings_html(view.findings))
    out.append("</article>")
    return "".join(out)


def _handle(account: str, platform: str) -> str:
    """A placeholder handle in the platform's own form (the real one is the account's)."""
    name = html.escape(account)
    forms = {
        "mastodon": f"@{name}@instance",
        "bluesky": f"@{name}.bsky.social",
        "x": f"@{name}",
        "threads": f"@{name}",
        "instagram": f"@{name}",
        "telegram": f"t.me/{name}",
        "discord": f"#{name}",
        "slack": f"#{name}",
    }
    return forms.get(platform, name)
