"""Attributes of a package imported on first use (PEP 562), so importing the package stays cheap.

``import modalens`` and ``modalens --help`` must not pay for torch, ONNX Runtime or
FastAPI; packages that re-export names from heavy modules list them here instead of
importing them, and each name's module is imported the first time someone asks for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, names: Mapping[str, str], namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps a public name to the (relative) module defining it.

    A name, once imported, is stored in ``namespace`` (the package's ``globals()``), so later
    lookups are plain attribute reads.
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
