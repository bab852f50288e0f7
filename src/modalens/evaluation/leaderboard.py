"""`modalens leaderboard`: one Markdown table per data set from any number of results files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from .files import load_results


def runs_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The single-model results inside a results file (a comparison holds several)."""
    return list(results["runs"]) if "runs" in results else [results]


def _cell(row: dict[str, Any], digits: int = 3) -> str:
    value, ci = row.get("value"), row.get("ci")
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    if ci and all(c is not None for c in ci):
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


def leaderboard_markdown(
    results: Iterable[dict[str, Any]], sources: Sequence[str] | None = None, metrics: Sequence[str] | None = None
) -> str:
    """Markdown: per data set, a row per model (its headline metrics with 95% intervals), sizes in the column heads."""
    runs: list[tuple[dict[str, Any], str]] = []
    for i, res in enumerate(results):
        for run in runs_of(res):
            runs.append((run, sources[i] if sources else ""))
    if not runs:
        raise ValueError("no results to tabulate")
    by_data: dict[str, list[tuple[dict[str, Any], str]]] = {}
    for run, source in runs:
        by_data.setdefault(run.get("data", "?"), []).append((run, source))
    out = []
    for data, entries in by_data.items():
        columns: dict[str, dict[str, Any]] = {}
        for run, _ in entries:
            for row in run.get("headline", []):
                if metrics and not any(m in row["metric"] or m == row["label"] for m in metrics):
                    continue
                column = columns.setdefault(row["metric"], {"label": row["label"], "sizes": set()})
                size = (
                    f"gallery {row['gallery']}"
                    if row.get("gallery") is not None
                    else (f"n {row['n']}" if row.get("n") is not None else "")
                )
                if size:
                    column["sizes"].add(size)
        heads = [c["label"] + (f" ({', '.join(sorted(c['sizes']))})" if c["sizes"] else "") for c in columns.values()]
        products = sorted({str(run.get("products")) for run, _ in entries})
        out.append(f"### {data} ({', '.join(products)} products)\n")
        out.append("| model | " + " | ".join(heads) + " |")
        out.append("|---|" + "---|" * len(heads))
        for run, source in entries:
            rows = {row["metric"]: row for row in run.get("headline", [])}
            label = f"`{run.get('model')}`" + (f" ({run['image_view']} view)" if run.get("image_view") else "")
            out.append(f"| {label} | " + " | ".join(_cell(rows[m]) if m in rows else "–" for m in columns) + " |")
        out.append("")
    out.append(
        "Values with 95% bootstrap intervals; from " + ", ".join(f"`{s}`" for s in dict.fromkeys(s for _, s in runs if s)) + "."
        if any(s for _, s in runs)
        else "Values with 95% bootstrap intervals."
    )
    return "\n".join(out) + "\n"


def leaderboard_from_files(paths: Sequence[str | Path], metrics: Sequence[str] | None = None) -> str:
    return leaderboard_markdown([load_results(p) for p in paths], [str(p) for p in paths], metrics)
