"""The dashboard's HTML, from the management API's JSON (never from the stores). Server-rendered:
one small stylesheet inline, the charts inline SVG (charts.py), no script, nothing fetched from
elsewhere, so the page works offline and its Content-Security-Policy can forbid everything else."""

from __future__ import annotations

import json
from html import escape
from urllib.parse import quote, urlencode

from .charts import heatmap, intervals, line_chart, sparkline

#: the page may load nothing at all: no script, no remote style, font or image
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2937;background:#f8fafc}
header{background:#1e3a8a;color:#fff;padding:10px 24px}header a{color:#fff;margin-right:16px;text-decoration:none}
header strong{margin-right:24px}main{padding:16px 24px;max-width:1280px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:12px 16px;margin-bottom:16px}
h1{font-size:20px;margin:4px 0 12px}h2{font-size:16px;margin:0 0 8px}h3{font-size:14px;margin:12px 0 4px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #f1f5f9;
vertical-align:middle}th{font-weight:600;color:#475569;font-size:12px}td.n,th.n{text-align:right;
font-variant-numeric:tabular-nums}.muted{color:#94a3b8}.warn{color:#b45309}.badge{display:inline-block;
background:#fef3c7;color:#92400e;border-radius:8px;padding:0 6px;font-size:11px;margin-left:4px}
.axis{font-size:10px;fill:#475569}.cellnum{font-size:9px}pre{background:#f1f5f9;padding:8px;overflow:auto}
ul.warnings li{margin:2px 0}.error{background:#fee2e2;border-color:#fca5a5}.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.verdict{font-weight:600}form{margin:8px 0}summary{cursor:pointer;color:#475569}tr.focus{background:#eff6ff}input{padding:3px 6px}a{color:#1d4ed8}
"""


def e(value) -> str:
    """Escaped text of any value (None shows as a dash)."""
    return "–" if value is None else escape(str(value), quote=True)


def pct(value) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def rate_cell(rate: dict | None) -> str:
    rate = rate or {}
    ci = rate.get("ci95")
    tip = f' title="95% interval {pct(ci[0])} to {pct(ci[1])}"' if ci else ""
    return f'<td class="n"{tip}>{pct(rate.get("value"))}</td>'


def segment_href(segment_id: str) -> str:
    return f"/dashboard/segments/{quote(segment_id, safe='')}"


def page(title: str, body: str, origin: str = "") -> str:
    where = f' <span class="muted">{e(origin)}</span>' if origin else ""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)} · segments dashboard</title><link rel=\"icon\" href=\"data:,\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><style>{STYLE}</style></head><body>"
            f"<header><strong>Segments dashboard</strong><a href=\"/dashboard\">Segments</a>"
            f"<a href=\"/dashboard#overlap\">Overlap</a><a href=\"/dashboard#experiments\">Experiments</a>"
            f"<a href=\"/dashboard#cohorts\">Cohorts</a>{where}</header><main>{body}</main></body></html>\n")


def error_page(message: str, origin: str = "") -> str:
    return page("Error", f'<section class="error"><h2>The API could not be read</h2><p>{e(message)}</p></section>',
                origin)


def _period_form(since: str | None, until: str | None, extra: dict | None = None) -> str:
    hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in (extra or {}).items() if v)
    return (f'<form method="get">{hidden}From <input type="date" name="from" value="{e(since or "")}"> '
            f'to <input type="date" name="to" value="{e(until or "")}"> <button>Show</button></form>')


def warnings_list(warnings: list[dict]) -> str:
    if not warnings:
        return '<p class="muted">No health warnings.</p>'
    items = "".join(f'<li class="warning"><span class="badge">{e(w.get("kind"))}</span> {e(w.get("message"))}</li>'
                    for w in warnings)
    return f'<ul class="warnings">{items}</ul>'


def segments_table(segments: list[dict], metrics: dict | None, warnings: list[dict]) -> str:
    """One row per segment: size, trend, entered/exited, KPIs and its warnings."""
    rows_by_id = {r["segment_id"]: r for r in (metrics or {}).get("segments", [])}
    flagged: dict[str, list[str]] = {}
    for w in warnings:
        for sid in w.get("segments") or []:
            flagged.setdefault(sid, []).append(str(w.get("kind")))
    head = ("<tr><th>Segment</th><th class=\"n\">Size</th><th>Trend</th><th class=\"n\">Entered</th>"
            "<th class=\"n\">Exited</th><th class=\"n\">Delivered</th><th class=\"n\">Open rate</th>"
            "<th class=\"n\">Click rate</th><th class=\"n\">Unsubscribe rate</th><th class=\"n\">Conversion rate</th>"
            "<th class=\"n\">Revenue</th></tr>")
    rows = []
    for seg in segments:
        m = rows_by_id.get(seg["id"], {})
        totals, rates = m.get("totals") or {}, m.get("rates") or {}
        badges = "".join(f'<span class="badge">{e(k)}</span>' for k in flagged.get(seg["id"], []))
        name = seg.get("name") or seg["id"]
        rows.append(
            f'<tr class="segment-row" data-segment="{e(seg["id"])}"><td><a href="{e(segment_href(seg["id"]))}">'
            f'{e(name)}</a>{badges}<br><span class="muted">{e(seg["id"])}</span></td>'
            f'<td class="n">{e(seg.get("size"))}</td>'
            f'<td>{sparkline(m.get("members") or [], label="members per day")}</td>'
            f'<td class="n">{e(totals.get("entered"))}</td><td class="n">{e(totals.get("exited"))}</td>'
            f'<td class="n">{e(totals.get("delivered"))}</td>{rate_cell(rates.get("open_rate"))}'
            f'{rate_cell(rates.get("click_rate"))}{rate_cell(rates.get("unsubscribe_rate"))}'
            f'{rate_cell(rates.get("conversion_rate"))}<td class="n">{e(totals.get("revenue"))}</td></tr>')
    if not rows:
        return '<p class="muted">No segments.</p>'
    return f'<table class="segments">{head}{"".join(rows)}</table>'


def experiments_section(data: dict | None) -> str:
    experiments = (data or {}).get("experiments") or []
    if not experiments:
        return '<p class="muted">No experiments declared.</p>'
    out = []
    for x in experiments:
        arms = x.get("arms") or []
        diff = x.get("difference") or {}
        arm_rows = "".join(
            f'<tr><td>{e(a.get("variant"))}</td><td>{e(a.get("segment_id"))}</td><td class="n">{e(a.get("size"))}</td>'
            f'<td class="n">{e(a.get("successes"))} / {e(a.get("trials"))}</td><td class="n">{pct(a.get("rate"))}</td>'
            f'<td class="n">{_ci(a.get("ci95"))}</td></tr>' for a in arms)
        bounds = [v for a in arms for v in (a.get("ci95") or [])] + [a["rate"] for a in arms if a.get("rate") is not None]
        arm_chart = intervals([(f'arm {a.get("variant")}', a.get("rate"), a.get("ci95")) for a in arms],
                              0.0, min(1.0, max(bounds, default=0.1) * 1.2 or 0.1), f'{x.get("metric")} per arm')
        dci = diff.get("ci95")
        reach = max([abs(v) for v in (dci or [])] + [abs(diff["value"]) if diff.get("value") is not None else 0]
                    + [float(x.get("min_detectable_effect") or 0)]) or 0.05
        diff_chart = intervals([("b − a", diff.get("value"), dci)], -reach * 1.2, reach * 1.2,
                               "difference between the arms, with its 95% interval", zero=True)
        needed = x.get("needed_per_arm")
        out.append(
            f'<div class="experiment" data-experiment="{e(x.get("id"))}"><h3>{e(x.get("name") or x.get("id"))}'
            f' <span class="muted">({e(x.get("id"))}, metric {e(x.get("metric"))}, split {e(x.get("split"))})</span></h3>'
            f'<p>{e(x.get("description") or "")}</p>'
            f'<table><tr><th>Arm</th><th>Segment</th><th class="n">Size</th><th class="n">Successes / trials</th>'
            f'<th class="n">Rate</th><th class="n">95% interval</th></tr>{arm_rows}</table>'
            f'<div class="charts">{arm_chart}{diff_chart}</div>'
            f'<p>Difference {_signed(diff.get("value"))} (95% interval {_ci(dci, signed=True)}), '
            f'p-value {e(_fmt_p(x.get("p_value")))}; minimum detectable effect {pct(x.get("min_detectable_effect"))} '
            f'at α {e(x.get("alpha"))}, power {e(x.get("power"))}: '
            f'{e(needed) + " per arm needed" if needed is not None else "sample size unknown yet"}.</p>'
            f'<p class="verdict">{e(x.get("verdict_text") or x.get("verdict"))}</p></div>')
    return "".join(out)


def _fmt_p(p) -> str | None:
    return None if p is None else (f"{p:.3f}" if p >= 0.001 else "< 0.001")


def _signed(v) -> str:
    return "–" if v is None else f"{v * 100:+.1f} pts"


def _ci(ci, signed: bool = False) -> str:
    if not ci:
        return "–"
    f = _signed if signed else pct
    return f"{f(ci[0])} to {f(ci[1])}"


def cohorts_section(data: dict | None, segments: list[dict], chosen: str | None) -> str:
    if data is None:
        return '<p class="muted">Cohorts are not available from this API.</p>'
    options = "".join(f'<option value="{e(s["id"])}"{" selected" if s["id"] == chosen else ""}>{e(s["id"])}</option>'
                      for s in segments)
    form = (f'<form method="get" action="/dashboard#cohorts">Members vs non-members of '
            f'<select name="segment"><option value="">(choose a segment)</option>{options}</select> '
            f'<button>Compare</button></form>')
    months = data.get("months") or []
    rows = "".join(f'<tr class="cohort-row"><td>{e(m.get("month"))}</td><td class="n">{e(m.get("customers"))}</td>'
                   f'<td class="n">{pct(m.get("repeat_rate"))}</td><td class="n">{e(m.get("avg_ltv"))}</td></tr>'
                   for m in months)
    table = (f'<table class="cohorts"><tr><th>First order month</th><th class="n">Customers</th>'
             f'<th class="n">Repeat-purchase rate</th><th class="n">Average lifetime value</th></tr>{rows}</table>'
             if rows else '<p class="muted">No customers with orders yet.</p>')
    seg = data.get("segment")
    compare = ""
    if seg:
        compare = "<h3>Members vs non-members of " + e(seg.get("segment_id")) + "</h3><table class=\"cohort-compare\">"
        compare += "<tr><th></th><th class=\"n\">Customers</th><th class=\"n\">Repeat-purchase rate</th>" \
                   "<th class=\"n\">Average lifetime value</th></tr>"
        for label, key in (("members", "members"), ("non-members", "non_members")):
            g = seg.get(key) or {}
            compare += (f'<tr><td>{label}</td><td class="n">{e(g.get("customers"))}</td>'
                        f'<td class="n">{pct(g.get("repeat_rate"))}</td><td class="n">{e(g.get("avg_ltv"))}</td></tr>')
        compare += "</table>"
    return form + table + compare


def overview(segments: dict, metrics: dict | None, overlap: dict | None, experiments: dict | None,
             cohorts: dict | None, chosen_segment: str | None = None, origin: str = "") -> str:
    segs = segments.get("segments") or []
    warnings = segments.get("warnings") or []
    names = {s["id"]: s.get("name") or s["id"] for s in segs}
    since, until = (metrics or {}).get("since"), (metrics or {}).get("until")
    period = f"{e(since)} to {e(until)}" if since else ""
    body = (f'<h1>Segments</h1>'
            f'<section id="warnings"><h2>Health</h2>{warnings_list(warnings)}</section>'
            f'<section id="segments"><h2>Every segment <span class="muted">{period}</span></h2>'
            f'{_period_form(since, until)}{segments_table(segs, metrics, warnings)}</section>'
            f'<section id="overlap"><h2>Overlap</h2><p class="muted">Jaccard index of each pair of segments with '
            f'members (shared members / members of either); above 0.8 they are near duplicates.</p>'
            f'{heatmap((overlap or {}).get("segments") or [], (overlap or {}).get("pairs") or [], names)}</section>'
            f'<section id="experiments"><h2>Experiments</h2>{experiments_section(experiments)}</section>'
            f'<section id="cohorts"><h2>Cohorts</h2>{cohorts_section(cohorts, segs, chosen_segment)}</section>')
    return page("Segments", body, origin)


def _rate_series(days: list[dict], num: str, den: str) -> list[float | None]:
    return [d[num] / d[den] if d.get(den) else None for d in days]


def segment_page(detail: dict, metrics: dict | None, explain: dict | None = None, email: str = "",
                 profile: dict | None = None, origin: str = "", note: str = "") -> str:
    sid = detail["id"]
    days = (metrics or {}).get("days") or []
    labels = [d["day"] for d in days]
    charts = ""
    if days:
        charts = (line_chart(labels, [("members", [d.get("members") for d in days])], "Members at the end of each day")
                  + line_chart(labels, [("open rate", _rate_series(days, "opened", "delivered")),
                                        ("click rate", _rate_series(days, "clicked", "delivered")),
                                        ("conversion rate", _rate_series(days, "conversions", "delivered"))],
                               "Daily rates (of the day's delivered messages)", percent=True)
                  + line_chart(labels, [("entered", [d.get("entered") for d in days]),
                                        ("exited", [d.get("exited") for d in days]),
                                        ("delivered", [d.get("delivered") for d in days])],
                               "Entered, exited and delivered per day"))
    rates = (metrics or {}).get("rates") or {}
    rate_rows = "".join(f'<tr><td>{e(name.replace("_", " "))}</td>{rate_cell(r)}<td class="n">{_ci(r.get("ci95"))}'
                        f'</td></tr>' for name, r in rates.items())
    totals = (metrics or {}).get("totals") or {}
    total_rows = ("<tr>" + "".join(f'<th class="n">{e(k)}</th>' for k in totals) + "</tr><tr>"
                  + "".join(f'<td class="n">{e(v)}</td>' for v in totals.values()) + "</tr>")
    members = ((detail.get("members") or {}).get("profile_ids")) or []
    member_items = "".join(f'<li><a href="{e(segment_href(sid))}?{e(urlencode({"profile": p}))}#explain">{e(p)}</a></li>'
                           for p in members)
    instances = detail.get("instances") or []
    instance_rows = "".join(f'<li><a href="{e(segment_href(i["id"]))}">{e(i["id"])}</a> ({e(i["size"])})</li>'
                            for i in instances)
    since, until = (metrics or {}).get("since"), (metrics or {}).get("until")
    body = (f'<h1>{e(detail.get("name") or sid)} <span class="muted">{e(sid)}</span></h1>'
            f'<section><p>{e(detail.get("description"))}</p><p>Size <strong class="size">{e(detail.get("size"))}'
            f'</strong>; last change {e(detail.get("last_change_at"))}'
            f'{"; family " + e(detail.get("family")) if detail.get("family") else ""}.</p>'
            + (f'<h3>Instances</h3><ul>{instance_rows}</ul>' if instance_rows else "") + "</section>"
            f'<section id="charts"><h2>Over time <span class="muted">{e(since)} to {e(until)}</span></h2>'
            f'{_period_form(since, until)}<div class="charts">{charts or "<p class=muted>No figures.</p>"}</div>'
            f'<h3>Rates of the period</h3><table class="rates"><tr><th>Rate</th><th class="n">Value</th>'
            f'<th class="n">95% interval</th></tr>{rate_rows}</table>'
            f'<h3>Totals</h3><table class="totals">{total_rows}</table></section>'
            f'<section id="definition"><h2>Definition</h2><pre>{e(json.dumps(detail.get("definition"), indent=2))}'
            f'</pre></section>'
            f'<section id="members"><h2>Members <span class="muted">(a sample)</span></h2>'
            f'{"<ul>" + member_items + "</ul>" if member_items else "<p class=muted>No members.</p>"}</section>'
            f'<section id="explain"><h2>Explain a profile</h2>'
            f'<form method="get" action="{e(segment_href(sid))}#explain">Email <input type="email" name="email" '
            f'value="{e(email)}"> <button>Explain</button></form>{_explain(explain, profile, sid, note)}</section>')
    return page(detail.get("name") or sid, body, origin)


def _explain(explain: dict | None, profile: dict | None, focus: str, note: str) -> str:
    if note:
        return f'<p class="warn">{e(note)}</p>'
    if not explain:
        return ""
    rows = []
    for sid, x in sorted(explain.get("segments", {}).items(), key=lambda kv: (kv[0] != focus, kv[0])):
        member = "member" if x.get("member") else "not a member"
        if x.get("excluded_as_suppressed"):
            member += " (suppressed)"
        rows.append(f'<tr{" class=focus" if sid == focus else ""}><td>{e(sid)}</td><td>{e(member)}</td>'
                    f'<td><details{" open" if sid == focus else ""}><summary>conditions</summary>'
                    f'<pre>{e(json.dumps(x.get("condition"), indent=1))}</pre></details></td></tr>')
    who = e((profile or {}).get("email") or explain.get("profile_id"))
    return (f'<p>Profile {who} <span class="muted">{e(explain.get("profile_id"))}</span>, as of {e(explain.get("at"))}'
            f' (catalog {e(explain.get("catalog_version"))}).</p><table class="explain"><tr><th>Segment</th>'
            f'<th>Membership</th><th>Each condition and its value</th></tr>{"".join(rows)}</table>')
