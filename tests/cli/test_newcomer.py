"""The smaller stumbles of a newcomer's first hour (issue 18 item 6), each as a test.

Default index shared with another catalogue, a busy port, tagging a folder and a missing file, the help
text, a catalogue whose columns have other names, the LICENSE the metadata names.
"""

from __future__ import annotations

import csv
import json
import socket
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modalens.catalog import read_catalog
from modalens.catalog.readers import read_table
from modalens.cli.main import app

ROOT = Path(__file__).parents[2]
SHOP = ROOT / "tests" / "fixtures" / "custom-shop" / "products.csv"
runner = CliRunner()


def test_indexing_another_catalogue_into_the_default_index_warns(mini_catalog, tmp_path, monkeypatch):
    monkeypatch.setenv("MODALENS_CACHE", str(tmp_path / "cache"))
    first = runner.invoke(app, ["index", str(mini_catalog), "--limit", "3"])
    assert first.exit_code == 0 and "warning" not in first.stderr
    again = runner.invoke(app, ["index", str(mini_catalog), "--limit", "3"])
    assert "warning" not in again.stderr  # the same catalogue again: nothing to warn about
    other = runner.invoke(app, ["index", str(SHOP), "--limit", "2"])
    assert other.exit_code == 0
    assert "already holds 3 products that are not in" in other.stderr and "--index DIR" in other.stderr
    assert "holds 5 products" in other.stdout
    pruned = runner.invoke(app, ["index", str(SHOP), "--limit", "2", "--prune"])
    assert "warning" not in pruned.stderr and "holds 2 products" in pruned.stdout


def test_serve_on_a_busy_port_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["serve", "--index", str(tmp_path / "i"), "--port", str(port)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: port {port} on 127.0.0.1 is already in use; try another with --port (e.g. --port {port + 1})"


def test_tag_takes_a_folder_and_names_a_missing_file_once(mini_catalog, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for product in read_catalog(mini_catalog).products[:2]:
        (folder / Path(product.image).name).write_bytes(Path(product.image).read_bytes())
    missing = tmp_path / "nope.jpg"
    result = runner.invoke(app, ["tag", str(folder), str(missing), "-l", "watch,shirt,shoes", "--json"])
    tagged = json.loads(result.stdout)
    assert result.exit_code == 1 and len(tagged) == 3 and all("labels" in t for t in tagged[:2])
    assert tagged[2]["image"] == str(missing) and "no such file" in tagged[2]["error"]
    plain = runner.invoke(app, ["tag", str(missing), "-l", "watch,shirt"])
    assert plain.stdout.count("nope.jpg") == 1


@pytest.mark.parametrize("command", [["index"], ["search"], ["tag"], ["serve"], ["quickstart"], ["match", "run"], ["eval"]])
def test_help_shows_no_bool_metavars_nor_double_negatives_and_the_whole_index_path(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output and "--no-no-" not in result.output
    if command in (["index"], ["search"], ["serve"]):
        assert "~/.cache/modalens" in result.output and "…" not in result.output


def test_catalogue_columns_by_other_names(tmp_path):
    with SHOP.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    table = tmp_path / "export.csv"
    with table.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "sku", "picture", "name", "price", "brand"])  # "id" is the shop's row number here
        for n, row in enumerate(rows[:4], 1):
            writer.writerow([n, row["id"], str((SHOP.parent / row["image"]).resolve()), row["title"], row["price"], row["brand"]])
    products = read_table(table, columns={"id": "sku", "image": "picture", "title": "name"}).products
    assert [p.id for p in products] == ["SKU-001", "SKU-002", "SKU-003", "SKU-004"]
    assert products[3].title == "Black Dial Watch" and products[3].extra["source_id"] == "4" and products[3].images
    result = runner.invoke(app, ["index", str(table), "--index", str(tmp_path / "i"), "--id-col", "sku", "--image-col", "picture", "--title-col", "name"])
    assert result.exit_code == 0 and "4 added" in result.stdout, result.output
    hits = json.loads(runner.invoke(app, ["search", "black watch", "--index", str(tmp_path / "i"), "-k", "1", "--json"]).stdout)
    assert hits[0]["id"] == "SKU-004" and hits[0]["title"] == "Black Dial Watch"
    wrong = runner.invoke(app, ["index", str(table), "--index", str(tmp_path / "j"), "--id-col", "nope"])
    assert wrong.exit_code == 2 and "no column 'nope' (for id)" in wrong.output


def test_the_license_the_metadata_names_is_in_the_repository():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]


def test_serving_docs_name_every_search_field():
    from modalens.serving.routers.search import SearchRequest

    docs = (ROOT / "docs" / "serving.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| `POST /api/search` "))
    assert all(field in row for field in SearchRequest.model_fields), row
