"""Packaging as users install it (issue 18 item 7): every extra the docs name exists; faiss comes with a plain install.

The wheel itself is built, installed into a fresh environment and run from outside the source tree by
``scripts/check_wheel.sh``, a step of ``.ci/run`` (a minute: it runs the main job).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _named_extras() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.py")]:
        for extra in re.findall(r"modalens\[([a-z0-9_,-]+)\]", path.read_text(encoding="utf-8")):
            for name in extra.split(","):
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_extra_the_docs_and_messages_name_exists():
    named = _named_extras()
    assert "ann" in named  # the docs do name extras: the scan works
    missing = {name: where for name, where in named.items() if name not in PROJECT["optional-dependencies"]}
    assert not missing, f"pip install 'modalens[...]' named but not defined: {missing}"


def test_a_plain_install_brings_ann_search_and_the_offline_docs():
    names = {re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower() for requirement in PROJECT["dependencies"]}
    assert {"faiss-cpu", "fastapi-offline"} <= names


def test_ci_checks_the_wheel_before_the_tests():
    steps = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("bash ")]
    assert steps.index("bash scripts/check_wheel.sh") < steps.index("bash scripts/test.sh")
    script = (ROOT / "scripts" / "check_wheel.sh").read_text()
    assert "quickstart" in script and "venv" in script and "unset PYTHONPATH" in script
