"""The search server on an ONNX export: queries answered without importing torch, equal to the normal path.

The index is built the normal way (PyTorch model, feature cache); the export
comes from ``export_model``. A subprocess starts the real app on the export
and answers text, photo and "more like this" queries, once as is (torch must
not be in ``sys.modules`` afterwards) and once with torch made unimportable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from modalens import models
from modalens.backends import ENV_VAR as BACKEND_ENV
from modalens.backends import tower_backend
from modalens.backends.runtime import read_manifest, write_manifest
from modalens.catalog import read_catalog
from modalens.index import IndexMismatchError
from modalens.query_encoder import ExportMismatchError, OnnxQueryEncoder
from modalens.search import SearchEngine
from modalens.serving import ServeSettings, create_app
from modalens.models.factory import DEFAULT_MODEL

QUERIES = ["navy blue check shirt", "running shoes", "women's black leather handbag", "gold analogue watch", "a", "jeans " * 40]
KEY = "test-key"
#: Agreement asked of torch-free query vectors with the normal path (measured: about 1e-7).
MAX_ABS_DIFF = 1e-4
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def torch_engine(mini_catalog, tmp_path_factory):
    """The normal path, all in PyTorch: an index of the mini catalogue and the engine that built it, its towers forced
    onto the torch back-end (by default they would run in ONNX Runtime, and ONNX would be compared with ONNX)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(BACKEND_ENV, "torch")
        engine = SearchEngine(tmp_path_factory.mktemp("torch-free") / "index", progress=False)
        engine.build(read_catalog(mini_catalog))
        assert tower_backend(engine.model.image_tower) == tower_backend(engine.model.text_tower) == "torch"
        yield engine
        engine.close()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, torch_engine) -> Path:
    from modalens.export import export_model

    return export_model(DEFAULT_MODEL, tmp_path_factory.mktemp("export") / "lite-onnx").folder


@pytest.fixture(scope="module")
def onnx_engine(torch_engine, export_dir):
    engine = SearchEngine(torch_engine.index_dir, models.load(DEFAULT_MODEL, onnx_dir=export_dir), progress=False)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def products(mini_catalog):
    return read_catalog(mini_catalog).products


def _agree(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= MAX_ABS_DIFF
    cosine = (got * expected).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(expected, axis=-1))
    assert np.all(cosine >= MIN_COSINE)


def test_text_and_photo_query_vectors_equal_the_torch_path(torch_engine, onnx_engine, products):
    # the two sides really are two back-ends: PyTorch towers and heads here, the ONNX export there
    assert torch_engine.query_encoder.backend == "torch" and onnx_engine.query_encoder.backend == "onnx-export"
    assert tower_backend(torch_engine.model.image_tower) == tower_backend(torch_engine.model.text_tower) == "torch"
    for query in QUERIES:
        _agree(onnx_engine.query_vector(query), torch_engine.query_vector(query))
    wide = Image.open(products[0].image).convert("RGB").resize((180, 61))  # letterboxed, not square
    for photo in [products[3].image, products[17].image, wide]:
        _agree(onnx_engine.query_vector(image=photo), torch_engine.query_vector(image=photo))
    _agree(onnx_engine.query_vector(QUERIES[0], products[5].image), torch_engine.query_vector(QUERIES[0], products[5].image))


def test_the_query_cache_works_on_the_export(onnx_engine, monkeypatch):
    calls = []
    encode = onnx_engine.query_encoder.encode_text
    monkeypatch.setattr(onnx_engine.query_encoder, "encode_text", lambda texts: calls.append(list(texts)) or encode(texts))
    onnx_engine._text_vector.cache_clear()
    first = onnx_engine.search("red  summer dress", k=3)
    again = onnx_engine.search("red summer   dress", k=3)  # the same words: answered from the cache
    assert [h.id for h in first] == [h.id for h in again]
    assert calls == [["red summer dress"]]
    assert onnx_engine._text_vector.cache_info().hits == 1


_SERVER = textwrap.dedent(
    """
    import json, sys
    if BLOCK_TORCH:
        sys.modules["torch"] = None  # any `import torch` now fails
    from fastapi.testclient import TestClient
    from modalens.serving import ServeSettings, create_app

    settings = ServeSettings(INDEX, onnx_dir=EXPORT)
    out = {}
    with TestClient(create_app(settings)) as client:
        out["health"] = client.get("/health").json()
        out["text"] = {q: [r["id"] for r in client.post("/api/search", json={"q": q, "k": 5}).json()["results"]] for q in QUERIES}
        with open(PHOTO, "rb") as f:
            response = client.post("/api/search/image", files={"image": ("q.jpg", f.read(), "image/jpeg")}, data={"k": "5"})
        out["photo"] = [r["id"] for r in response.json()["results"]]
        out["similar"] = [r["id"] for r in client.get(f"/api/products/{SIMILAR}/similar?k=5").json()["results"]]
    out["torch_imported"] = sys.modules.get("torch") is not None
    out["transformers_imported"] = "transformers" in sys.modules
    print("RESULT " + json.dumps(out))
    """
)


def _serve_in_subprocess(index_dir: Path, export_dir: Path, photo: str, similar: str, *, block_torch: bool) -> dict:
    prelude = (
        f"BLOCK_TORCH = {block_torch!r}\nINDEX = {str(index_dir)!r}\nEXPORT = {str(export_dir)!r}\n"
        f"QUERIES = {QUERIES!r}\nPHOTO = {photo!r}\nSIMILAR = {similar!r}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MODALENS_BACKEND"}
    run = subprocess.run([sys.executable, "-c", prelude + _SERVER], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.mark.parametrize("block_torch", [False, True], ids=["torch-installed", "torch-unimportable"])
def test_server_answers_queries_without_torch(torch_engine, export_dir, products, block_torch):
    photo, similar = products[5].image, products[0].id
    out = _serve_in_subprocess(torch_engine.index_dir, export_dir, photo, similar, block_torch=block_torch)
    assert not out["torch_imported"] and not out["transformers_imported"]
    assert out["health"]["products"] == 40 and out["health"]["queries"] == "onnx-export"
    for query in QUERIES:
        assert out["text"][query] == [h.id for h in torch_engine.search(query, k=5)]
    assert out["photo"] == [h.id for h in torch_engine.search(image=photo, k=5)]
    assert out["photo"][0] == products[5].id
    assert out["similar"] == [h.id for h in torch_engine.similar(similar, k=5)]


def test_a_handle_on_an_export_never_builds_the_torch_model(torch_engine, export_dir, products, monkeypatch):
    def refuse(name):
        raise AssertionError(f"a handle on an export built the PyTorch model {name!r}")

    monkeypatch.setattr(models.handle, "create_model", refuse)
    handle = models.load(DEFAULT_MODEL, onnx_dir=export_dir)
    engine = SearchEngine(torch_engine.index_dir, handle, progress=False)
    try:
        assert handle.torch_free and handle.query_encoder.backend == "onnx-export"
        assert [h.id for h in engine.search(QUERIES[1], k=5)] == [h.id for h in torch_engine.search(QUERIES[1], k=5)]
        assert engine.search(image=products[3].image, k=1)[0].id == products[3].id
        assert [h.id for h in engine.similar(products[0].id, k=3)] == [h.id for h in torch_engine.similar(products[0].id, k=3)]
        assert not handle.loaded
    finally:
        engine.close()


def test_loading_a_handle_on_an_export_imports_no_torch(export_dir, products):
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any `import torch` now fails\n"
        "from modalens import models\n"
        f"handle = models.load({DEFAULT_MODEL!r}, onnx_dir={str(export_dir)!r})\n"
        "encoder = handle.query_encoder\n"
        f"from PIL import Image; photo = Image.open({products[3].image!r}).convert('RGB')\n"
        "vectors = [encoder.encode_text(['a red shirt']), encoder.encode_image([photo])]\n"
        "print(encoder.identity == handle.identity, [v.shape for v in vectors], handle.loaded)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "True [(1, 512), (1, 512)] False"


def test_writes_and_tagging_load_the_model_on_first_use(torch_engine, export_dir, products, tmp_path):
    index_dir = tmp_path / "index"
    shutil.copytree(torch_engine.index_dir, index_dir)
    settings = ServeSettings(index_dir, api_keys=frozenset({KEY}), onnx_dir=export_dir)
    with TestClient(create_app(settings)) as client:
        service = client.app.state.service
        assert client.post("/api/search", json={"q": "shirt"}).status_code == 200
        assert not service.handle.loaded  # queries alone never load the PyTorch model
        product = {"title": "Torch Free Test Watch", "attributes": {"article_type": "Watches"}}
        with open(products[7].image, "rb") as f:
            put = client.put(
                "/api/products/new-1", data={"product": json.dumps(product)}, files={"image": ("w.jpg", f.read(), "image/jpeg")},
                headers={"X-API-Key": KEY},
            )
        assert put.status_code == 200, put.text
        assert service.handle.loaded
        with open(products[7].image, "rb") as f:
            found = client.post("/api/search/image", files={"image": ("w.jpg", f.read(), "image/jpeg")}, data={"k": "2"}).json()
        assert {r["id"] for r in found["results"]} == {"new-1", products[7].id}
        with open(products[7].image, "rb") as f:
            tags = client.post("/api/tag", files={"image": ("w.jpg", f.read(), "image/jpeg")}, data={"labels": "watch,shoes,jeans"})
        assert tags.status_code == 200


def _edited_export(export_dir: Path, folder: Path, **changes) -> Path:
    shutil.copytree(export_dir, folder)
    manifest = read_manifest(folder)
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    write_manifest(folder, manifest)
    return folder


def test_an_export_of_another_model_is_refused(torch_engine, export_dir, tmp_path):
    old = _edited_export(export_dir, tmp_path / "old", model_identity=None)
    with pytest.raises(ExportMismatchError, match="run `modalens export` again"):
        OnnxQueryEncoder(old)
    other = _edited_export(export_dir, tmp_path / "other", model_identity=f"{DEFAULT_MODEL}@0000000000")
    with pytest.raises(ExportMismatchError, match="not 'modalens-base'"):
        OnnxQueryEncoder(other, model="modalens-base")
    engine = SearchEngine(torch_engine.index_dir, models.load(DEFAULT_MODEL, onnx_dir=other), progress=False)
    with pytest.raises(IndexMismatchError):
        engine.search("shirt")


def test_the_export_folder_comes_from_the_environment_or_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MODALENS_ONNX_DIR", str(tmp_path / "from-env"))
    assert ServeSettings.from_env(tmp_path).onnx_dir == tmp_path / "from-env"
    assert ServeSettings.from_env(tmp_path, onnx_dir=tmp_path / "flag").onnx_dir == tmp_path / "flag"  # --onnx wins
    monkeypatch.setenv("MODALENS_ONNX_DIR", "")
    assert ServeSettings.from_env(tmp_path).onnx_dir is None
