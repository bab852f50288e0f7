"""One family of user errors: every error a user can cause is a ModalensError, and the CLI prints it as one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modalens.catalog import CatalogError, ImageError, load_image, read_table
from modalens.errors import ConflictError, InvalidInputError, ModalensError, NotFoundError
from modalens.index.store import CatalogIndex, IndexMismatchError, IndexNotFoundError, IndexStoreError
from modalens.query_encoder import ExportMismatchError
from modalens.recipes.config import ConfigError

SRC = Path(__file__).resolve().parents[1] / "src"


def test_catalogue_and_config_errors_are_invalid_input_and_still_value_errors() -> None:
    for error in (CatalogError, ImageError, ConfigError, ExportMismatchError):
        assert issubclass(error, InvalidInputError) and issubclass(error, ModalensError), error
        assert issubclass(error, ValueError), error  # existing `except ValueError` keeps catching them
        assert error.http_status == 422
    assert issubclass(ImageError, CatalogError)


def test_not_found_errors_keep_their_old_bases() -> None:
    from modalens.models.factory import ModelNotFoundError

    for error in (IndexNotFoundError, ModelNotFoundError):
        assert issubclass(error, NotFoundError) and issubclass(error, FileNotFoundError), error
        assert error.http_status == 404
    assert issubclass(IndexNotFoundError, IndexStoreError)
    assert issubclass(IndexMismatchError, ConflictError) and issubclass(IndexMismatchError, IndexStoreError)


def test_what_the_library_raises_for_user_mistakes_is_in_the_family(tmp_path: Path) -> None:
    from modalens.models import create_model

    table = tmp_path / "shop.csv"
    table.write_text("name,title\nx,y\n", encoding="utf-8")
    with pytest.raises(ModalensError, match="no 'id' column"):
        read_table(table)
    with pytest.raises(InvalidInputError, match="not a recognised image"):
        load_image(b"not a photo")
    with pytest.raises(NotFoundError, match="modalens index"):
        CatalogIndex.open(tmp_path / "no-index", model="m")
    with pytest.raises(NotFoundError):
        create_model("no-such-model")
    CatalogIndex.create(tmp_path / "index", model="model-a@1", dim=4).close()
    with pytest.raises(ModalensError):
        CatalogIndex.open(tmp_path / "index", model="model-b@2")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real ``python -m modalens`` of this checkout, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "modalens", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "args, expected",
    [
        (["index", "{tmp}/no-id.csv", "--index", "{tmp}/index"], "no 'id' column"),
        (["index", "{tmp}/utf16.csv", "--index", "{tmp}/index"], "UTF-16"),
        (["search", "shirt", "--model", "no-such-model", "--index", "{tmp}/index"], "no-such-model"),
        (["search", "shirt", "--index", "{tmp}/no-index"], "modalens index"),
    ],
)
def test_cli_prints_one_line_and_exits_2(tmp_path: Path, args: list[str], expected: str) -> None:
    (tmp_path / "no-id.csv").write_text("name,title\nx,y\n", encoding="utf-8")
    (tmp_path / "utf16.csv").write_bytes("id,title\n1,x\n".encode("utf-16"))
    result = run_cli(*(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
