"""The `modalens` command end to end on real photos: index, search, tag, errors, and a kill during indexing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modalens.catalog import read_catalog
from modalens.cli.main import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def index_dir(mini_catalog, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "index"
    result = invoke("index", mini_catalog, "--index", folder)
    assert result.exit_code == 0, result.output
    assert "40 added" in result.output and "holds 40 products" in result.output
    return folder


def test_search_json_returns_ranked_products(index_dir):
    result = invoke("search", "black analog wrist watch", "--index", index_dir, "-k", "5", "--json")
    assert result.exit_code == 0
    hits = json.loads(result.output)
    assert len(hits) == 5
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert hits[0]["attributes"]["article_type"] == "Watches"


def test_search_by_image_and_filter(index_dir, mini_catalog):
    product = next(p for p in read_catalog(mini_catalog) if p.get("gender") == "Women")
    result = invoke("search", "--image", product.image, "--index", index_dir, "--filter", "gender=Women", "--json")
    hits = json.loads(result.output)
    assert hits[0]["id"] == product.id
    assert {h["attributes"]["gender"] for h in hits} == {"Women"}


@pytest.mark.parametrize(
    "bad, message",
    [("nosuch=1", "unknown filter field 'nosuch'; allowed: "), ("colr=Blue", "colour (baseColour, color)"), ("colour=", "non-empty"), ("price_min=cheap", "number"), ("price_max=-1", "non-negative")],
)
def test_search_refuses_bad_filters_as_the_api_does(index_dir, bad, message):
    """The CLI and the API share one filter check: a typo in a field is an error (exit 2), never "no results"."""
    result = runner.invoke(app, ["search", "shirt", "--index", str(index_dir), "-f", bad])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output and "no results" not in result.output


@pytest.mark.parametrize("field", ["articleType=Watches", "article_type=Watches", "ArticleType=Watches"])
def test_search_filters_take_the_catalogues_column_names(index_dir, field):
    """The README names the catalogue's columns (articleType, baseColour): they filter as modalens's names do."""
    hits = json.loads(invoke("search", "black", "--index", index_dir, "-f", field, "-f", "baseColour=Black", "--json").output)
    assert {h["id"] for h in hits} == {"11652", "13839"}


def test_index_and_search_in_milvus_lite_answer_as_sqlite(index_dir, mini_catalog, tmp_path):
    """`--store milvus:FILE` indexes into Milvus Lite and searches it with the filter pushed into Milvus."""
    pytest.importorskip("milvus_lite", reason="the Milvus store needs modalens[milvus] (pymilvus, milvus-lite)")
    store = f"milvus:{tmp_path / 'shop.db'}"
    result = invoke("index", mini_catalog, "--store", store)
    assert result.exit_code == 0, result.output
    assert "40 added" in result.output and "holds 40 products" in result.output
    assert "0 added, 40 unchanged" in invoke("index", mini_catalog, "--store", store).output  # resumes, adds nothing
    query = ("search", "black shoes", "-k", "5", "-f", "gender=Men", "--json")
    in_milvus = json.loads(invoke(*query, "--store", store).output)
    in_sqlite = json.loads(invoke(*query, "--index", index_dir).output)
    assert [h["id"] for h in in_milvus] == [h["id"] for h in in_sqlite] and len(in_milvus) == 5
    assert [h["score"] for h in in_milvus] == pytest.approx([h["score"] for h in in_sqlite], abs=1e-4)
    bad = runner.invoke(app, ["search", "shoes", "--store", "postgres:db"])
    assert bad.exit_code == 2 and "not one of" in bad.output and "Traceback" not in bad.output


@pytest.fixture(scope="module")
def shop_index(tmp_path_factory) -> Path:
    """The custom catalogue of a newcomer: id,image,title,price,brand."""
    folder = tmp_path_factory.mktemp("shop") / "index"
    shop = Path(__file__).parents[1] / "fixtures" / "custom-shop" / "products.csv"
    assert invoke("index", shop, "--index", folder).exit_code == 0
    return folder


def test_search_price_range_and_brand_on_a_custom_catalogue(shop_index):
    args = ("search", "shoes", "--index", shop_index, "-k", "20", "--json")
    hits = json.loads(invoke(*args, "--price-min", "20", "--price-max", "70").output)
    assert hits and all(20 <= h["price"] <= 70 for h in hits) and len(hits) < 20
    puma = json.loads(invoke(*args, "-f", "brand=Puma|Nike").output)
    assert {h["attributes"]["brand"] for h in puma} == {"Puma", "Nike"} and len(puma) == 4
    shown = invoke("search", "black watch", "--index", shop_index, "-k", "2").output
    assert "Black Dial Watch" in shown and "Puma, 129.00" in shown  # brand and price in the plain output
    bad = runner.invoke(app, ["search", "shoes", "--index", str(shop_index), "--price-min", "80", "--price-max", "10"])
    assert bad.exit_code == 2 and "above price_max" in bad.output


def test_search_json_hit_is_the_apis_hit_with_the_photo_file(index_dir):
    hit = json.loads(invoke("search", "watch", "--index", index_dir, "-k", "1", "--json").output)[0]
    assert set(hit) == {"id", "score", "title", "attributes", "price", "image"} and Path(hit["image"]).is_file()


def test_readable_output_lists_titles(index_dir):
    result = invoke("search", "sunglasses", "--index", index_dir, "-k", "3")
    assert result.exit_code == 0
    assert len([line for line in result.output.splitlines() if line.strip()]) == 3
    assert "Sunglasses" in result.output


def test_tag_ranks_labels_and_reports_bad_files(mini_catalog, tmp_path):
    products = read_catalog(mini_catalog).products
    watch = next(p for p in products if p.get("article_type") == "Watches")
    shoe = next(p for p in products if p.get("article_type") == "Casual Shoes")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    labels = "watch,shoes,handbag,t-shirt,sunglasses,jeans"
    result = invoke("tag", watch.image, shoe.image, broken, "--labels", labels, "--json")
    assert result.exit_code == 1  # one file failed; the others were still tagged
    records = json.loads(result.output)
    assert records[0]["labels"][0]["label"] == "watch"
    assert records[1]["labels"][0]["label"] == "shoes"
    assert "error" in records[2] and "broken.jpg" in records[2]["error"]
    assert sum(x["score"] for x in records[0]["labels"]) <= 1.0 + 1e-6


def test_user_errors_are_one_line_not_a_traceback(tmp_path, mini_catalog):
    for args, expected in [
        (["search", "shirt", "--index", tmp_path / "missing"], "modalens index"),
        (["index", tmp_path / "nope.csv"], "nope.csv"),
        (["search", "shirt", "--model", "no-such-model"], "unknown model"),
        (["search", "shirt", "--filter", "colourBlue"], "field=value"),
        (["index", mini_catalog, "--index", tmp_path / "x", "--executor", "spark"], "executor must be one of local, ray"),
        (["eval", "--data", f"{mini_catalog}:nosuchsplit"], "nosuchsplit"),
    ]:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output and "Traceback" not in result.output


def test_index_reports_bad_rows_and_keeps_going(mini_catalog, tmp_path):
    rows = mini_catalog.read_text().splitlines()
    bad = tmp_path / "products.csv"
    bad.write_text("\n".join(rows[:6] + ["99999,images/missing.jpg,Ghost,Men"] + ["12345"] + rows[6:10]) + "\n")
    (tmp_path / "images").symlink_to(mini_catalog.parent / "images")
    result = invoke("index", bad, "--index", tmp_path / "index")
    assert result.exit_code == 0
    assert "skipped" in result.output and "holds 9 products" in result.output


def test_kill_during_indexing_then_resume(mini_catalog, tmp_path):
    """SIGKILL mid-build: the index opens with the committed batches, and the next run adds only the rest."""
    folder = tmp_path / "index"
    # A cold feature cache makes the child really encode each photo, so the kill lands mid-build.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MODALENS_CACHE": str(tmp_path / "cold-cache")}
    cmd = [sys.executable, "-m", "modalens.cli.main", "index", str(mini_catalog), "--index", str(folder), "--batch-size", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and _indexed(folder) < 8:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    committed = _indexed(folder)
    assert 8 <= committed < 40, "the build should have been killed part-way"
    assert committed % 2 == 0, "only whole batches are ever committed"
    result = invoke("index", mini_catalog, "--index", folder)
    assert f"{40 - committed} added, {committed} unchanged" in result.output
    hits = json.loads(invoke("search", "watch", "--index", folder, "--json").output)
    assert len(hits) == 10


def _indexed(folder: Path) -> int:
    db = folder / "index.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
    except sqlite3.Error:
        return 0
