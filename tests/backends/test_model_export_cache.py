"""The cache of whole-model exports the CLI's query commands answer from: equal vectors, found without torch,
keyed by what the vectors depend on, made once, never used half-made, re-made when corrupt.

The export of ``modalens-lite`` lives in the shared ONNX cache (tests/conftest.py points
``MODALENS_ONNX_CACHE`` at the checkout's ``.cache/onnx``), so only the first run of the suite pays for it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import modalens
from modalens import models
from modalens.backends import ENV_VAR as BACKEND_ENV
from modalens.backends import tower_backend
from modalens.backends import runtime
from modalens.backends.runtime import VERIFIED_STAMP, CorruptExportError, read_manifest, verify_by_stat, verify_export, write_manifest
from modalens.catalog import read_catalog
from modalens.catalog.images import load_image
from modalens.embedding import CachedEncoder
from modalens.export import cache
from modalens.export.cache import cached_model_export, ensure_model_export, model_export_dir, query_handle
from modalens.prompts import ZERO_SHOT_TEMPLATES
from modalens.zeroshot import build_classifier

from backends_testkit import kill_when_ready

#: What the issue asks of vectors from the export against the PyTorch path (measured: about 1e-7).
TOLERANCE = 1e-5
TEXTS = ["navy blue check shirt", "running shoes", "women's black leather handbag", "a", "jeans " * 40, ""]
LABELS = ["watch", "shoes", "jeans", "dress", "handbag", "shirt"]


@pytest.fixture(scope="module")
def export_dir() -> Path:
    return ensure_model_export("modalens-lite")


@pytest.fixture(scope="module")
def products(mini_catalog):
    return read_catalog(mini_catalog).products


@pytest.fixture(scope="module")
def photos(products):
    return [load_image(p.image) for p in products[:6]] + [load_image(products[7].image).resize((180, 61))]


def _close(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape and got.dtype == np.float32
    assert float(np.abs(got - expected).max()) <= TOLERANCE


@pytest.mark.parametrize("towers", ["default", "torch"], ids=["torch-path-as-shipped", "torch-towers"])
def test_vectors_from_the_export_equal_the_torch_path(export_dir, products, photos, towers, monkeypatch):
    """Search, tag and eval vectors: the export against the PyTorch model, whose towers run where they run by
    default (ONNX Runtime) or, forced, in torch (so this is not ONNX against ONNX)."""
    onnx = query_handle("modalens-lite")
    assert onnx.torch_free and onnx.onnx_dir == export_dir and onnx.query_encoder.backend == "onnx-export"
    if towers == "torch":
        monkeypatch.setenv(BACKEND_ENV, "torch")
    reference = models.load("modalens-lite")
    expected = "onnx" if towers == "default" else "torch"
    assert tower_backend(reference.model.text_tower) == tower_backend(reference.model.image_tower) == expected
    encoder, model = onnx.query_encoder, reference.model

    _close(encoder.encode_text(TEXTS), model.encode_text(TEXTS))  # search and tag: text queries, label prompts
    _close(encoder.encode_image(photos), model.encode_image(photos))  # photo queries, tagged photos

    ours, theirs = build_classifier(encoder, LABELS), build_classifier(model, LABELS)  # `modalens tag`
    _close(ours.weights, theirs.weights)
    assert ours.temperature == pytest.approx(theirs.temperature, rel=1e-6)
    embeds = model.encode_image(photos)
    for a, b in zip(ours.top_k(embeds, k=len(LABELS)), theirs.top_k(embeds, k=len(LABELS))):
        assert [label for label, _ in a] == [label for label, _ in b]
        assert np.allclose([p for _, p in a], [p for _, p in b], atol=TOLERANCE)

    # `modalens eval`: the feature cache's path (numpy towers, ONNX Runtime heads)
    ours, theirs = CachedEncoder(encoder, progress=False, use_cache=False), CachedEncoder(model, progress=False, use_cache=False)
    (a, fa), (b, fb) = ours.image_embeddings(products[:8]), theirs.image_embeddings(products[:8])
    assert fa == fb
    _close(a, b)
    titles = [p.title for p in products[:8]]
    _close(ours.text_embeddings(titles), theirs.text_embeddings(titles))
    zs_ours = build_classifier(encoder, LABELS, ZERO_SHOT_TEMPLATES[:2], text_features=ours.text_features)
    zs_theirs = build_classifier(model, LABELS, ZERO_SHOT_TEMPLATES[:2], text_features=theirs.text_features)
    _close(zs_ours.weights, zs_theirs.weights)


def test_eval_features_share_the_cache_with_the_torch_path(export_dir, products):
    """The export's numpy towers read and write the cache entries the PyTorch towers use (same namespaces)."""
    from modalens.encoders.features import default_store

    encoder = query_handle("modalens-lite").query_encoder
    model = models.load("modalens-lite").model
    for kind in ("image", "text"):
        ours = default_store(getattr(encoder, f"{kind}_tower"), kind)
        theirs = default_store(getattr(model, f"{kind}_tower"), kind)
        assert ours.dir == theirs.dir


def test_the_export_is_found_without_torch(export_dir):
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now fails
        from modalens.export.cache import cached_model_export, query_handle
        handle = query_handle("modalens-lite")
        vectors = handle.query_encoder.encode_text(["a red shirt"])
        print(cached_model_export("modalens-lite"), handle.torch_free, vectors.shape, "transformers" in sys.modules)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == [str(export_dir), "True", "(1,", "512)", "False"]


def test_the_key_follows_what_the_vectors_depend_on(export_dir, tmp_path):
    manifest = read_manifest(export_dir)
    assert manifest["model_identity"] == models.load("modalens-lite").identity
    assert manifest["cache_key"] == cache.key_digest(cache.model_export_key("modalens-lite"))
    assert export_dir.parent.name == cache.MODELS_DIR and export_dir.name.startswith("modalens-lite-")

    # a saved model: its folder, its heads file (retrained: a new mtime) and its config are in the key
    saved = models.save_model(models.create_model("modalens-lite"), tmp_path / "mine")
    first = model_export_dir(saved)
    assert model_export_dir(saved) == first and first != export_dir
    heads = saved / "heads.safetensors"
    os.utime(heads, ns=(heads.stat().st_atime_ns, heads.stat().st_mtime_ns + 10**9))
    second = model_export_dir(saved)
    assert second != first
    config = json.loads((saved / "config.json").read_text())
    config["head"]["dropout"] = 0.2
    (saved / "config.json").write_text(json.dumps(config))
    assert model_export_dir(saved) not in (first, second)
    copy = shutil.copytree(saved, tmp_path / "copy")
    assert model_export_dir(copy) != model_export_dir(saved)
    assert cached_model_export(saved) is None  # never exported


def test_torch_is_kept_where_asked_for(export_dir, monkeypatch):
    monkeypatch.setenv(cache.AUTO_EXPORT_ENV, "off")  # the PyTorch model for queries, as before the export cache
    assert not query_handle("modalens-lite").torch_free
    monkeypatch.delenv(cache.AUTO_EXPORT_ENV)
    assert query_handle("modalens-lite").torch_free
    monkeypatch.setenv(BACKEND_ENV, "torch")  # the user's choice: towers in torch, so queries too
    handle = query_handle("modalens-lite")
    assert not handle.torch_free and handle.query_encoder.backend == "torch"
    with pytest.raises(models.ModelNotFoundError):
        query_handle("no-such-model")


def test_an_export_that_fails_leaves_queries_on_torch_with_a_warning(tmp_path, monkeypatch):
    def fail(handle, *, root=None, progress=None):
        raise RuntimeError("the exporter does not know this op")

    monkeypatch.setattr(cache, "ensure_model_export", fail)
    with pytest.warns(RuntimeWarning, match="use PyTorch: its ONNX export failed .*does not know this op"):
        handle = query_handle("modalens-lite", root=tmp_path)
    assert not handle.torch_free and handle.query_encoder.backend == "torch"


_KILLED = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from modalens.export import cache, model

    ROOT, READY = sys.argv[1], sys.argv[2]
    real_write = model.write_manifest

    def then_stop(*args, **kwargs):  # every file written, the manifest too: killed just before the rename
        real_write(*args, **kwargs)
        Path(READY).write_text("ready")
        time.sleep(600)

    model.write_manifest = then_stop
    cache.ensure_model_export("modalens-lite", root=ROOT)
    raise SystemExit("not killed")
    """
)


def test_a_killed_export_leaves_nothing_half_used(export_dir, tmp_path):
    root, ready = tmp_path / "root", tmp_path / "ready"
    kill_when_ready(["-c", _KILLED, str(root), str(ready)], ready, tmp_path / "child.log")
    folder = model_export_dir("modalens-lite", root)
    leftovers = list(folder.parent.glob(f".tmp-{folder.name}-*"))
    assert leftovers and (leftovers[0] / "manifest.json").is_file()  # complete, but never published
    assert not folder.exists() and cached_model_export("modalens-lite", root) is None
    handle = query_handle("modalens-lite", make=False, root=root)  # nothing half-made is used: PyTorch answers
    assert not handle.torch_free

    # the next use (the dead process's lock released) clears the leftovers and publishes a verified export
    assert ensure_model_export("modalens-lite", root=root) == folder
    assert not list(folder.parent.glob(".tmp-*")) and verify_export(folder)["cache_key"] == read_manifest(export_dir)["cache_key"]
    assert query_handle("modalens-lite", root=root).onnx_dir == folder


def test_a_corrupt_cached_export_is_discarded_and_made_again(export_dir, tmp_path, monkeypatch):
    root = tmp_path / "root"
    folder = model_export_dir("modalens-lite", root)
    shutil.copytree(export_dir, folder)
    assert query_handle("modalens-lite", make=False, root=root).torch_free
    head = folder / "text_head.onnx"
    data = bytearray(head.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit on disk: size and name unchanged
    time.sleep(0.02)  # past the file system's timestamp granularity
    head.write_bytes(bytes(data))
    with pytest.raises(CorruptExportError, match="text_head.onnx"):
        runtime.load_export(folder, verify="stat")

    with warnings.catch_warnings(record=True) as caught:  # not allowed to export: PyTorch, with the reason
        warnings.simplefilter("always")
        assert not query_handle("modalens-lite", make=False, root=root).torch_free
    assert any("unusable" in str(w.message) for w in caught)

    made = []

    def remake(handle, *, root=None, progress=None):  # the real export is tested above; here, where it is asked for
        assert not folder.exists()  # the corrupt folder went first
        made.append(handle.name)
        shutil.copytree(export_dir, folder)
        return folder

    monkeypatch.setattr(cache, "ensure_model_export", remake)
    handle = query_handle("modalens-lite", root=root)
    assert made == ["modalens-lite"] and handle.torch_free and handle.onnx_dir == folder


def test_stat_verification_hashes_each_file_once_until_it_changes(tmp_path, monkeypatch):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.onnx").write_bytes(b"a" * 1000)
    (folder / "b.onnx").write_bytes(b"b" * 1000)
    write_manifest(folder, {"components": {}})
    manifest = read_manifest(folder)
    hashed = []
    real = runtime.sha256_file
    monkeypatch.setattr(runtime, "sha256_file", lambda path: hashed.append(Path(path).name) or real(path))

    verify_by_stat(folder, ["a.onnx", "b.onnx"], manifest)
    assert sorted(hashed) == ["a.onnx", "b.onnx"] and (folder / VERIFIED_STAMP).is_file()
    hashed.clear()
    verify_by_stat(folder, ["a.onnx", "b.onnx"], manifest)
    assert hashed == []  # unchanged since they passed: not read again

    time.sleep(0.02)
    (folder / "a.onnx").write_bytes(b"a" * 1000)  # rewritten (same bytes): hashed again, and passes
    verify_by_stat(folder, ["a.onnx", "b.onnx"], manifest)
    assert hashed == ["a.onnx"]

    before = (folder / "b.onnx").stat()
    time.sleep(0.02)
    (folder / "b.onnx").write_bytes(b"c" * 1000)  # other bytes, same size, the old mtime put back: ctime still moved
    os.utime(folder / "b.onnx", ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(CorruptExportError, match="b.onnx"):
        verify_by_stat(folder, ["a.onnx", "b.onnx"], manifest)
    (folder / "extra.onnx").write_bytes(b"x")
    with pytest.raises(CorruptExportError, match="records no sha256"):
        verify_by_stat(folder, ["extra.onnx"], manifest)
    with pytest.raises(CorruptExportError, match="cannot be read"):
        verify_by_stat(folder, ["missing.onnx"], manifest)


def test_a_text_query_opens_only_the_text_side(export_dir):
    exported = runtime.load_export(export_dir, verify="stat")
    assert exported.opened == []
    exported.encode_texts(["a red shirt"])
    assert exported.opened == ["text_head", "text_tower"]
    assert runtime.load_export(export_dir).opened == sorted(runtime.COMPONENTS)  # sha256: everything, at once (a server)
