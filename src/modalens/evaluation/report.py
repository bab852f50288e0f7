"""A self-contained HTML report from ``results.json``: tables, plots and example images, all inline.

One file, no scripts, no external requests: plots are PNG data URIs drawn
with matplotlib, product photos are small JPEG/PNG thumbnails embedded the
same way (within a byte budget so a report stays a few MB at most).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from typing import Any, Sequence

from . import plots

TASK_TITLES = {
    "retrieval": "Text ↔ image retrieval",
    "zero-shot": "Zero-shot classification",
    "category-retrieval": "Category → product retrieval",
    "image-retrieval": "Image → image retrieval",
    "knn": "k-NN classification",
    "linear-probe": "Linear probe",
    "templates": "Which prompt templates help",
    "composition": "Composition (attributes bound to garments, layout)",
}

CSS = """
:root{--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f8fafc;--blue:#2563eb;--green:#16a34a;--red:#dc2626;--card:#fff}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--ink);background:var(--bg)}
header{background:linear-gradient(120deg,#1e3a8a,#2563eb);color:#fff;padding:28px 40px 22px}
header h1{margin:0 0 6px;font-size:26px;font-weight:700;letter-spacing:-.01em}
header .sub{opacity:.9;font-size:15px}
.chips{margin-top:12px;display:flex;flex-wrap:wrap;gap:8px}
.chip{background:rgba(255,255,255,.16);border-radius:999px;padding:3px 11px;font-size:12.5px}
nav{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid var(--line);padding:8px 40px;display:flex;gap:18px;flex-wrap:wrap;font-size:13px}
nav a{color:var(--blue);text-decoration:none}
main{max-width:1180px;margin:0 auto;padding:20px 40px 60px}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 22px;margin:18px 0;box-shadow:0 1px 2px rgba(0,0,0,.03)}
h2{margin:0 0 10px;font-size:19px}
h3{margin:18px 0 8px;font-size:15px;color:#1f2937}
p.note,.note{color:var(--muted);font-size:12.5px;margin:6px 0}
ul.takeaways{margin:6px 0 4px;padding-left:20px}
ul.takeaways li{margin:3px 0}
table{border-collapse:collapse;width:100%;margin:8px 0 6px;font-size:13px}
th,td{padding:6px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
table.nums th:not(:first-child){text-align:right}
th{background:#f1f5f9;font-weight:600;font-size:12.5px;color:#374151}
td.num{font-variant-numeric:tabular-nums;text-align:right;white-space:nowrap}
td.big{font-weight:700;font-size:14px}
.ci{color:var(--muted);font-size:11.5px;white-space:nowrap;font-weight:400}
td .v{font-weight:700;font-size:14px}
.cibar{position:relative;width:150px;height:10px;background:#eef2f7;border-radius:5px}
.cibar .r{position:absolute;top:0;height:10px;background:#bfdbfe;border-radius:5px}
.cibar .p{position:absolute;top:-2px;width:3px;height:14px;background:var(--blue);border-radius:2px}
.sig{white-space:nowrap;font-weight:700;border-radius:5px;padding:1px 7px;font-size:12px}
.sig.up{background:#dcfce7;color:#166534}.sig.down{background:#fee2e2;color:#991b1b}.sig.same{background:#f3f4f6;color:#4b5563}
.figs{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.figs img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:8px;background:#fff}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.card{width:132px;border:2px solid var(--line);border-radius:9px;padding:6px;background:#fff;font-size:11.5px;line-height:1.3}
.card.ok{border-color:#86efac}.card.bad{border-color:#fca5a5}
.card .t{width:116px;height:116px;display:flex;align-items:center;justify-content:center;background:#fff;margin-bottom:4px}
.card .t img{max-width:116px;max-height:116px}
.card .cap{overflow-wrap:anywhere}
img.px{image-rendering:pixelated;width:100px;height:100px}
.rowex{display:flex;gap:10px;align-items:center;border-top:1px dashed var(--line);padding:9px 0;flex-wrap:wrap}
.rowex .q{width:220px;font-size:13px;font-weight:600}
.rowex .q .rk{display:inline-block;margin-top:3px;font-weight:600;font-size:11.5px;border-radius:5px;padding:0 6px}
.rk.hit{background:#dcfce7;color:#166534}.rk.miss{background:#fee2e2;color:#991b1b}
.mini{width:84px;text-align:center;font-size:10.5px;color:var(--muted);overflow-wrap:anywhere}
.mini .t{width:84px;height:84px;display:flex;align-items:center;justify-content:center;border:3px solid var(--line);border-radius:8px;background:#fff}
.mini .t img{max-width:76px;max-height:76px}
.mini.rel .t{border-color:var(--green)}.mini.irr .t{border-color:#fca5a5}
.mini.exp .t{border-style:dashed;border-color:var(--blue)}
.texts{font-size:12.5px}.texts div{margin:2px 0}.texts .y{color:var(--green)}.texts .n{color:var(--red)}
.noimg{color:var(--muted);font-size:11px}
details{margin:10px 0}summary{cursor:pointer;font-weight:600;color:#1f2937}
pre{background:#f1f5f9;border-radius:8px;padding:10px;font-size:12px;overflow:auto}

.exlabel{font-weight:700;font-size:12px;text-transform:uppercase;letter-spacing:.05em;margin:10px 0 6px}.exlabel.ok{color:var(--green)}.exlabel.bad{color:var(--red)}
footer{color:var(--muted);font-size:12px;text-align:center;padding:20px}
@media (max-width:700px){header{padding:18px 14px 14px}header h1{font-size:21px}nav{padding:8px 14px;gap:10px}
main{padding:10px 10px 40px}section{padding:12px;margin:12px 0}table{display:block;overflow-x:auto;max-width:100%}
.rowex .q{width:100%}pre{white-space:pre-wrap;overflow-wrap:anywhere}}
"""


# ---------------------------------------------------------------- formatting helpers


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ci(ci: Sequence[float] | None, digits: int = 3) -> str:
    if not ci or any(c is None or not math.isfinite(c) for c in ci):
        return ""
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def ci_bar(value: float | None, ci: Sequence[float] | None) -> str:
    """A small 0–1 scale with the interval shaded and the point marked (only for metrics in [0, 1])."""
    if value is None or not ci or not all(0 <= (c or 0) <= 1.0001 for c in [value, *ci]):
        return ""
    lo, hi = ci
    return (
        f'<div class="cibar" title="95% interval {fmt_ci(ci)}"><div class="r" style="left:{lo * 100:.1f}%;width:{max(0.6, (hi - lo) * 100):.1f}%"></div>'
        f'<div class="p" style="left:calc({value * 100:.1f}% - 1px)"></div></div>'
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def num(value: Any, digits: int = 3, big: bool = False) -> str:
    return f'<td class="num{" big" if big else ""}">{fmt(value, digits)}</td>'


def metric_cells(group: dict[str, Any], name: str) -> str:
    """One cell: the value, its 95% interval under it."""
    ci = (group.get("ci") or {}).get(name)
    return f'<td class="num"><span class="v">{fmt(group.get(name))}</span><div class="ci">{fmt_ci(ci)}</div></td>'


def figure(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{esc(alt)}">' if uri else ""


LEGEND = (
    '<p class="note">Frames: green, relevant; red, not relevant; dashed blue: the right one, when it is not in the top 5.</p>'
)


# ---------------------------------------------------------------- thumbnails


class Thumbnails:
    """Product photos as small inline images, within a byte budget for everything the page embeds.

    A photo shown twice is embedded twice (a data URI cannot be shared without scripts), so the budget
    counts every use; past it, photos become a "no image" placeholder.
    """

    def __init__(self, size: int = 116, budget_bytes: int = 2_000_000) -> None:
        self.size, self.budget, self.used = size, budget_bytes, 0
        self._cache: dict[str, str | None] = {}

    def uri(self, path: str | None) -> str | None:
        if not path:
            return None
        if path not in self._cache:
            try:
                self._cache[path] = self._encode(path)
            except Exception:  # an unreadable photo costs a placeholder, never the report
                self._cache[path] = None
        return self._cache[path]

    def _encode(self, path: str) -> str:
        from ..catalog import load_image

        image = load_image(path)
        small = max(image.size) <= 48
        if not small:
            image.thumbnail((self.size, self.size))
        buf = io.BytesIO()
        if small:  # Fashion-MNIST-like: keep the pixels, the browser scales them up crisply
            image.convert("L").save(buf, format="PNG", optimize=True)
            mime = "image/png"
        else:
            image.convert("RGB").save(buf, format="JPEG", quality=72, optimize=True)
            mime = "image/jpeg"
        return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")

    def img(self, path: str | None, alt: str) -> str:
        uri = self.uri(path) if self.used < self.budget else None
        if not uri or self.used + len(uri) > self.budget:
            return '<span class="noimg">no image</span>'
        self.used += len(uri)
        pixelated = ' class="px"' if uri.startswith("data:image/png") else ""
        return f'<img{pixelated} src="{uri}" alt="{esc(alt)}">'


def mini(thumbs: Thumbnails, item: dict[str, Any], caption: str, state: str) -> str:
    return f'<div class="mini {state}"><div class="t">{thumbs.img(item.get("image"), item.get("title") or item.get("id", ""))}</div>{esc(caption)}</div>'


# ---------------------------------------------------------------- sections


def _summary_section(results: dict[str, Any]) -> str:
    rows = []
    for row in results.get("headline", []):
        sizes = ""
        if row.get("n") is not None:
            sizes = f"{row['n']} queries" if row.get("gallery") is not None else f"n = {row['n']}"
        if row.get("gallery") is not None:
            sizes += f", gallery {row['gallery']}"
        rows.append(
            [
                f"<td>{esc(row['label'])}</td>",
                num(row["value"], big=True),
                f'<td class="ci">{fmt_ci(row.get("ci"))}</td>',
                f"<td>{ci_bar(row['value'], row.get('ci'))}</td>",
                f'<td class="note">{esc(sizes)}</td>',
            ]  # fmt: skip
        )
    level = int(round(100 * results.get("settings", {}).get("confidence", 0.95)))
    out = ['<section id="summary"><h2>At a glance</h2>']
    takeaways = _takeaways(results)
    if takeaways:
        out.append('<ul class="takeaways">' + "".join(f"<li>{t}</li>" for t in takeaways) + "</ul>")
    out.append(table(["metric", "value", f"{level}% interval", "", "examples"], rows))
    out.append(
        f'<p class="note">Intervals: percentile bootstrap over queries / examples, {results.get("settings", {}).get("resamples", "?")} '
        f"resamples, seed {results.get('settings', {}).get('seed', '?')}. Retrieval metrics are printed with their gallery size: "
        "a metric means little without it.</p></section>"
    )
    return "".join(out)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _pct_ci(ci: Sequence[float] | None) -> str:
    return f" (95% CI {100 * ci[0]:.1f}–{100 * ci[1]:.1f}%)" if ci and all(c is not None and math.isfinite(c) for c in ci) else ""


def _takeaways(results: dict[str, Any]) -> list[str]:
    """A few sentences a person reads first."""
    out = []
    r = results.get("retrieval")
    if r:
        t2i = r["text_to_image"]
        out.append(
            f"Searching by the product's {esc(r.get('text_field', 'title'))}, the right photo comes first <b>{_pct(t2i['R@1'])}</b>"
            f"{_pct_ci(t2i.get('ci', {}).get('R@1'))} of the time and is in the top 10 {_pct(t2i['R@10'])}, among {t2i['gallery']} photos."
        )
    z = results.get("zero-shot")
    if z:
        e, s = z["ensemble"], z["single_prompt"]
        text = (
            f"Zero-shot {esc(z.get('field', '').replace('_', ' '))} over {e['labels']} labels: top-1 <b>{_pct(e['accuracy'])}</b>{_pct_ci(e.get('ci', {}).get('accuracy'))}, "
            f"top-5 {_pct(e.get('top5_accuracy'))}; weighted F1 {fmt(e['weighted_f1'])} with the prompt ensemble, {fmt(s['weighted_f1'])} with one prompt"
        )
        d = (z.get("ensemble_minus_single") or {}).get("accuracy")
        if d and d.get("ci"):
            verdict = (
                ("the ensemble helps" if d["difference"] > 0 else "the ensemble hurts")
                if d["significant"]
                else "no detectable difference"
            )
            text += f" (ensemble − single accuracy {100 * d['difference']:+.1f} points, paired 95% CI {100 * d['ci'][0]:+.1f} to {100 * d['ci'][1]:+.1f}: {verdict})"
        out.append(text + ".")
    if results.get("templates"):
        out.append(_templates_takeaway(results["templates"]))
    c = results.get("category-retrieval")
    if c:
        for field_name, g in c.items():
            if isinstance(g, dict) and "P@1" in g:
                out.append(
                    f"Asking for each {esc(field_name.replace('_', ' '))} by name ({g['queries']} values), the first photo has it <b>{_pct(g['P@1'])}</b> of the time; "
                    f"{_pct(g['P@10'])} of the top 10 do."
                )
    i = results.get("image-retrieval")
    if i:
        k = i.get("k", 10)
        out.append(
            f"Search by photo: the nearest other photo shares its {esc(i.get('field', '').replace('_', ' '))} <b>{_pct(i['R@1'])}</b> of the time; "
            f"mAP@{k} {fmt(i.get(f'mAP@{k}'))} (gallery {i['gallery']})."
        )
    kn, lp = results.get("knn"), results.get("linear-probe")
    if kn or lp:
        parts = []
        if kn:
            parts.append(f"{kn['k']}-NN {_pct(kn['accuracy'])} ({esc(kn['mode'])})")
        if lp:
            parts.append(f"a linear probe {_pct(lp['accuracy'])}")
        out.append("Frozen image embeddings classify with " + " and ".join(parts) + " accuracy.")
    return out


def _zero_shot_section(results: dict[str, Any], thumbs: Thumbnails) -> str:
    z = results["zero-shot"]
    rows = []
    for name, title in (("ensemble", "prompt ensemble"), ("single_prompt", "single prompt")):
        g = z[name]
        rows.append(
            [f"<td>{title} ({g['templates']} template{'s' if g['templates'] != 1 else ''})</td>"]
            + [metric_cells(g, m) for m in ("accuracy", "top5_accuracy", "weighted_f1", "macro_f1")]
            + [num(g["labels"]), num(g["n"])]
        )
    header = ["prompts"] + list(("top-1", "top-5", "weighted F1", "macro F1")) + ["labels", "n"]
    out = [
        f'<section id="zero-shot"><h2>{TASK_TITLES["zero-shot"]}: <code>{esc(z.get("field", ""))}</code></h2>',
        table(header, rows, "nums"),
    ]
    diffs = z.get("ensemble_minus_single") or {}
    if diffs:
        names = {"accuracy": "accuracy", "weighted_f1": "weighted F1"}
        parts = [f"{names.get(k, esc(k))} {d['difference']:+.3f} {fmt_ci(d.get('ci'))}" for k, d in diffs.items() if d.get("ci")]
        out.append(f'<p class="note">Prompt ensemble − single prompt, paired on the same images: {"; ".join(parts)}.</p>')
    e = z["ensemble"]
    figs = []
    if "confusion" in e:
        figs.append(
            figure(
                plots.confusion(
                    e["confusion"]["labels"], e["confusion"]["matrix"], title="confusion matrix, ensemble (row-normalised)"
                ),
                "confusion matrix",
            )
        )
    if "per_class" in e:
        figs.append(
            figure(
                plots.class_bars(e["per_class"], "accuracy", "per-class accuracy, ensemble (class size)"), "per-class accuracy"
            )
        )
    out.append('<div class="figs">' + "".join(figs) + "</div>")
    if "confusion" in e:
        out.append(_confused_pairs(e["confusion"]))
    examples = results.get("examples", {}).get("zero-shot", {}).get("ensemble", [])
    if examples:
        out.append("<h3>Examples</h3>" + _prediction_cards(examples, thumbs))
        out.append('<p class="note">Under each photo: the top 3 labels with their probabilities at the model\'s temperature.</p>')
    out.append("</section>")
    return "".join(out)


def _templates_takeaway(ablation: dict[str, Any]) -> str:
    """One sentence: the best template alone against the ensemble, and which templates the ensemble is better without."""
    from .templates import rows_of

    ensemble, singles = rows_of(ablation, "ensemble")[0], rows_of(ablation, "single")
    best = max(singles, key=lambda row: row["accuracy"])
    text = (
        f"Prompt templates: the {ensemble['templates']}-template ensemble gets top-1 <b>{_pct(ensemble['accuracy'])}</b>; "
        f"the best template alone, <code>{esc(best['template'])}</code>, {_pct(best['accuracy'])}"
    )
    better_without = [f"<code>{esc(row['template'])}</code>" for row in rows_of(ablation, "leave-one-out")
                      if _direction(row, "accuracy") > 0]  # fmt: skip
    if better_without:
        text += "; the ensemble is detectably better without " + ", ".join(better_without)
    return text + "."


def _direction(row: dict[str, Any], metric: str) -> int:
    """+1 / −1 when the paired difference from the ensemble is detectably above / below zero, else 0."""
    d = (row.get("minus_ensemble") or {}).get(metric)
    if not d or not d.get("significant"):
        return 0
    return 1 if d["difference"] > 0 else -1


def _difference_cells(row: dict[str, Any], metric: str) -> str:
    """The paired difference from the ensemble, its interval, and a better / worse / within-noise badge."""
    d = (row.get("minus_ensemble") or {}).get(metric)
    if not d:
        return '<td class="num">–</td><td></td>'
    badge = {1: '<span class="sig up">better</span>', -1: '<span class="sig down">worse</span>'}.get(
        _direction(row, metric), '<span class="sig same">within noise</span>'
    )
    value = f'<span class="v">{d["difference"]:+.3f}</span><div class="ci">{fmt_ci(d.get("ci"))}</div>'
    return f'<td class="num">{value}</td><td>{badge}</td>'


_TEMPLATE_VARIANTS = {"ensemble": "full ensemble", "single": "alone", "leave-one-out": "ensemble without"}


def _template_rows(ablation: dict[str, Any]) -> list[list[str]]:
    """Table cells per variant: what it is, its metrics with intervals, its paired differences from the ensemble."""
    rows = []
    for row in ablation["rows"]:
        template = row["template"] if row["template"] is not None else f"all {row['templates']}"
        rows.append(
            [f"<td>{_TEMPLATE_VARIANTS[row['kind']]}</td>", f"<td><code>{esc(template)}</code></td>"]
            + [metric_cells(row, m) for m in ("accuracy", "weighted_f1", "macro_f1")]
            + [_difference_cells(row, "accuracy"), _difference_cells(row, "weighted_f1")]
        )
    return rows


def _template_figures(ablation: dict[str, Any]) -> str:
    """Accuracy bars per template (alone, and the ensemble without it) and the paired differences from the ensemble."""
    from .templates import rows_of

    ensemble, singles, dropped = rows_of(ablation, "ensemble")[0], rows_of(ablation, "single"), rows_of(ablation, "leave-one-out")
    differences = []
    for row in singles + dropped:
        d = (row.get("minus_ensemble") or {}).get("accuracy")
        if d:
            name = f"{'alone' if row['kind'] == 'single' else 'without'}: {row['template']}"
            differences.append({"label": name, "value": d["difference"], "ci": d.get("ci")})
    figs = [figure(plots.template_bars(singles, dropped, ensemble, "accuracy"), "top-1 accuracy by template")]
    if differences:
        title = "top-1 − full ensemble (paired 95% CI)"
        figs.append(figure(plots.intervals(differences, title, zero_line=True, xlabel="difference"), "differences"))
    return '<div class="figs">' + "".join(figs) + "</div>"


def _templates_section(results: dict[str, Any], thumbs: Thumbnails) -> str:
    """The templates task: every variant with its paired difference from the ensemble, and two charts."""
    t = results["templates"]
    source = results.get("settings", {}).get("templates_from") or "the built-in ZERO_SHOT_TEMPLATES"
    header = ["variant", "template", "top-1", "weighted F1", "macro F1", "− ensemble, top-1", "", "− ensemble, weighted F1", ""]
    return (
        f'<section id="templates"><h2>{TASK_TITLES["templates"]}: <code>{esc(t.get("field", ""))}</code></h2>'
        f'<p class="note">Zero-shot classification over {t["labels"]} labels ({t["n"]} photos) with each template alone, '
        f"the full ensemble, and the ensemble without each template (templates from {esc(source)}). Differences are each "
        "variant − the full ensemble, paired on the same photos; a positive difference for “ensemble without” means the "
        "ensemble is better without that template. Choose templates on a validation split, not on the test split you report.</p>"
        + table(header, _template_rows(t), "nums")
        + _template_figures(t)
        + "</section>"
    )


def _confused_pairs(confusion: dict[str, Any], top: int = 8) -> str:
    """The most frequent mistakes (true → predicted), as a table."""
    labels, matrix = confusion["labels"], confusion["matrix"]
    support = [sum(row) for row in matrix]
    pairs = [(matrix[i][j], i, j) for i in range(len(labels)) for j in range(len(labels)) if i != j and matrix[i][j]]
    pairs.sort(key=lambda x: (-x[0], labels[x[1]], labels[x[2]]))
    if not pairs:
        return ""
    rows = [[f"<td>{esc(labels[i])}</td>", f"<td>{esc(labels[j])}</td>", num(count), num(count / support[i] if support[i] else None)]
            for count, i, j in pairs[:top]]  # fmt: skip
    return "<h3>Most frequent mistakes</h3>" + table(
        ["true", "predicted as", "examples", "share of the true class"], rows, "nums"
    )


def _prediction_cards(examples: list[dict[str, Any]], thumbs: Thumbnails) -> str:
    """Photo cards in two rows: right predictions (green) and wrong ones (red, with the truth)."""
    groups: dict[bool, list[str]] = {True: [], False: []}
    for ex in examples:
        ok = ex["truth"] == ex["predicted"]
        top = ", ".join(f"{esc(label)} {p:.2f}" for label, p in ex.get("top", []))
        verdict = (
            f"<b>{esc(ex['predicted'])}</b>" if ok else f"said <b>{esc(ex['predicted'])}</b><br>is <b>{esc(ex['truth'])}</b>"
        )
        groups[ok].append(
            f'<div class="card {"ok" if ok else "bad"}"><div class="t">{thumbs.img(ex.get("image"), ex.get("title", ""))}</div>'
            f'<div class="cap">{verdict}' + (f'<div class="note">{top}</div>' if top else "") + "</div></div>"
        )
    out = []
    for ok, title in ((True, "Right"), (False, "Wrong")):
        if groups[ok]:
            out.append(
                f'<div class="exlabel {"ok" if ok else "bad"}">{title}</div><div class="grid">' + "".join(groups[ok]) + "</div>"
            )
    return "".join(out)


def _retrieval_section(results: dict[str, Any], thumbs: Thumbnails) -> str:
    r = results["retrieval"]
    rows = []
    for direction, title in (("text_to_image", "text → image"), ("image_to_text", "image → text")):
        g = r[direction]
        rows.append(
            [f"<td>{title}</td>"] + [metric_cells(g, m) for m in ("R@1", "R@5", "R@10", "MRR")]
            + [num(g["median_rank"], 1), num(g["queries"]), f'<td class="num big">{g["gallery"]}</td>']
        )  # fmt: skip
    header = ["direction"] + list(("R@1", "R@5", "R@10", "MRR")) + ["median rank", "queries", "gallery"]
    out = [
        f'<section id="retrieval"><h2>{TASK_TITLES["retrieval"]}: query = <code>{esc(r.get("text_field", "title"))}</code></h2>',
        table(header, rows, "nums"),
        '<p class="note">A query\'s relevant items are every product with the same text (duplicate titles are not misses); '
        "ties are counted against the model.</p>",
    ]
    curves = {
        name.replace("_to_", " → ").replace("_", " "): r[name].get("recall_curve") for name in ("text_to_image", "image_to_text")
    }
    out.append('<div class="figs">' + figure(plots.recall_curves(curves, r["text_to_image"]["gallery"]), "Recall@k") + "</div>")
    ex = results.get("examples", {}).get("retrieval", {})
    if ex.get("text_to_image"):
        out.append("<h3>Text → image: the top 5 photos for a few titles</h3>" + LEGEND)
        for e in ex["text_to_image"]:
            hit = e["rank"] is not None and e["rank"] <= 1
            parts = [
                f'<div class="q">“{esc(e["query"])}”<br><span class="rk {"hit" if hit else "miss"}">right photo at rank {fmt(e["rank"], 0)}</span></div>'
            ]
            parts += [mini(thumbs, item, f"{item['score']:.2f}", "rel" if item["relevant"] else "irr") for item in e["results"]]
            if not any(item["relevant"] for item in e["results"]):
                parts.append(mini(thumbs, e["expected"], "the right one", "exp"))
            out.append('<div class="rowex">' + "".join(parts) + "</div>")
    if ex.get("image_to_text"):
        out.append("<h3>Image → text: the top 3 titles for a few photos</h3>")
        for e in ex["image_to_text"]:
            hit = e["rank"] is not None and e["rank"] <= 1
            texts = "".join(
                f'<div class="{"y" if t["relevant"] else "n"}">{"✓" if t["relevant"] else "✗"} {esc(t["text"])} <span class="note">{t["score"]:.2f}</span></div>'
                for t in e["results"]
            )
            out.append(
                f'<div class="rowex">{mini(thumbs, e["query"], e["query"].get("id", ""), "rel" if hit else "irr")}'
                f'<div class="texts"><span class="rk {"hit" if hit else "miss"}">own title at rank {fmt(e["rank"], 0)}</span>{texts}</div></div>'
            )
    out.append("</section>")
    return "".join(out)


def _category_section(results: dict[str, Any], thumbs: Thumbnails) -> str:
    c = results["category-retrieval"]
    fields = [k for k, v in c.items() if isinstance(v, dict) and "P@1" in v]
    rows = []
    for f in fields:
        g = c[f]
        rows.append([f"<td><code>{esc(f)}</code></td>"] + [metric_cells(g, m) for m in ("P@1", "P@10", "MRR")]
                    + [num(g.get("P@10_ceiling")), num(g["queries"]), num(g["mean_relevant"], 1), f'<td class="num big">{g["gallery"]}</td>'])  # fmt: skip
    header = ["field"] + list(("P@1", "P@10", "MRR")) + ["best possible P@10", "queries", "relevant / query", "gallery"]
    out = [
        f'<section id="category-retrieval"><h2>{TASK_TITLES["category-retrieval"]}</h2>',
        f'<p class="note">As in Marqo\'s fashion benchmark: the query is the value as text (<code>{esc(c.get("template", ""))}</code>), '
        "every product with that value is relevant. One query per distinct value, so intervals are wide when there are few values; "
        "a value held by fewer than 10 products caps its P@10 (the best possible P@10 is the mean of min(10, relevant) / 10).</p>",
        table(header, rows, "nums"),
    ]
    figs = []
    for f in fields:
        per_query = c[f].get("per_query")
        if per_query:
            bars = {label: {"P@10": v["P@10"], "n": v["relevant"]} for label, v in per_query.items()}
            figs.append(figure(plots.class_bars(bars, "P@10", f"P@10 per {f} query (products with it)"), f"P@10 per {f}"))
    out.append('<div class="figs">' + "".join(figs) + "</div>")
    for f in fields:
        examples = results.get("examples", {}).get("category-retrieval", {}).get(f, [])
        if examples:
            out.append(
                f"<h3>Best and worst {esc(f)} queries: the top 8 photos</h3>"
                + LEGEND.replace("; dashed blue: the right one, when it is not in the top 5", "")
            )
            for e in examples:
                parts = [f'<div class="q">“{esc(e["query"])}”<br><span class="rk {"hit" if e["P@10"] >= 0.5 else "miss"}">P@10 {e["P@10"]:.1f}</span> '
                         f'<span class="note">{e["relevant"]} relevant</span></div>']  # fmt: skip
                parts += [
                    mini(thumbs, item, item.get("label", ""), "rel" if item["relevant"] else "irr") for item in e["results"]
                ]
                out.append('<div class="rowex">' + "".join(parts) + "</div>")
    out.append("</section>")
    return "".join(out)


def _image_section(results: dict[str, Any], thumbs: Thumbnails) -> str:
    g = results["image-retrieval"]
    k = g.get("k", 10)
    rows = [[f"<td><code>{esc(g.get('field', ''))}</code></td>"] + [metric_cells(g, m) for m in (f"mAP@{k}", "R@1")]
            + [num(g["queries"]), num(g["skipped_queries"]), f'<td class="num big">{g["gallery"]}</td>']]  # fmt: skip
    header = ["same-class field"] + list((f"mAP@{k}", "R@1")) + ["queries", "skipped (class of one)", "gallery"]
    out = [
        f'<section id="image-retrieval"><h2>{TASK_TITLES["image-retrieval"]}</h2>',
        '<p class="note">Each photo queries all the others (itself excluded); relevant = same '
        f"<code>{esc(g.get('field', ''))}</code>. AP@{k} = (1/min({k}, R)) Σ P@i·rel(i) over the first {k}, R = relevant items in the gallery.</p>",
        table(header, rows, "nums"),
    ]
    if g.get("per_class"):
        out.append(
            '<div class="figs">'
            + figure(plots.class_bars(g["per_class"], f"AP@{k}", f"AP@{k} per class (class size)"), "AP per class")
            + "</div>"
        )
    examples = results.get("examples", {}).get("image-retrieval", {}).get("queries", [])
    if examples:
        out.append(
            "<h3>Queries and their 5 nearest photos</h3>"
            + LEGEND.replace("dashed blue: the right one, when it is not in the top 5", "dashed blue: the query")
        )
        for e in examples:
            q = e["query"]
            parts = [
                f'<div class="q">{mini(thumbs, q, q.get("label", ""), "exp")}<span class="rk {"hit" if e[f"AP@{k}"] >= 0.5 else "miss"}">AP@{k} {e[f"AP@{k}"]:.2f}</span></div>'
            ]
            parts += [mini(thumbs, item, item.get("label", ""), "rel" if item["relevant"] else "irr") for item in e["results"]]
            out.append('<div class="rowex">' + "".join(parts) + "</div>")
    out.append("</section>")
    return "".join(out)


def _classifier_section(task: str, results: dict[str, Any], thumbs: Thumbnails) -> str:
    g = results[task]
    rows = [
        [f"<td><code>{esc(g.get('field', ''))}</code></td>"]
        + [metric_cells(g, m) for m in ("accuracy", "weighted_f1", "macro_f1")]
        + [num(g["n"]), num(g["classes"])]
    ]
    header = ["field"] + list(("accuracy", "weighted F1", "macro F1")) + ["test examples", "classes"]
    if task == "knn":
        how = f"k = {g['k']}, votes weighted {esc(g.get('weighting', ''))}, {esc(g['mode'])}, reference set {g['reference']} products"
    else:
        how = f"logistic regression (C = {g.get('C')}) on standardised embeddings, trained on {g['train']} products ({esc(g.get('split', ''))} split)"
    out = [
        f'<section id="{task}"><h2>{TASK_TITLES[task]}</h2>',
        f'<p class="note">Frozen image embeddings; {how}. Train set: {esc(g.get("train_set", ""))}.</p>',
        table(header, rows, "nums"),
    ]
    if g.get("per_class"):
        out.append(
            '<div class="figs">'
            + figure(plots.class_bars(g["per_class"], "accuracy", "per-class accuracy (class size)"), "per-class accuracy")
            + "</div>"
        )
    examples = results.get("examples", {}).get(task, {}).get("predictions", [])
    if examples:
        out.append("<h3>Examples</h3>" + _prediction_cards(examples, thumbs))
    out.append("</section>")
    return "".join(out)


def _composition_section(results: dict[str, Any], thumbs: Thumbnails) -> str:
    """Each category's accuracy beside its blind baselines (0.5 by construction), what was left out, and cases."""
    task = results["composition"]
    rows = [
        [f"<td>{esc(name)}</td>", metric_cells(group, "accuracy"), metric_cells(group, "blind_ngram"),
         metric_cells(group, "blind_text_tower"), f'<td class="num">{group.get("pairs")}</td>']
        for name, group in [*task.get("categories", {}).items(), ("mean over categories", task.get("mean", {}))]
    ]  # fmt: skip
    out = [f'<section id="composition"><h2>{esc(TASK_TITLES["composition"])}</h2>']
    out.append(table(["category", "model accuracy", "blind: bigram LM", "blind: text tower", "pairs"], rows, "nums"))
    skipped = task.get("skipped") or {}
    if skipped:
        out.append('<p class="note">Left out: ' + "; ".join(f"{esc(k)} ({esc(v)})" for k, v in skipped.items()) + "</p>")
    out.append(
        f'<p class="note">Each case: a seeded scene, its true caption and one negative; every case has a partner whose true '
        f"caption is its negative, so a text-only model scores 0.5. Blind LM fitted on {esc(task.get('blind_fitted_on', '?'))}.</p>"
    )
    cases = results.get("examples", {}).get("composition", {}).get("cases", [])
    if cases:
        cards = "".join(
            f'<div class="card {"ok" if c["passed"] else "bad"}"><div class="t">{thumbs.img(c["image"], c["positive"])}</div>'
            f'<div class="cap"><b>{esc(c["category"])}</b><br>✓ {esc(c["positive"])}<br>✗ {esc(c["negative"])}</div></div>'
            for c in cases
        )
        out.append(f'<h3>Examples (green: the true caption scored higher)</h3><div class="grid">{cards}</div>')
    return "".join(out) + "</section>"


def _method_section(results: dict[str, Any]) -> str:
    settings = json.dumps(results.get("settings", {}), indent=2, ensure_ascii=False)
    timings = ", ".join(f"{esc(k)} {v:.1f} s" for k, v in results.get("timings", {}).items())
    return (
        '<section id="method"><h2>How these numbers were made</h2><ul class="takeaways">'
        "<li>Every interval is a 95% percentile bootstrap over the task's queries or test examples (fixed seed, the same "
        "resamples for every model, so side-by-side differences are paired).</li>"
        "<li>Ties are counted against the model: a relevant item tied with irrelevant ones ranks below them.</li>"
        "<li>Queries with no relevant item count as misses in text↔image retrieval; in image→image retrieval a photo "
        "whose class has no other member is skipped (it cannot be answered).</li>"
        "<li>Splits are fixed: the catalogue's own train/test splits, or an id-hash split that is the same on every run.</li>"
        f'</ul><p class="note">Timings: {timings or "–"}. Products: {results.get("products")}, rows skipped while reading: '
        f"{results.get('skipped_rows', 0)}, photos that could not be read: {results.get('image_failures', 0)}.</p>"
        f"<details><summary>Settings</summary><pre>{esc(settings)}</pre></details></section>"
    )


def _model_body(results: dict[str, Any], thumbs: Thumbnails) -> str:
    parts = [_summary_section(results)]
    for task, render in (
        ("zero-shot", _zero_shot_section),
        ("templates", _templates_section),
        ("retrieval", _retrieval_section),
        ("category-retrieval", _category_section),
        ("image-retrieval", _image_section),
    ):
        if task in results:
            parts.append(render(results, thumbs))
    for task in ("knn", "linear-probe"):
        if task in results:
            parts.append(_classifier_section(task, results, thumbs))
    if "composition" in results:
        parts.append(_composition_section(results, thumbs))
    parts.append(_method_section(results))
    return "".join(parts)


def _nav(results: dict[str, Any]) -> str:
    links = [("summary", "At a glance")] + [
        (t, TASK_TITLES[t])
        for t in ("zero-shot", "templates", "retrieval", "category-retrieval", "image-retrieval", "knn", "linear-probe", "composition")
        if t in results
    ]
    links.append(("method", "Method"))
    return "<nav>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in links) + "</nav>"


def _page(title: str, header: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{header}{body}"
        "<footer>Made by <code>modalens eval</code>. One self-contained file: no scripts, no network.</footer></body></html>"
    )


def _chips(results: dict[str, Any]) -> str:
    s = results.get("settings", {})
    chips = [
        f"{results.get('products')} products",
        f"label field: {s.get('field')}",
        f"{s.get('resamples')} bootstrap resamples, seed {s.get('seed')}",
        f"{results.get('seconds', '?')} s",
        f"{results.get('created', '')[:16].replace('T', ' ')} UTC",
        f"modalens {results.get('modalens', '')}",
    ]
    if results.get("image_view"):
        chips.insert(1, f"image view: {results['image_view']}")
    return '<div class="chips">' + "".join(f'<span class="chip">{esc(c)}</span>' for c in chips) + "</div>"


def render_report(results: dict[str, Any], *, thumbnail_budget: int = 2_000_000) -> str:
    """The HTML report for one evaluation (``results.json``) or a comparison (``compare``'s dict)."""
    thumbs = Thumbnails(budget_bytes=thumbnail_budget)
    note = (
        ""
        if plots.available()
        else '<p class="note">matplotlib is not installed: plots are left out (pip install matplotlib).</p>'
    )
    if "comparison" in results:
        return _comparison_page(results, thumbs, note)
    header = (
        f"<header><h1>How good is <code>{esc(results['model'])}</code>?</h1>"
        f'<div class="sub">Evaluated on <b>{esc(results["data"])}</b></div>{_chips(results)}</header>{_nav(results)}'
    )
    return _page(
        f"modalens eval: {results['model']} on {results['data']}", header, f"<main>{note}{_model_body(results, thumbs)}</main>"
    )


def _comparison_page(results: dict[str, Any], thumbs: Thumbnails, note: str) -> str:
    comp = results["comparison"]
    runs = results["runs"]
    by_model = {r["model"]: r for r in runs}
    base = comp["baseline"]
    level = int(round(100 * runs[0].get("settings", {}).get("confidence", 0.95)))
    rows, forest = [], []
    for d in comp["differences"]:
        a_row = next((h for h in by_model[d["a"]]["headline"] if h["metric"] == d["metric"]), {})
        b_row = next((h for h in by_model[d["b"]]["headline"] if h["metric"] == d["metric"]), {})
        ci = d.get("ci")
        if d.get("significant") is None:
            badge = '<span class="sig same">not paired</span>'
        elif d["significant"]:
            badge = f'<span class="sig {"up" if d["difference"] > 0 else "down"}">{"better" if d["difference"] > 0 else "worse"}</span>'
        else:
            badge = '<span class="sig same">within noise</span>'
        sizes = f"{d['n']}" + (f", gallery {d['gallery']}" if d.get("gallery") is not None else "")
        rows.append(
            [
                f"<td>{esc(d['label'])}</td>",
                num(d["value_a"]),
                f'<td class="ci">{fmt_ci(a_row.get("ci"))}</td>',
                num(d["value_b"]),
                f'<td class="ci">{fmt_ci(b_row.get("ci"))}</td>',
                f'<td class="num big">{d["difference"]:+.3f}</td>',
                f'<td class="ci">{fmt_ci(ci)}</td>',
                f"<td>{badge}</td>",
                f'<td class="note">{esc(sizes)}</td>',
            ]  # fmt: skip
        )
        if len(comp["models"]) == 2 and "median_rank" not in d["metric"]:
            forest.append({"label": d["label"], "value": d["difference"], "ci": ci})
    groups = []
    for model in comp["models"][1:]:
        chosen = [r for r, d in zip(rows, comp["differences"]) if d["b"] == model]
        groups.append(
            f"<h3><code>{esc(model)}</code> − <code>{esc(base)}</code></h3>"
            + table(
                ["metric", esc(base), f"{level}% CI", esc(model), f"{level}% CI", "difference", f"paired {level}% CI", "", "n"],
                chosen,
            )
        )
    fig = (
        figure(
            plots.intervals(forest, f"{comp['models'][1]} − {base} (paired {level}% CI)", zero_line=True, xlabel="difference"),
            "differences",
        )
        if forest
        else ""
    )
    summary = (
        '<section id="summary"><h2>Side by side</h2>'
        f'<p class="note">Each difference is model − {esc(base)} on the same examples; its interval is a paired bootstrap '
        "(the same resamples for both models). Green: the interval excludes zero.</p>"
        + "".join(groups) + f'<div class="figs">{fig}</div></section>'
    )  # fmt: skip
    bodies = []
    for i, run in enumerate(runs):
        body = _model_body(run, thumbs).replace('<section id="', f'<section id="m{i + 1}-')  # ids stay unique
        bodies.append(
            f"<details{' open' if i == 0 else ''}><summary>Full report: <code>{esc(run['model'])}</code></summary>{body}</details>"
        )
    models = " vs ".join(f"<code>{esc(m)}</code>" for m in comp["models"])
    header = f'<header><h1>{models}</h1><div class="sub">Compared on <b>{esc(comp["data"])}</b></div>{_chips(runs[0])}</header>'
    return _page(
        f"modalens eval: {' vs '.join(comp['models'])} on {comp['data']}",
        header,
        f"<main>{note}{summary}{''.join(bodies)}</main>",
    )
