"""``calendar``: the organiser's page, one self-contained HTML file.

A week-by-week grid in the configuration's time zone, every delivery on its day with its
time, id and first words, coloured per account; each links to the post below (an anchor: no
script), where every account's mock-up shows it as that platform will (``mockup.py``), with
what the ledger knows (published with its link, failed or unconfirmed and why, skipped).
Everything from the posts is escaped; the Content-Security-Policy allows no script and no
network request. Narrow screens get one day under the other; print shows it all.
"""

from __future__ import annotations

import datetime as dt
import html

from ..posts.mockup import findings_html, mockup, page_head
from .calendar import AccountDay, Calendar, CalendarEntry

CSS = """
.banner{background:#fff4e5;border:1px solid #f0b35b;border-radius:8px;padding:.5rem .8rem}
.legend{display:flex;flex-wrap:wrap;gap:.4rem;margin:.5rem 0}
.chip{color:#fff;border-radius:999px;padding:0 .5rem;font-size:.8em;white-space:nowrap}
.week{display:grid;grid-template-columns:repeat(7,minmax(0,1fr));gap:4px;margin-bottom:4px}
.day{border:1px solid var(--line);border-radius:6px;min-height:5.5rem;padding:.25rem;
font-size:.85em}
.day h3{font-size:.8em;margin:0 0 .2rem;color:var(--muted);font-weight:600}
.day.today{border-color:#1a5fb4;border-width:2px}
.entry{display:block;margin:.2rem 0;padding:.15rem .3rem;border-radius:4px;background:#f4f6f8;
color:var(--ink);text-decoration:none;overflow-wrap:anywhere}
.entry .t{font-weight:700}.entry.held{background:#fdecea}
.st{font-size:.75em;border-radius:3px;padding:0 .25rem;margin-right:.15rem;background:#e3e6ea}
.st.published{background:#d7f0dc}.st.failed,.st.unconfirmed,.st.held{background:#f9d6d3}
.st.paused,.st.skipped{background:#fbe9c6}
.post{border-top:2px solid var(--line);margin-top:1.2rem;padding-top:.4rem}
.post:target{background:#fffbe6}
@media (max-width:700px){.week{grid-template-columns:1fr}.day{min-height:0}.day.empty{display:none}}
@media print{.post{break-before:auto}.day{break-inside:avoid}}
"""


def _id(post_id: str) -> str:
    # Post ids are letters, digits, "-" and "_" (validated); escaped all the same.
    return "post-" + html.escape(post_id, quote=True)


def _state(day: AccountDay, colour: int) -> str:
    label = html.escape(day.state)
    return (
        f'<span class="chip acc-{colour}">{html.escape(day.account)}</span>'
        f'<span class="st {label}">{label}</span>'
    )


def _status_line(day: AccountDay) -> str:
    words = f"{day.account}: {day.state}"
    if day.reason:
        words += f": {day.reason}"
    link = ""
    if day.url and day.url.startswith(("https://", "http://")):
        href = html.escape(day.url, quote=True)
        link = f' · <a href="{href}" rel="noreferrer">{html.escape(day.url)}</a>'
    return f'<p class="state st-{html.escape(day.state)}">{html.escape(words)}{link}</p>'


def _entry_link(entry: CalendarEntry, colours: dict[str, int]) -> str:
    css = "entry held" if entry.preview is None else "entry"
    first = colours.get(entry.accounts[0].account, 0) if entry.accounts else 0
    chips = "".join(_state(d, colours.get(d.account, 0)) for d in entry.accounts)
    return (
        f'<a class="{css} acc-{first}" href="#{_id(entry.post_id)}" '
        f'data-post="{html.escape(entry.post_id, quote=True)}" '
        f'data-when="{entry.when.isoformat()}">'
        f'<span class="t">{entry.when.strftime("%H:%M")}</span> '
        f"{html.escape(entry.post_id)}<br>{html.escape(entry.words)}<br>{chips}</a>"
    )


def calendar_page(cal: Calendar, *, title: str, today: dt.date) -> str:
    colours = {name: i % 10 for i, name in enumerate(cal.accounts)}
    out = [page_head(title, CSS), f"<h1>{html.escape(title)}</h1>"]
    last = cal.start + dt.timedelta(days=cal.days - 1)
    zone = html.escape(str(cal.zone))
    out.append(f'<p class="muted">{cal.start:%d %b %Y} – {last:%d %b %Y}, times in {zone}</p>')
    for p in cal.pauses:
        scope = html.escape(p.account or "all accounts")
        until = f"until {p.until.astimezone(cal.zone):%d %b %H:%M}" if p.until else "until resumed"
        why = f": {html.escape(p.reason)}" if p.reason else ""
        out.append(f'<p class="banner">PAUSED: {scope} {until}{why}</p>')
    legend = "".join(
        f'<span class="chip acc-{colours[a]}">{html.escape(a)}</span>' for a in cal.accounts
    )
    out.append(f'<div class="legend">{legend}</div>')
    by_day: dict[dt.date, list[CalendarEntry]] = {}
    for entry in cal.entries:
        by_day.setdefault(entry.when.date(), []).append(entry)
    for week in range(cal.days // 7):
        out.append('<div class="week">')
        for n in range(7):
            day = cal.start + dt.timedelta(days=week * 7 + n)
            entries = by_day.get(day, [])
            css = "day" + (" today" if day == today else "") + ("" if entries else " empty")
            out.append(f'<div class="{css}" data-date="{day.isoformat()}">')
            out.append(f"<h3>{day:%a %d %b}</h3>")
            out += [_entry_link(e, colours) for e in entries]
            out.append("</div>")
        out.append("</div>")
    if not cal.entries:
        out.append('<p class="muted">Nothing is due in these weeks.</p>')
    for entry in cal.entries:
        out.append(f'<section class="post" id="{_id(entry.post_id)}">')
        out.append(
            f"<h2>{html.escape(entry.post_id)} <small>{entry.when:%a %d %b %Y %H:%M %Z}"
            f" · {html.escape(entry.where)}</small></h2>"
        )
        if entry.preview is None:
            out.append("<p>Held: its file has errors, so it is not sent until they are fixed.</p>")
            out.append(findings_html(entry.errors))
            out += [_status_line(d) for d in entry.accounts]
        else:
            states = {d.account: d for d in entry.accounts}
            for view in entry.preview.accounts:
                known = states.get(view.rendering.account)
                out.append(mockup(view, status=_status_line(known) if known else ""))
        out.append("</section>")
    if cal.held:
        out.append("<h2>Held: files with errors</h2>")
        out += [
            f'<p class="finding">{html.escape(f.location())}: {html.escape(f.message)}</p>'
            for f in cal.held
        ]
    if cal.drafts:
        drafts = ", ".join(html.escape(d) for d in cal.drafts)
        out.append(f'<h2>Drafts</h2><p class="muted">never published: {drafts}</p>')
    return "\n".join(out) + "\n"
