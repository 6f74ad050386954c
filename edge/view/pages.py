"""The view's HTML, rendered on the server from the store's rows: no JavaScript, no build step.

Every view is a plain GET with its state in the URL (`/timeline?device=gate&page=2`,
`/search?q=red`), so a link can be shared and a test can open it. Everything from the broker is
escaped (captions are model output). The layout is one column on a phone and a grid on a desk.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from urllib.parse import quote, urlencode

from edge.consumer.tracker import Gap
from edge.view.store import DeviceRow, EventRow, Filters, ResultRow

PAGE_SIZE = 50

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f5f5f4;color:#1c1917}
header{background:#1c1917;color:#fafaf9;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header a{color:#fafaf9;text-decoration:none;font-weight:600}
header form{margin-left:auto;display:flex;gap:.3rem}
main{padding:1rem;max-width:1200px;margin:auto}
input,select,button{font-size:1rem;padding:.3rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:1rem}
.card{background:#fff;border-radius:8px;padding:.7rem;box-shadow:0 1px 3px #0002}
.card img{width:100%;border-radius:4px;display:block}
.badge{display:inline-block;padding:0 .4rem;border-radius:4px;font-size:.8rem;color:#fff}
.online{background:#15803d}.offline{background:#b91c1c}.paused{background:#a16207}.unknown{background:#78716c}
.row{display:flex;gap:.7rem;background:#fff;border-radius:6px;padding:.5rem;margin:.4rem 0;align-items:flex-start}
.row img{width:120px;border-radius:4px;flex:none}
.row .meta{font-size:.8rem;color:#57534e}
.gap{background:#fee2e2;border:1px dashed #b91c1c}
.event{background:#fef9c3}
.muted{color:#78716c;font-size:.85rem}
.filters{display:flex;flex-wrap:wrap;gap:.4rem;margin:.5rem 0}
pre{white-space:pre-wrap;word-break:break-word;background:#fff;padding:.5rem;border-radius:6px}
nav.pages{margin:1rem 0;display:flex;gap:1rem}
@media (max-width:600px){.row img{width:84px}header form{margin-left:0;width:100%}header input{flex:1}}
"""


def age(ts: float, now: float | None = None) -> str:
    s = max(0.0, (time.time() if now is None else now) - ts)
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    if s < 172800:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} days ago"


def clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def page(title: str, body: str, query: str = "") -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)} · edge view</title><style>{_CSS}</style></head><body>"
        '<header><a href="/">edge view</a><a href="/timeline">Timeline</a>'
        '<form action="/search" method=get role=search>'
        f'<input name=q id=q placeholder="Search captions" value="{escape(query)}" aria-label=Search>'
        "<button>Search</button></form></header>"
        f"<main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )


def _link(path: str, **params: object) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "", 0)}
    return path + ("?" + urlencode(clean) if clean else "")


def device_status(dev: DeviceRow | None) -> str:
    """online / offline / paused / unknown: the LWT first (an offline daemon's state is stale)."""
    if dev is None or dev.status is None:
        return "unknown"
    if dev.status == "offline":
        return "offline"
    if dev.state is not None and dev.state.state == "paused":
        return "paused"
    return "online"


def _badge(status: str) -> str:
    return f'<span class="badge {status}" data-status="{status}">{status}</span>'


def _img(result_id: str, part: int = 0, alt: str = "") -> str:
    return f'<img src="/image/{quote(result_id)}/{part}" alt="{escape(alt)}" loading=lazy>'


def overview(
    cards: Sequence[tuple[str, str, ResultRow | None, ResultRow | None]],
    devices: dict[str, DeviceRow],
    now: float,
) -> str:
    """Per device and camera: the latest picture with its caption and age, status and health."""
    if not cards and not devices:
        return page("Cameras", "<p class=muted>Nothing received yet.</p>")
    out = ["<div class=grid>"]
    seen = set()
    for device, camera, newest, pictured in cards:
        seen.add(device)
        dev = devices.get(device)
        status = device_status(dev)
        shown = pictured if pictured is not None else newest
        out.append(
            f'<section class=card data-device="{escape(device)}" data-camera="{escape(camera)}">'
            f"<h2>{escape(device)} · {escape(camera)} {_badge(status)}</h2>"
        )
        if pictured is not None:
            out.append(
                f'<a href="/result/{quote(pictured.id)}" class=latest-picture data-result="{escape(pictured.id)}">'
                f"{_img(pictured.id, 0, pictured.text)}</a>"
            )
        if shown is not None:
            out.append(
                f'<p class=caption data-result="{escape(shown.id)}">{escape(shown.text)}</p>'
                f"<p class=muted><span class=age>{age(shown.at, now)}</span> · {escape(shown.task)}"
                f' · <a href="{_link("/timeline", device=device, camera=camera)}">timeline</a></p>'
            )
        if newest is not None and pictured is not None and newest.id != pictured.id:
            out.append(f"<p class=muted>newest ({escape(newest.task)}): {escape(newest.text)}</p>")
        out.append(_health(dev) + "</section>")
    for device, dev in sorted(devices.items()):
        if device not in seen:
            out.append(
                f'<section class=card data-device="{escape(device)}"><h2>{escape(device)} '
                f"{_badge(device_status(dev))}</h2><p class=muted>no results yet</p>{_health(dev)}</section>"
            )
    out.append("</div>")
    return page("Cameras", "".join(out))


def _health(dev: DeviceRow | None) -> str:
    if dev is None or dev.health is None:
        return ""
    h = dev.health
    parts = [
        f"up {h.uptime_s / 3600:.1f} h",
        f"jobs {h.jobs}",
        f"failures {h.failures}",
        f"outbox {h.outbox_depth}",
        f"dropped {h.dropped}",
        f"RSS {h.rss_mb:.0f} MB",
    ]
    if h.cpu_temp_c is not None:
        parts.append(f"{h.cpu_temp_c:.0f} °C")
    return f'<p class="muted health">{" · ".join(parts)}</p>'


def _result_row(r: ResultRow, now: float) -> str:
    thumb = f'<a href="/result/{quote(r.id)}">{_img(r.id, 0, r.text)}</a>' if r.images else ""
    return (
        f'<div class="row result" data-result="{escape(r.id)}" data-device="{escape(r.device)}" '
        f'data-camera="{escape(r.camera)}">{thumb}<div>'
        f'<div class=text><a href="/result/{quote(r.id)}">{escape(r.text) or "(empty)"}</a></div>'
        f"<div class=meta>{clock(r.at)} ({age(r.at, now)}) · {escape(r.device)} · {escape(r.camera)}/"
        f"{escape(r.task)} · #{r.seq}</div></div></div>"
    )


def _event_row(e: EventRow, now: float) -> str:
    where = " · ".join(escape(x) for x in (e.camera, e.task) if x)
    return (
        f'<div class="row event" data-event="{escape(e.id)}" data-kind="{escape(e.event)}"><div>'
        f'<div class=text><a href="/event/{quote(e.id)}">event {escape(e.event)}</a>: {escape(e.reason)}</div>'
        f"<div class=meta>{clock(e.at)} ({age(e.at, now)}) · {escape(e.device)} {where}</div></div></div>"
    )


def _gap_row(g: Gap) -> str:
    return (
        f'<div class="row gap" data-gap="{escape(g.device)}:{g.boot}:{g.first}-{g.last}"><div>'
        f"<strong>{g.count} result(s) never received</strong> from {escape(g.device)} "
        f"(boot {g.boot}, seq {g.first}..{g.last})</div></div>"
    )


def rows_with_gaps(
    results: Sequence[ResultRow], events: Sequence[EventRow], gaps: Iterable[Gap], now: float
) -> str:
    """Results and events newest first, each gap right below the result that followed it."""
    after = {(g.device, g.boot, g.last + 1): g for g in gaps}
    items: list[tuple[float, str, str]] = [(r.at, r.id, "r") for r in results]
    items += [(e.at, e.id, "e") for e in events]
    by_id_r = {r.id: r for r in results}
    by_id_e = {e.id: e for e in events}
    out = []
    for _at, key, kind in sorted(items, key=lambda x: (x[0], x[1]), reverse=True):
        if kind == "r":
            r = by_id_r[key]
            out.append(_result_row(r, now))
            gap = after.get((r.device, r.boot, r.seq))
            if gap is not None:
                out.append(_gap_row(gap))
        else:
            out.append(_event_row(by_id_e[key], now))
    return "".join(out) or "<p class=muted>Nothing here.</p>"


def _filter_form(action: str, f: Filters, q: str | None, options: Mapping[str, Sequence[str]]) -> str:
    def select(name: str, current: str) -> str:
        opts = "".join(
            f'<option value="{escape(v)}"{" selected" if v == current else ""}>{escape(v)}</option>'
            for v in options.get(name, ())
        )
        return f'<select name={name} aria-label={name}><option value="">all {name}s</option>{opts}</select>'

    query = f'<input name=q value="{escape(q)}" placeholder="words">' if q is not None else ""
    since = time.strftime("%Y-%m-%dT%H:%M", time.localtime(f.since)) if f.since else ""
    until = time.strftime("%Y-%m-%dT%H:%M", time.localtime(f.until)) if f.until else ""
    return (
        f'<form class=filters action="{action}" method=get>{query}'
        f"{select('device', f.device)}{select('camera', f.camera)}{select('task', f.task)}"
        f'<input type=datetime-local name=since value="{since}" aria-label=since>'
        f'<input type=datetime-local name=until value="{until}" aria-label=until>'
        "<button>Apply</button></form>"
    )


def _pager(path: str, number: int, full: bool, **params: object) -> str:
    links = []
    if number > 0:
        links.append(f'<a rel=prev href="{escape(_link(path, **params, page=number - 1))}">newer</a>')
    if full:
        links.append(f'<a rel=next href="{escape(_link(path, **params, page=number + 1))}">older</a>')
    return f"<nav class=pages>{''.join(links)}</nav>"


def _filter_params(f: Filters) -> dict[str, object]:
    fmt = "%Y-%m-%dT%H:%M"
    return {
        "device": f.device,
        "camera": f.camera,
        "task": f.task,
        "since": time.strftime(fmt, time.localtime(f.since)) if f.since else "",
        "until": time.strftime(fmt, time.localtime(f.until)) if f.until else "",
    }


def timeline(
    results: Sequence[ResultRow],
    events: Sequence[EventRow],
    gaps: Iterable[Gap],
    f: Filters,
    number: int,
    options: Mapping[str, Sequence[str]],
    now: float,
) -> str:
    body = _filter_form("/timeline", f, None, options) + rows_with_gaps(results, events, gaps, now)
    body += _pager("/timeline", number, len(results) == PAGE_SIZE, **_filter_params(f))
    return page("Timeline", body)


def search(
    q: str,
    results: Sequence[ResultRow],
    f: Filters,
    number: int,
    options: Mapping[str, Sequence[str]],
    now: float,
) -> str:
    head = _filter_form("/search", f, q, options)
    if not q.strip():
        return page("Search", head + "<p class=muted>Type words that a caption or answer holds.</p>", q)
    found = f"<p class=muted id=found>{len(results)}{'+' if len(results) == PAGE_SIZE else ''} result(s) for “{escape(q)}”</p>"
    rows = "".join(_result_row(r, now) for r in results) or "<p class=muted>No result holds these words.</p>"
    pager = _pager("/search", number, len(results) == PAGE_SIZE, q=q, **_filter_params(f))
    return page(f"Search: {q}", head + found + rows + pager, q)


def result(r: ResultRow, now: float) -> str:
    payload = r.result()
    pictures = "".join(
        f'<figure><a href="/image/{quote(r.id)}/{part}">{_img(r.id, part, r.text)}</a>'
        f"<figcaption class=muted>{'first' if part == 0 else 'last'} key frame</figcaption></figure>"
        if r.images > 1
        else f'<figure><a href="/image/{quote(r.id)}/{part}">{_img(r.id, part, r.text)}</a></figure>'
        for part in range(r.images)
    )
    changed = "<h2>What changed</h2>" if r.images > 1 else ""
    data = (
        f"<h2>Answer</h2><pre>{escape(json.dumps(payload.data, indent=2))}</pre>"
        if payload.data is not None
        else ""
    )
    body = (
        f'<div class=card data-result="{escape(r.id)}">{pictures}{changed}'
        f"<p class=caption>{escape(r.text)}</p>"
        f"<p class=muted>{clock(r.at)} ({age(r.at, now)}) · {escape(r.device)} · {escape(r.camera)}/"
        f"{escape(r.task)} · #{r.seq} · {escape(payload.model.name)} ({escape(payload.model.backend)})"
        f" · {payload.stats.new_tokens} tokens in {payload.stats.total_ms:.0f} ms</p>{data}"
        f"<details><summary>payload</summary><pre>{escape(json.dumps(json.loads(r.payload), indent=2))}</pre>"
        f"</details></div>"
    )
    return page(f"{r.camera}/{r.task} #{r.seq}", body)


def event(e: EventRow, now: float) -> str:
    body = (
        f'<div class=card data-event="{escape(e.id)}"><p><strong>{escape(e.event)}</strong>: {escape(e.reason)}</p>'
        f"<p class=muted>{clock(e.at)} ({age(e.at, now)}) · {escape(e.device)}</p>"
        f"<pre>{escape(json.dumps(json.loads(e.payload), indent=2))}</pre></div>"
    )
    return page(f"Event {e.event}", body)


def not_found(what: str) -> str:
    return page("Not found", f"<p>{escape(what)}</p>")
