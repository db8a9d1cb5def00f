"""The drill report as one static HTML page (no scripts): figures, expectations, charts, recipients, timeline."""

from __future__ import annotations

from html import escape
from typing import Any

from yujing.model import local_time

from simulators.report.timeline import Kind, Timeline

CSS = """
body{font-family:system-ui,-apple-system,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:24px;color:#111827}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb}
.sub{color:#4b5563;font-size:13px} .figs{display:flex;flex-wrap:wrap;gap:10px;margin-top:10px}
.fig{border:1px solid #e5e7eb;border-radius:6px;padding:8px 12px;min-width:150px}
.fig b{display:block;font-size:20px} .fig span{font-size:12px;color:#6b7280}
table{border-collapse:collapse;font-size:12.5px;width:100%} td,th{border-bottom:1px solid #f3f4f6;padding:3px 6px;
text-align:left;vertical-align:top} th{background:#f9fafb} .ok{color:#15803d;font-weight:600}
.bad{color:#b91c1c;font-weight:600} .lvl{display:inline-block;padding:0 6px;border-radius:3px;color:#fff}
.blue{background:#2563eb}.yellow{background:#ca8a04}.orange{background:#ea580c}.red{background:#dc2626}
.charts img{width:640px;max-width:100%;margin:4px 8px 4px 0;border:1px solid #e5e7eb}
.k-warning{background:#fff7ed}.k-confirmation{background:#f0fdf4}.k-escalation,.k-unanswered{background:#fef2f2}
.k-fault,.k-status{background:#f5f3ff} .note{background:#fffbeb;border:1px solid #fde68a;padding:6px 10px}
"""


def _ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.3f}"


def _fmt_s(v: Any) -> str:
    if v is None:
        return "—"
    v = float(v)
    return f"{v / 60:.1f} min" if v >= 120 else f"{v:.0f} s"


def _pct(v: Any) -> str:
    return "—" if v is None else f"{100 * v:.0f} %"


def _lvl(level: str | None) -> str:
    return f'<span class="lvl {escape(level)}">{escape(level)}</span>' if level else ""


UNTOLD_ROWS = 200  # a red names whole villages of households: the rest are counted, not listed


def _untold(tl: Timeline) -> str:
    """The people the real warnings named who do not take part: the drill did not contact them."""
    people = sorted(tl.would_have_been_told.values(), key=lambda r: (r.first_told_t or 0, r.tier, r.phone))
    p = [f"<h2>Would have been told 未参演人员 — {len(people)}</h2><p class='sub'>The real warning (or its "
         "escalation) would also have reached these people; they do not take part in this drill, so nothing was "
         "sent to them.</p>"]
    if not people:
        return p[0] + "<p>Nobody: everyone the real routing names takes part.</p>"
    p.append("<table><tr><th>person</th><th>role</th><th>area</th><th>first at</th><th>would get</th>"
             "<th>asked to confirm</th></tr>")
    for r in people[:UNTOLD_ROWS]:
        would = ", ".join(x for x in (f"{r.messages} SMS" if r.messages else "",
                                      f"{r.calls} calls" if r.calls else "") if x)
        p.append(f"<tr><td>{escape(r.name)} <span class='sub'>{escape(r.phone)}</span></td><td>{escape(r.role)}</td>"
                 f"<td>{escape(r.area)}</td><td>{_fmt_s(r.first_told_t)}</td><td>{escape(would)}</td>"
                 f"<td>{'yes' if r.asked_t is not None else 'no'}</td></tr>")
    if len(people) > UNTOLD_ROWS:
        p.append(f"<tr><td colspan='6'>… and {len(people) - UNTOLD_ROWS} more (all in report.json)</td></tr>")
    p.append("</table>")
    return "".join(p)


def render(tl: Timeline, figs: dict[str, Any], expectations: list[dict[str, Any]], charts: dict[str, str]) -> str:
    scn = tl.scenario
    passed = all(e["met"] for e in expectations)
    p: list[str] = [
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>",
        f"<title>演练报告 Drill report — {escape(scn.get('name', ''))}</title><style>{CSS}</style></head><body>",
        f"<h1>演练报告 Drill report: {escape(scn.get('name', ''))}</h1>",
        f"<div class='sub'>{escape(tl.deployment)} · started {escape(local_time(tl.started_at))} (Beijing time, "
        f"scenario clock) · {tl.ended_t / 3600:.1f} h of scenario at speed {tl.speed:g} · DRILL 演练, "
        f"every message drill-marked</div>",
        f"<p>{escape(scn.get('description', ''))}</p>",
    ]
    for n in tl.notes:
        p.append(f"<p class='note'>{escape(n)}</p>")
    p.append("<h2>Figures 演练指标</h2><div class='figs'>")
    for label, value in [
        ("trigger → first notification", _fmt_s(figs["trigger_to_first_notification_s"])),
        ("trigger → every household", _fmt_s(figs["trigger_to_every_household_s"])),
        ("household warning → every household", _fmt_s(figs["household_warning_to_every_household_s"])),
        ("bound the provider's limits impose", _fmt_s(figs["limits_bound_s"])),
        ("measured / bound", _ratio(figs["household_to_bound_ratio"])),
        ("confirmed within 5 min", _pct(figs["confirmed_within_5_min"])),
        ("confirmed within 15 min", _pct(figs["confirmed_within_15_min"])),
        ("warnings issued", figs["warnings_issued"]),
        ("highest level", figs["highest_level"] or "—"),
        ("people told", figs["people_told"]),
        ("would have been told (not taking part)", figs["would_have_been_told"]),
        ("households told", figs["households_told"]),
        ("never confirmed", figs["never_confirmed"]),
        ("escalations", figs["escalations"]),
    ]:
        p.append(f"<div class='fig'><b>{escape(str(value))}</b><span>{escape(label)}</span></div>")
    p.append("</div>")
    p.append(f"<h2>Expectations 预期 — <span class='{'ok' if passed else 'bad'}'>"
             f"{'all met' if passed else 'NOT all met'}</span></h2><table><tr><th>expected</th><th>met</th>"
             "<th>at</th><th>evidence</th></tr>")
    for e in expectations:
        p.append(f"<tr><td>{escape(e['expect'])}</td><td class='{'ok' if e['met'] else 'bad'}'>"
                 f"{'yes' if e['met'] else 'NO'}</td><td>{_fmt_s(e['t'])}</td><td>{escape(e['detail'])}</td></tr>")
    p.append("</table>")
    p.append("<h2>Charts 监测曲线 (warning levels shaded)</h2><div class='charts'>")
    for site_id, rel in charts.items():
        name = tl.sites.get(site_id, {}).get("name", "")
        p.append(f"<figure style='display:inline-block;margin:0'><img src='{escape(rel)}' alt='{escape(site_id)}'>"
                 f"<figcaption class='sub'>{escape(site_id)} {escape(name)}</figcaption></figure>")
    p.append("</div>")
    p.append("<h2>Who was told what, and when 通知与叫应</h2><table><tr><th>person</th><th>role</th><th>area</th>"
             "<th>first told</th><th>SMS</th><th>calls</th><th>confirmed</th><th>warnings</th></tr>")
    for r in sorted(tl.recipients.values(), key=lambda r: (r.first_told_t is None, r.first_told_t or 0, r.phone)):
        if r.first_told_t is None:
            continue
        if r.confirmed_t is not None:
            asked = r.asked_t if r.asked_t is not None else r.first_told_t
            conf = f"<span class='ok'>{_fmt_s(r.confirmed_t - asked)} after the ask ({escape(r.confirmed_via)})</span>"
        elif r.asked_to_confirm:
            conf = "<span class='bad'>never</span>"
        else:
            conf = "not asked"
        p.append(f"<tr><td>{escape(r.name)} <span class='sub'>{escape(r.phone)}</span></td><td>{escape(r.role)}</td>"
                 f"<td>{escape(r.area)}</td><td>{_fmt_s(r.first_told_t)}</td><td>{r.messages}</td><td>{r.calls}</td>"
                 f"<td>{conf}</td><td>{escape(', '.join(r.warnings[:4]))}</td></tr>")
    p.append("</table>")
    p.append(_untold(tl))
    p.append("<h2>Timeline 时间线</h2><table><tr><th>t</th><th>time</th><th>kind</th><th>what</th></tr>")
    for e in tl.sorted_events():
        lvl = _lvl(e.data.get("level")) if e.kind is Kind.WARNING else ""
        p.append(f"<tr class='k-{e.kind.value}'><td>{_fmt_s(e.t)}</td><td>{escape(local_time(tl.at(e.t)))}</td>"
                 f"<td>{e.kind.value}</td><td>{lvl} {escape(e.summary)}</td></tr>")
    p.append("</table></body></html>")
    return "\n".join(p)
