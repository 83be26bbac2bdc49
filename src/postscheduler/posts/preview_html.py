"""``preview --html``: one self-contained page showing a post as each account will publish it.

For organisers who review a campaign in a browser or attach the page to a pull request: each
account's mock-up (``mockup.py``, the same the calendar shows), with the counts against the
platform's limits, the image inline with its alt text and credit, and every finding.
"""

from __future__ import annotations

import html

from .mockup import findings_html, mockup, page_head
from .preview import Preview


def preview_page(preview: Preview, when: str) -> str:
    post_id = html.escape(preview.post.id)
    out = [
        page_head(f"{preview.post.id} · postscheduler preview"),
        f'<h1>{post_id}</h1><p class="muted">{html.escape(when)}</p>',
    ]
    out += [mockup(view) for view in preview.accounts]
    shown = {f for view in preview.accounts for f in view.findings}
    out.append(findings_html(f for f in preview.findings if f not in shown))
    return "\n".join(out) + "\n"
