"""``POST /v1/embeddings`` with the official ``openai`` Python client against a real local server (issue 18 item 8)."""

from __future__ import annotations

import base64
import threading
import time

import numpy as np
import pytest
import uvicorn
from browser import free_port

from modalens.api import Model
from modalens.catalog import read_catalog
from modalens.search import SearchEngine
from modalens.serving import ServeSettings, create_app
from modalens.models.factory import DEFAULT_MODEL

openai = pytest.importorskip("openai", reason="the openai client is a dev dependency (pip install openai)")

KEY = "embed-key"


@pytest.fixture(scope="module")
def server(mini_catalog, tmp_path_factory):
    """A real HTTP server (uvicorn on 127.0.0.1) whose reads need a key: the client sends it as a Bearer token."""
    index_dir = tmp_path_factory.mktemp("v1") / "index"
    engine = SearchEngine(index_dir, progress=False)
    engine.ensure_index()
    engine.close()
    settings = ServeSettings(index_dir, api_keys=frozenset({KEY}), read_requires_key=True)
    app = create_app(settings, engine.handle)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(600):
        if uv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", engine.handle
    uv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def products(mini_catalog):
    return read_catalog(mini_catalog).products


def data_url(path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(open(path, "rb").read()).decode()


@pytest.mark.parametrize("encoding_format", [None, "float"])  # None: the client's default, base64 float32
def test_texts_embed_as_the_python_api_does(client, server, encoding_format):
    kwargs = {} if encoding_format is None else {"encoding_format": encoding_format}
    response = client.embeddings.create(model=DEFAULT_MODEL, input=["red dress", "black analog watch"], **kwargs)
    vectors = np.array([d.embedding for d in response.data], dtype=np.float32)
    assert [d.index for d in response.data] == [0, 1] and response.model == DEFAULT_MODEL
    assert vectors.shape == (2, 512) and response.usage.prompt_tokens == 5
    np.testing.assert_allclose(vectors, Model(server[1]).encode_text(["red dress", "black analog watch"]), atol=1e-5)


def test_photos_as_data_urls_share_the_space_with_texts(client, server, products):
    watch = next(p for p in products if p.get("article_type") == "Watches")
    shirt = next(p for p in products if p.get("article_type") == "Shirts")
    response = client.embeddings.create(model=DEFAULT_MODEL, input=[data_url(watch.image), data_url(shirt.image), "a wrist watch"])
    photos = np.array([d.embedding for d in response.data[:2]])
    text = np.array(response.data[2].embedding)
    np.testing.assert_allclose(photos, Model(server[1]).encode_images([watch.image, shirt.image]), atol=1e-4)
    assert text @ photos[0] > text @ photos[1]  # the words find the watch, not the shirt


def test_one_string_and_the_model_list(client):
    single = client.embeddings.create(model="modalens", input="white sneakers")
    assert len(single.data) == 1 and len(single.data[0].embedding) == 512
    assert [m.id for m in client.models.list()] == [DEFAULT_MODEL]


def test_errors_come_in_openais_shape(client, server):
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert missing.value.body["code"] == "model_not_found" and DEFAULT_MODEL in missing.value.body["message"]
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(model=DEFAULT_MODEL, input=[[1, 2, 3]])
    with pytest.raises(openai.BadRequestError, match="not a usable image"):
        client.embeddings.create(model=DEFAULT_MODEL, input="data:image/png;base64," + base64.b64encode(b"not a png").decode())
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model=DEFAULT_MODEL, input="x", dimensions=64)
    stranger = openai.OpenAI(base_url=server[0] + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.embeddings.create(model=DEFAULT_MODEL, input="x")
