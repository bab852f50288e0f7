"""The search server and the Python API on a Milvus Lite store answer as they do on the SQLite default."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import modalens
from modalens.catalog import read_catalog
from modalens.cli.main import app as cli
from modalens.search import SearchEngine
from modalens.serving import ServeSettings, create_app

pytest.importorskip("milvus_lite", reason="the Milvus store needs modalens[milvus] (pymilvus, milvus-lite)")

KEY = "test-key"
QUERIES = [
    {"q": "black watch", "k": 5},
    {"q": "shoes", "k": 10, "filters": {"gender": "Women"}},
    {"q": "summer clothes", "k": 10, "filters": {"articleType": ["Tshirts", "Shirts", "Jeans"], "split": "train"}},
]


@pytest.fixture(scope="module")
def both(mini_catalog, tmp_path_factory):
    """The mini catalogue indexed into SQLite and into a Milvus Lite file through the Python API, on one model."""
    folder = tmp_path_factory.mktemp("serve-milvus")
    store = f"milvus:{folder / 'shop.db'}"
    with modalens.Index(folder / "sqlite") as index:
        assert index.add(mini_catalog).added == 40
        handle = index.engine.handle
    with modalens.Index(model=modalens.Model(handle), store=store) as index:
        assert index.add(mini_catalog).added == 40
    return folder / "sqlite", store, handle


def answers(client: TestClient) -> list[list[tuple[str, float]]]:
    out = []
    for query in QUERIES:
        response = client.post("/api/search", json=query)
        assert response.status_code == 200, response.text
        out.append([(r["id"], round(r["score"], 3)) for r in response.json()["results"]])
    return out


def test_the_server_on_milvus_searches_counts_and_writes_as_on_sqlite(both, mini_catalog):
    sqlite_dir, store, handle = both
    with TestClient(create_app(ServeSettings(sqlite_dir), handle)) as on_sqlite:
        expected, expected_facets = answers(on_sqlite), on_sqlite.get("/api/facets").json()
    shared = sqlite_dir.parent / "shared-uploads"  # what every replica on the Milvus store would mount
    settings = ServeSettings(sqlite_dir.parent / "unused", api_keys=frozenset({KEY}), store=store, upload_dir=shared)
    with TestClient(create_app(settings, handle)) as client:
        assert client.get("/health").json()["products"] == 40
        assert answers(client) == expected and all(expected)
        assert client.get("/api/facets").json() == expected_facets  # the filter menus, counted from Milvus' columns
        product = read_catalog(mini_catalog).products[0]
        assert client.delete(f"/api/products/{product.id}", headers={"X-API-Key": KEY}).status_code in (200, 204)
        assert client.get("/health").json()["products"] == 39
        assert client.get(f"/api/products/{product.id}").status_code == 404
        with open(product.image, "rb") as photo:
            upload = {"image": ("p.jpg", photo.read(), "image/jpeg")}
        put = client.put(f"/api/products/{product.id}", data={"product": '{"title": "Back again"}'}, files=upload, headers={"X-API-Key": KEY})
        assert put.status_code == 200, put.text
        assert [f.parent for f in shared.iterdir()] == [shared] and client.get(f"/api/products/{product.id}/image").status_code == 200
    assert not (sqlite_dir.parent / "unused").exists()  # the index folder is not touched when the store is Milvus


def test_the_python_api_reopens_a_milvus_store_with_its_model(both):
    _, store, handle = both
    with modalens.Index(store=store) as index:  # no model named: the one the store was built with
        assert index.model.name == handle.name and "store='milvus:" in repr(index)
        hits = index.search("black", k=10, filters={"articleType": "Watches", "baseColour": "Black"})
        assert {h.id for h in hits} <= {"11652", "13839"} and hits
    with pytest.raises(ValueError, match="not one of"):
        modalens.Index(store="postgres:db")


def test_serve_refuses_a_bad_store_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--store", "postgres:db", "--port", "8765", "--index", str(tmp_path / "i")])
    assert result.exit_code == 2 and "not one of" in result.output and "Traceback" not in result.output

