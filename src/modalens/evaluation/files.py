"""Reading and writing evaluation results: strict JSON (no NaN), and where results and reports go."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as None and numpy scalars as Python ones (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_FLAT_LIST = re.compile(r"\[[^\[\]{}]*\]")


def dumps(results: dict[str, Any]) -> str:
    """Indented JSON with lists of plain values on one line (a confusion matrix stays one row per line)."""
    text = json.dumps(jsonable(results), indent=2, ensure_ascii=False, allow_nan=False)
    return _FLAT_LIST.sub(lambda m: re.sub(r"\s*\n\s*", " ", m.group(0)).replace("[ ", "[").replace(" ]", "]"), text)


def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such results file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON results file ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not ("runs" in data or "model" in data):
        raise ValueError(f"{path}: not a modalens eval results file")
    return data


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-")[:80] or "eval"


def output_paths(output: str | Path | None, name: str, report: str | Path | None = None) -> tuple[Path, Path]:
    """(results.json, report.html): ``output`` is a ``.json`` file or a folder (default ``runs/eval/<name>``)."""
    out = Path(output) if output is not None else Path("runs") / "eval" / slug(name)
    results = out if out.suffix.lower() == ".json" else out / "results.json"
    html = (
        Path(report)
        if report is not None
        else (results.with_suffix(".html") if out.suffix.lower() == ".json" else out / "report.html")
    )
    return results, html
