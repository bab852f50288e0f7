"""The API's edges under attack: malformed input is a clean 4xx (never a 500), odd ids work end to end,
bodies are limited before they are read, ingest stays inside the operator's roots, and reads can need a key."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modalens.catalog import read_catalog
from modalens.search import SearchEngine
from modalens.serving import ServeSettings, create_app

KEY = "edge-key"


def jpeg_bytes(path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def built(mini_catalog, tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("edges") / "index"
    engine = SearchEngine(index_dir, progress=False)
    engine.build(read_catalog(mini_catalog))
    engine.close()
    return index_dir, engine.handle  # one model handle shared by every app of the module


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ingest-root")


@pytest.fixture(scope="module")
def client(built, roots):
    index_dir, model = built
    settings = ServeSettings(index_dir, api_keys=frozenset({KEY}), ingest_roots=(roots,))
    with TestClient(create_app(settings, model)) as c:
        yield c


@pytest.fixture(scope="module")
def products(mini_catalog):
    return read_catalog(mini_catalog).products


def no_traceback(response, *statuses: int) -> None:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text and response.json()["detail"]


# ----------------------------------------------------------------- malformed input: 4xx, never 500

DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    "filters",
    [
        '{"gender": null}',
        '{"gender": 5}',
        '{"gender": NaN}',
        '{"gender": ["Women", null]}',
        '{"gender": {"nested": "Women"}}',
        '{"gender": ' + DEEP + "}",
        DEEP,
        '{"gender": ' + "[" * 40 + '"Women"' + "]" * 40 + "}",
        "[]",
        "null",
        "{not json",
    ],
)
def test_photo_search_refuses_malformed_filters_cleanly(client, products, filters):
    upload = {"image": ("q.jpg", jpeg_bytes(products[0].image), "image/jpeg")}
    no_traceback(client.post("/api/search/image", files=upload, data={"filters": filters}), 400, 422)


@pytest.mark.parametrize("value", [None, 5, ["Women", None], {"nested": "Women"}])
def test_both_searches_answer_a_bad_filter_value_alike(client, products, value):
    """One validation path: the JSON body's filters and the photo form's filters give the same status."""
    by_words = client.post("/api/search", json={"q": "shirt", "filters": {"gender": value}})
    upload = {"image": ("q.jpg", jpeg_bytes(products[0].image), "image/jpeg")}
    by_photo = client.post("/api/search/image", files=upload, data={"filters": json.dumps({"gender": value})})
    assert by_words.status_code == by_photo.status_code == 422, (by_words.text, by_photo.text)
    unknown = client.post("/api/search/image", files=upload, data={"filters": '{"colr": "Blue"}'})
    assert unknown.status_code == 400 and "unknown filter" in unknown.text


def test_search_body_nested_deeply_is_a_4xx(client):
    deep = '{"q": "shirt", "filters": {"gender": ' + DEEP + "}}"
    no_traceback(client.post("/api/search", content=deep.encode(), headers={"content-type": "application/json"}), 400, 422)


@pytest.mark.parametrize(
    "record",
    [
        DEEP,
        '{"title": "x", "extra": ' + '{"a": ' * 100 + "1" + "}" * 100 + "}",
        '{"title": {"en": "Shirt"}}',
        '{"title": "Shirt", "attributes": ["gender", "Men"]}',
        '{"title": "Shirt", "attributes": {"gender": {"x": 1}}}',
        '{"title": "Shirt", "attributes": {"gender": true}}',
        '{"title": "Shirt", "price": true}',
        '{"title": "Shirt", "price": "12.5"}',
        '{"title": "Shirt", "price": NaN}',
        '{"title": "Shirt", "price": -3}',
        '{"title": "Shirt", "colour": "Blue"}',
        '{"id": "someone-else", "title": "Shirt"}',
        '["not", "an", "object"]',
    ],
)
def test_put_refuses_bad_records_with_422(client, products, record):
    upload = {"image": ("p.jpg", jpeg_bytes(products[1].image), "image/jpeg")}
    response = client.put("/api/products/bad-1", data={"product": record}, files=upload, headers={"X-API-Key": KEY})
    no_traceback(response, 422)
    assert client.get("/api/products/bad-1").status_code == 404  # nothing was written


def test_put_keeps_good_types_as_given(client, products):
    record = json.dumps({"title": "Typed", "attributes": {"gender": "Men", "year": 2012}, "price": 12})
    upload = {"image": ("p.jpg", jpeg_bytes(products[1].image), "image/jpeg")}
    assert client.put("/api/products/typed-1", data={"product": record}, files=upload, headers={"X-API-Key": KEY}).status_code == 200
    stored = client.get("/api/products/typed-1").json()
    assert stored["price"] == 12.0 and stored["attributes"] == {"gender": "Men", "year": "2012"}
    client.delete("/api/products/typed-1", headers={"X-API-Key": KEY})


# ----------------------------------------------------------------- ids


@pytest.mark.parametrize("odd", ["shoes/red-1", "a?b#c d", "deep/sub/folder/item 7"])
def test_ids_with_slashes_and_url_characters_work_end_to_end(client, products, odd):
    path = "/api/products/" + quote(odd, safe="")
    record = json.dumps({"title": "Odd id product", "attributes": {"brand": "OddBrand", "gender": "Men"}})
    upload = {"image": ("p.jpg", jpeg_bytes(products[2].image), "image/jpeg")}
    created = client.put(path, data={"product": record}, files=upload, headers={"X-API-Key": KEY})
    assert created.status_code == 200 and created.json()["id"] == odd, created.text
    try:
        assert client.get(path).json()["id"] == odd
        hits = client.post("/api/search", json={"q": "odd id product", "k": 50, "filters": {"brand": "OddBrand"}}).json()["results"]
        hit = next(h for h in hits if h["id"] == odd)
        photo = client.get(hit["image_url"])
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
        assert odd not in {h["id"] for h in client.get(path + "/similar?k=5").json()["results"]}
        assert client.get(path + "/image").status_code == 200
    finally:
        assert client.delete(path, headers={"X-API-Key": KEY}).json()["deleted"] is True
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("bad", ["nul\x00id", "new\nline", "tab\tid", "x" * 513, " padded"])
def test_ids_with_control_characters_or_too_long_are_refused(client, products, bad):
    path = "/api/products/" + quote(bad, safe="")
    record = json.dumps({"title": "Bad id"})
    upload = {"image": ("p.jpg", jpeg_bytes(products[2].image), "image/jpeg")}
    no_traceback(client.put(path, data={"product": record}, files=upload, headers={"X-API-Key": KEY}), 422)
    no_traceback(client.get(path), 422)
    no_traceback(client.get(path + "/similar"), 422)
    no_traceback(client.delete(path, headers={"X-API-Key": KEY}), 422)


def test_an_id_of_512_characters_is_fine(client):
    assert client.get("/api/products/" + "x" * 512).status_code == 404


# ----------------------------------------------------------------- body limits, before the body is read


def run_asgi(app, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks):
    """Drive the ASGI app directly with a streamed body; returns (status, body, bytes the app pulled)."""
    pulled = 0
    sent: list[dict] = []
    iterator = iter(chunks)

    async def receive():
        nonlocal pulled
        try:
            chunk = next(iterator)
        except StopIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, pulled


CHUNK = 64 * 2**10


def endless(first: bytes, total: int):
    """A body of ``total`` bytes, streamed in 64 KiB chunks (no Content-Length: chunked)."""
    yield first
    sent = len(first)
    while sent < total:
        yield b" " * CHUNK
        sent += CHUNK


def test_a_streamed_json_body_over_the_limit_is_refused_without_being_read(client):
    limit = client.app.state.settings.max_json_bytes
    chunks = endless(b'{"q": "shirt", "pad": "', 3 * limit)
    status, body, pulled = run_asgi(client.app, "POST", "/api/search", [(b"content-type", b"application/json")], chunks)
    assert status == 413 and b"larger than" in body
    assert pulled <= limit + CHUNK + 64, f"the server read {pulled} bytes of a body over its {limit}-byte limit"


def test_a_streamed_upload_over_the_limit_is_refused_without_being_read(client):
    limit = client.app.state.settings.max_multipart_bytes
    head = b'--B\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    chunks = endless(head, 2 * limit)
    status, body, pulled = run_asgi(client.app, "POST", "/api/search/image", [(b"content-type", b"multipart/form-data; boundary=B")], chunks)
    assert status == 413 and b"larger than" in body
    assert pulled <= limit + CHUNK + len(head)


def test_an_announced_oversize_body_is_refused_before_a_byte_is_read(client):
    limit = client.app.state.settings.max_json_bytes
    headers = [(b"content-type", b"application/json"), (b"content-length", str(300 * 2**20).encode())]
    status, body, pulled = run_asgi(client.app, "POST", "/api/search", headers, endless(b"{", 2 * limit))  # 300 MB announced
    assert status == 413 and pulled == 0
    status, _, pulled = run_asgi(client.app, "PUT", "/api/products/x", [(b"content-type", b"multipart/form-data; boundary=B"), (b"content-length", str(limit * 50).encode())], iter(()))
    assert status == 413 and pulled == 0


def test_a_streamed_body_under_the_limit_is_answered(client):
    body = json.dumps({"q": "watch", "k": 3}).encode()
    status, answer, _ = run_asgi(client.app, "POST", "/api/search", [(b"content-type", b"application/json")], iter([body[:10], body[10:]]))
    assert status == 200 and len(json.loads(answer)["results"]) == 3


# ----------------------------------------------------------------- ingest roots


def ingest(client, source):
    return client.post("/api/ingest", json={"source": source}, headers={"X-API-Key": KEY})


def wait(client, job: dict) -> dict:
    import time

    for _ in range(300):
        status = client.get(f"/api/jobs/{job['id']}").json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.1)
    raise AssertionError("job did not finish")


def small_csv(mini_catalog: Path, folder: Path, prefix: str, n: int = 3) -> Path:
    """A catalogue of ``n`` fixture products with their photos copied into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    rows = ["id,image,title,articleType"]
    for p in read_catalog(mini_catalog).products[:n]:
        Image.open(p.image).save(folder / "images" / f"{p.id}.jpg", quality=70)
        rows.append(f"{prefix}{p.id},images/{p.id}.jpg,{p.title},{p.get('article_type')}")
    path = folder / "products.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("source", ["", "   ", "/", "/etc", "/etc/passwd", "relative/products.csv", ".", "kagl", "kagl:test"])
def test_ingest_outside_the_roots_is_forbidden(client, source):
    response = ingest(client, source)
    no_traceback(response, 403)


def test_ingest_resolves_symlinks_and_dotdot_before_checking(client, roots, mini_catalog, tmp_path):
    outside = small_csv(mini_catalog, tmp_path / "outside", "out-")
    link = roots / "link-to-outside"
    link.symlink_to(outside.parent)
    assert "outside" in ingest(client, str(link / "products.csv")).json()["detail"]
    assert ingest(client, str(link / "products.csv")).status_code == 403
    assert ingest(client, str(roots / ".." / outside.parent.name)).status_code == 403


def test_ingest_inside_a_root_works_and_photos_outside_are_refused(client, roots, mini_catalog, tmp_path):
    inside = small_csv(mini_catalog, roots / "good", "in-")
    job = ingest(client, str(inside))
    assert job.status_code == 202
    done = wait(client, job.json())
    assert done["state"] == "done" and done["added"] == 3 and done["skipped_rows"] == 0
    # a catalogue inside the root that names photos outside it: those products are skipped and reported
    elsewhere = small_csv(mini_catalog, tmp_path / "photos", "x-")
    sneaky = roots / "sneaky"
    sneaky.mkdir()
    (sneaky / "products.csv").write_text(elsewhere.read_text().replace("images/", str(elsewhere.parent / "images") + "/"))
    done = wait(client, ingest(client, str(sneaky / "products.csv")).json())
    assert done["state"] == "done" and done["added"] == 0 and done["skipped_rows"] == 3
    assert "outside the ingest roots" in done["problems"][0]
    first = read_catalog(mini_catalog).products[0].id
    assert client.get(f"/api/products/x-{first}").status_code == 404
    for p in read_catalog(mini_catalog).products[:3]:
        client.delete(f"/api/products/in-{p.id}", headers={"X-API-Key": KEY})


def test_ingest_is_refused_when_no_root_is_configured(built, roots, mini_catalog):
    index_dir, model = built
    with TestClient(create_app(ServeSettings(index_dir, api_keys=frozenset({KEY})), model)) as c:
        response = ingest(c, str(roots))
        assert response.status_code == 403 and "--ingest-root" in response.json()["detail"]


def test_ingest_roots_come_from_the_environment_too(tmp_path, monkeypatch):
    monkeypatch.setenv("MODALENS_INGEST_ROOTS", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert ServeSettings.from_env(tmp_path).ingest_roots == (tmp_path / "a", tmp_path / "b")
    monkeypatch.setenv("MODALENS_INGEST_ROOTS", "")
    assert ServeSettings.from_env(tmp_path).ingest_roots == ()


# ----------------------------------------------------------------- reads that need a key


@pytest.fixture(scope="module")
def locked(built, tmp_path_factory):
    """A server with MODALENS_READ_REQUIRES_KEY=1 semantics, and a review queue with one reviewer."""
    from modalens.matching.offers import Offer
    from modalens.matching.review import ReviewQueue

    index_dir, model = built
    db = tmp_path_factory.mktemp("locked") / "reviews.sqlite"
    with ReviewQueue(db) as q:
        q.add_pairs([(Offer("n-1", title="Blue shirt"), Offer("c-1", title="Navy shirt"), 0.8, 0.5, "doubtful")])
        reviewer_key = q.add_reviewer("ann")
    settings = ServeSettings(index_dir, api_keys=frozenset({KEY}), read_requires_key=True, review_db=str(db))
    with TestClient(create_app(settings, model)) as c:
        yield c, reviewer_key


READS = [
    ("POST", "/api/search", {"json": {"q": "shirt"}}),
    ("GET", "/api/facets", {}),
    ("GET", "/api/products/nope", {}),
    ("GET", "/api/products/nope/similar", {}),
    ("GET", "/api/products/nope/image", {}),
    ("GET", "/api/jobs/nope", {}),
    ("POST", "/api/scenes/search", {"json": {"q": "belt"}}),
    ("POST", "/api/scenes/search/image", {"files": {"image": ("p.png", b"not a photo", "image/png")}}),
    ("GET", "/api/scenes/nope/image", {}),
    ("GET", "/review/api/stats", {}),
    ("GET", "/review/api/image/n-1||c-1/left/0", {}),
]


@pytest.mark.parametrize("method, path, kwargs", READS)
def test_reads_need_a_key_when_the_server_says_so(locked, method, path, kwargs):
    c, _ = locked
    assert c.request(method, path, **kwargs).status_code == 401
    assert c.request(method, path, headers={"X-API-Key": "wrong"}, **kwargs).status_code == 401
    assert c.request(method, path, headers={"X-API-Key": KEY}, **kwargs).status_code != 401


def test_the_read_key_setting_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MODALENS_READ_REQUIRES_KEY", "1")
    assert ServeSettings.from_env(tmp_path).read_requires_key is True
    monkeypatch.setenv("MODALENS_READ_REQUIRES_KEY", "0")
    assert ServeSettings.from_env(tmp_path).read_requires_key is False


def test_the_upload_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MODALENS_UPLOAD_DIR", raising=False)
    assert ServeSettings.from_env(tmp_path).uploads_folder == tmp_path / "uploads"
    monkeypatch.setenv("MODALENS_UPLOAD_DIR", str(tmp_path / "shared"))
    assert ServeSettings.from_env(tmp_path).uploads_folder == tmp_path / "shared"


def test_an_unknown_scene_photo_is_a_json_404(client):
    no_traceback(client.get("/api/scenes/no-such-scene/image"), 404)
    no_traceback(client.get("/api/scenes/a/b/image"), 404)  # ids may hold "/", as product ids may


def test_a_reviewer_key_reads_and_decides_but_an_api_key_cannot_decide(locked):
    c, reviewer_key = locked
    assert c.get("/review/api/stats", headers={"X-API-Key": reviewer_key}).status_code == 200
    assert c.post("/api/search", json={"q": "shirt"}, headers={"X-API-Key": reviewer_key}).status_code == 200
    # an API key allows reads and writes, but names no reviewer: it cannot decide matches
    assert c.get("/review/api/next", headers={"X-API-Key": KEY}).status_code == 403
    assert c.post("/review/api/decide", json={"pair_id": "n-1||c-1", "decision": "match"}, headers={"X-API-Key": KEY}).status_code == 403
    assert c.post("/review/api/decide", json={"pair_id": "n-1||c-1", "decision": "match"}).status_code == 401
    # a reviewer key is no write key
    assert c.delete("/api/products/anything", headers={"X-API-Key": reviewer_key}).status_code == 401
    pair = c.get("/review/api/next", headers={"X-API-Key": reviewer_key}).json()["pair"]
    assert pair["id"] == "n-1||c-1"
    assert c.post("/review/api/decide", json={"pair_id": pair["id"], "decision": "match"}, headers={"X-API-Key": reviewer_key}).json()["reviewer"] == "ann"
