"""The REST API on real photos: search by words, photo, both and "more like this"; tagging; products; jobs; bad input."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modalens.catalog import read_catalog
from modalens.search import SearchEngine
from modalens.serving import ServeSettings, create_app

KEY = "test-key"


@pytest.fixture(scope="module")
def client(mini_catalog, tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("serve") / "index"
    engine = SearchEngine(index_dir, progress=False)
    engine.build(read_catalog(mini_catalog))
    engine.close()
    # ingest may read the tests' temporary folders and the fixture photos, nothing else
    roots = (tmp_path_factory.getbasetemp(), mini_catalog.parent)
    settings = ServeSettings(index_dir, api_keys=frozenset({KEY}), ingest_roots=roots)
    with TestClient(create_app(settings, engine.handle)) as c:
        yield c


@pytest.fixture(scope="module")
def products(mini_catalog):
    return read_catalog(mini_catalog).products


def jpeg_bytes(path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_health_openapi_and_metrics(client):
    assert client.get("/health").json()["products"] == 40
    schema = client.get("/openapi.json").json()
    assert {"/api/search", "/api/search/image", "/api/tag", "/api/products/{product_id}"} <= set(schema["paths"])
    client.post("/api/search", json={"q": "shirt"})
    metrics = client.get("/metrics").text
    assert 'modalens_requests_total{method="POST",route="/api/search",status="200"}' in metrics
    assert "modalens_indexed_products 40.0" in metrics


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_load_their_files_from_this_server(client, path):
    """No CDN: every script and stylesheet the docs pages name is a path on this server, and it is served."""
    import re

    html = client.get(path).text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert assets and not [a for a in assets if "://" in a or a.startswith("//")], assets
    for asset in (a for a in assets if a.startswith("/static-docs/")):
        assert client.get(asset).status_code == 200, asset


def test_text_search_with_filter_and_paging(client):
    first = client.post("/api/search", json={"q": "watch", "k": 5}).json()
    assert len(first["results"]) == 5 and first["results"][0]["attributes"]["article_type"] == "Watches"
    second = client.post("/api/search", json={"q": "watch", "k": 5, "offset": 5}).json()
    assert not {r["id"] for r in first["results"]} & {r["id"] for r in second["results"]}
    women = client.post("/api/search", json={"q": "shoes", "k": 40, "filters": {"gender": "Women"}}).json()["results"]
    assert women and {r["attributes"]["gender"] for r in women} == {"Women"}


def test_filters_take_the_catalogues_column_names_and_list_the_allowed_ones(client):
    """One vocabulary with the CLI: articleType/baseColour are the catalogue's names for article_type/colour."""
    by_column = client.post("/api/search", json={"q": "black", "k": 40, "filters": {"articleType": "Watches", "baseColour": ["Black"]}})
    by_name = client.post("/api/search", json={"q": "black", "k": 40, "filters": {"article_type": "Watches", "colour": "Black"}})
    assert by_column.status_code == 200 and by_column.json()["results"] == by_name.json()["results"]
    assert {r["id"] for r in by_column.json()["results"]} == {"11652", "13839"}
    unknown = client.post("/api/search", json={"q": "shirt", "filters": {"colr": "Blue"}})
    assert unknown.status_code == 400 and "allowed: " in unknown.json()["detail"] and "colour (baseColour, color)" in unknown.json()["detail"]


def test_facets_come_from_the_data(client):
    facets = client.get("/api/facets").json()
    names = [f["name"] for f in facets["fields"]]
    assert names[:3] == ["gender", "article_type", "colour"] and "split" not in names  # the mini catalogue's KAGL columns
    assert all(2 <= len(f["values"]) <= 60 for f in facets["fields"]) and facets["price"] is None and facets["products"] == 40


def test_facets_of_a_custom_catalogue_offer_brand_and_price(client, tmp_path):
    shop = read_catalog(Path(__file__).parents[1] / "fixtures" / "custom-shop" / "products.csv")
    engine = SearchEngine(tmp_path / "shop", client.app.state.service.handle, progress=False)
    engine.build(shop)
    engine.close()
    with TestClient(create_app(ServeSettings(tmp_path / "shop"), client.app.state.service.handle)) as c:
        facets = c.get("/api/facets").json()
        assert [f["name"] for f in facets["fields"]] == ["brand"]  # no empty KAGL menus
        assert {v["value"]: v["count"] for v in facets["fields"][0]["values"]}["Benetton"] == 5
        assert facets["price"] == {"min": 9.99, "max": 129.0, "count": 20}
        hit = c.post("/api/search", json={"q": "watch", "k": 1, "filters": {"brand": "Puma"}, "price_min": 100}).json()["results"][0]
        assert (hit["id"], hit["price"], hit["attributes"]) == ("SKU-004", 129.0, {"brand": "Puma"})


def test_a_product_names_its_photos_by_url_never_by_server_path(client, products):
    response = client.get(f"/api/products/{products[0].id}")
    record = response.json()
    assert "images" not in record and record["image_urls"] == [f"/api/products/{products[0].id}/image?n=0"]
    assert str(products[0].image) not in response.text and str(Path(products[0].image).parent) not in response.text
    assert client.get(record["image_urls"][0]).headers["content-type"] == "image/jpeg"


def test_photo_search_finds_the_product_and_serves_its_image(client, products):
    target = products[5]
    response = client.post("/api/search/image", files={"image": ("q.jpg", jpeg_bytes(target.image), "image/jpeg")}, data={"k": "3"})
    top = response.json()["results"][0]
    assert top["id"] == target.id
    image = client.get(top["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"


def test_more_like_this_excludes_the_product_itself(client, products):
    results = client.get(f"/api/products/{products[0].id}/similar?k=5").json()["results"]
    assert len(results) == 5 and products[0].id not in {r["id"] for r in results}


def test_tag_an_upload(client, products):
    watch = next(p for p in products if p.get("article_type") == "Watches")
    response = client.post(
        "/api/tag", files={"image": ("w.jpg", jpeg_bytes(watch.image), "image/jpeg")}, data={"labels": "watch,shoes,jeans,handbag"}
    )
    assert response.json()["labels"][0]["label"] == "watch"


def test_product_create_update_delete_needs_a_key(client, products):
    source = products[3]
    record = json.dumps({"title": "Test Product Blue Backpack", "attributes": {"article_type": "Backpacks", "gender": "Unisex"}})
    upload = {"image": ("p.jpg", jpeg_bytes(source.image), "image/jpeg")}
    assert client.put("/api/products/new-1", data={"product": record}, files=upload).status_code == 401
    created = client.put("/api/products/new-1", data={"product": record}, files=upload, headers={"X-API-Key": KEY})
    assert created.status_code == 200 and created.json()["added"] == 1
    assert client.get("/api/products/new-1").json()["title"] == "Test Product Blue Backpack"
    renamed = json.dumps({"title": "Renamed", "attributes": {"article_type": "Backpacks"}})
    assert client.put("/api/products/new-1", data={"product": renamed}, headers={"X-API-Key": KEY}).status_code == 200
    assert client.get("/api/products/new-1").json()["title"] == "Renamed"
    assert client.delete("/api/products/new-1").status_code == 401
    assert client.delete("/api/products/new-1", headers={"X-API-Key": KEY}).json()["deleted"] is True
    assert client.get("/api/products/new-1").status_code == 404


def test_bulk_ingest_job_reports_progress(client, mini_catalog, tmp_path):
    lines = mini_catalog.read_text().splitlines()
    extra = tmp_path / "more.csv"
    extra.write_text("\n".join([lines[0]] + [line.replace(line.split(",")[0], "copy-" + line.split(",")[0], 1) for line in lines[1:6]]) + "\n")
    (tmp_path / "images").symlink_to(mini_catalog.parent / "images")
    job = client.post("/api/ingest", json={"source": str(extra)}, headers={"X-API-Key": KEY}).json()
    for _ in range(200):
        status = client.get(f"/api/jobs/{job['id']}").json()
        if status["state"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert status["state"] == "done" and status["added"] == 5 and status["done"] == status["total"] == 5
    assert client.get("/api/products/copy-" + lines[1].split(",")[0]).status_code == 200
    for i in range(1, 6):
        client.delete("/api/products/copy-" + lines[i].split(",")[0], headers={"X-API-Key": KEY})


@pytest.mark.parametrize(
    "call, status, message",
    [
        (lambda c: c.post("/api/search", json={"q": "shirt", "k": 100000}), 422, "less than or equal"),
        (lambda c: c.post("/api/search", json={"q": "   "}), 422, "q must contain words"),
        (lambda c: c.post("/api/search", json={"q": "shirt", "filters": {"colr": "Blue"}}), 400, "unknown filter"),
        (lambda c: c.post("/api/search", content=b"{not json", headers={"content-type": "application/json"}), 422, "JSON"),
        (lambda c: c.post("/api/search/image", files={"image": ("x.jpg", b"plain text", "image/jpeg")}), 400, "not a usable image"),
        (lambda c: c.post("/api/search/image", files={"image": ("x.jpg", b"\xff" * (11 * 2**20), "image/jpeg")}), 413, "larger than"),
        (lambda c: c.get("/api/products/nope"), 404, "no product"),
        (lambda c: c.get("/api/products/nope/similar"), 404, "no product"),
        (lambda c: c.get("/api/jobs/nope"), 404, "no job"),
        (lambda c: c.post("/api/tag", files={"image": ("x.png", b"", "image/png")}, data={"labels": "a"}), 400, "empty"),
    ],
)
def test_bad_input_gets_a_clear_4xx(client, call, status, message):
    response = call(client)
    assert response.status_code == status, response.text
    assert message in response.text


def test_decompression_bomb_is_refused(client):
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, format="PNG")  # 81 MP, a few kB on disk
    response = client.post("/api/search/image", files={"image": ("bomb.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 400 and "pixels" in response.text


def test_writes_refused_when_no_key_is_configured(mini_catalog, tmp_path, client):
    settings = ServeSettings(tmp_path / "empty-index")
    with TestClient(create_app(settings, client.app.state.service.handle)) as c:
        assert c.get("/health").json()["products"] == 0
        assert c.delete("/api/products/x", headers={"X-API-Key": "anything"}).status_code == 403


def test_hybrid_search_over_the_api(client, products):
    target = next(p for p in products if p.title.startswith("Wildcraft"))
    results = client.post("/api/search", json={"q": "Wildcraft", "k": 3, "hybrid": 0.5}).json()["results"]
    assert results[0]["id"] == target.id
    assert client.post("/api/search", json={"q": "Wildcraft", "hybrid": 2}).status_code == 422


def test_serves_fashion_mnist_too(tmp_path, client):
    """The same service on Debian's Fashion-MNIST: 28-px greyscale thumbnails index, serve and search."""
    from pathlib import Path

    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    catalog = read_catalog("fashion-mnist:test", limit=60)
    engine = SearchEngine(tmp_path / "fmnist", client.app.state.service.handle, progress=False)
    assert engine.build(catalog).added == 60
    engine.close()
    settings = ServeSettings(tmp_path / "fmnist")
    with TestClient(create_app(settings, client.app.state.service.handle)) as c:
        assert c.get("/health").json()["products"] == 60
        probe = catalog.products[11]
        found = c.post("/api/search/image", files={"image": ("f.png", Path(probe.image).read_bytes(), "image/png")}).json()
        assert found["results"][0]["id"] == probe.id
        text = c.post("/api/search", json={"q": "ankle boot", "k": 5}).json()["results"]
        assert len(text) == 5 and all(r["attributes"]["article_type"] in {p.get("article_type") for p in catalog} for r in text)
        facets = {f["name"]: f["values"] for f in c.get("/api/facets").json()["fields"]}
        assert sum(f["count"] for f in facets["article_type"]) == 60


def test_review_page_mounts_beside_search_when_configured(tmp_path, client):
    settings = ServeSettings(tmp_path / "index", review_db=str(tmp_path / "reviews.sqlite"))
    with TestClient(create_app(settings, client.app.state.service.handle)) as c:
        assert c.get("/review/").status_code == 200
        assert "/review/api/decide" in c.get("/openapi.json").json()["paths"]
    assert client.get("/review/").status_code == 404  # not mounted without a review database
