"""FeatureStore (on-disk cache) and image_features / text_features with tiny fake towers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modalens.encoders import ImageTower, TextTower
from modalens.encoders.features import FeatureStore, default_store, image_features, text_features


class MeanColourTower(ImageTower):
    """Pooled feature = mean normalised colour; counts forward calls and rows."""

    name = "fake-mean-colour"
    output_dim = 3
    image_size = 8

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.rows = 0

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += len(pixels)
        return super().forward(pixels)


class OtherSizeTower(MeanColourTower):
    image_size = 16  # a different preprocess id


class LengthTower(TextTower):
    """Text feature = (len, first char code, 1); counts calls."""

    name = "fake-length"
    output_dim = 3
    max_length = 8

    def __init__(self, fail_on_call: int | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.fail_on_call = fail_on_call

    def forward(self, texts):
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise RuntimeError("simulated crash")
        return torch.tensor([[len(t), ord(t[0]) if t else 0, 1] for t in texts], dtype=torch.float32)


def expected_mean(colour) -> np.ndarray:
    return (np.asarray(colour, dtype=np.float32) - 127.0) / 128.0


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (30, 60, 90)]


@pytest.fixture
def images(tmp_path: Path) -> list[str]:
    paths = []
    for i, colour in enumerate(COLOURS):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (8, 8), colour).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALENS_CACHE", str(tmp_path / "cache"))


# --- FeatureStore ---------------------------------------------------------------------------


def test_put_flush_reload_returns_same_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    keys = [f"{i:040x}" for i in range(5)]
    vectors = rng.normal(size=(5, 7)).astype(np.float32)
    store = FeatureStore(tmp_path / "root", "ns-a")
    store.put_many(keys, vectors)
    assert len(store) == 5 and keys[2] in store
    store.flush()
    reloaded = FeatureStore(tmp_path / "root", "ns-a")
    assert len(reloaded) == 5
    for key, vector in zip(keys, vectors):
        got = reloaded.get(key)
        assert got is not None and got.dtype == np.float32
        np.testing.assert_array_equal(got, vector)
    assert reloaded.get("missing") is None and "missing" not in reloaded


def test_unflushed_vectors_are_buffered_until_flush_rows(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, "ns")
    store.flush_rows = 4
    store.put_many(["a", "b", "c"], np.ones((3, 2)))
    assert len(FeatureStore(tmp_path, "ns")) == 0  # still buffered
    store.put_many(["d"], np.ones((1, 2)))  # reaches flush_rows: written now
    assert len(FeatureStore(tmp_path, "ns")) == 4
    assert len(list(store.dir.glob("part-*.npz"))) == 1


def test_flush_without_pending_writes_nothing(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, "ns")
    store.flush()
    assert list(store.dir.glob("part-*")) == []


def test_several_shards_are_all_loaded(tmp_path: Path) -> None:
    for i in range(3):
        store = FeatureStore(tmp_path, "ns")
        store.put_many([f"k{i}"], np.full((1, 2), i, dtype=np.float32))
        store.flush()
    store = FeatureStore(tmp_path, "ns")
    assert len(store) == 3
    np.testing.assert_array_equal(store.get("k2"), [2.0, 2.0])


def test_interrupted_write_leftover_tmp_is_ignored(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, "ns")
    store.put_many(["good"], np.array([[1.0, 2.0]]))
    store.flush()
    # A crash between writing and renaming leaves a hidden temp file: garbage, or even a complete npz.
    (store.dir / ".part-deadbeef.npz.tmp").write_bytes(b"PK\x03\x04 truncated garbage")
    with open(store.dir / ".part-cafe.npz.tmp", "wb") as f:
        np.savez(f, keys=np.asarray(["ghost"]), vectors=np.ones((1, 2), np.float32))
    reloaded = FeatureStore(tmp_path, "ns")
    assert len(reloaded) == 1
    assert "ghost" not in reloaded
    np.testing.assert_array_equal(reloaded.get("good"), [1.0, 2.0])


def test_namespaces_do_not_share_entries(tmp_path: Path) -> None:
    a = FeatureStore(tmp_path, "image|tower-a")
    a.put_many(["k"], np.ones((1, 2)))
    a.flush()
    b = FeatureStore(tmp_path, "image|tower-b")
    assert "k" not in b and a.dir != b.dir
    assert (a.dir / "NAMESPACE").read_text() == "image|tower-a"


def test_default_store_lives_under_modalens_cache(tmp_path: Path) -> None:
    store = default_store(MeanColourTower(), "image")
    assert (tmp_path / "cache") in store.dir.parents
    assert MeanColourTower().preprocess_id in (store.dir / "NAMESPACE").read_text()


# --- image_features -------------------------------------------------------------------------


def test_image_features_compute_mean_colour(images) -> None:
    tower = MeanColourTower()
    feats, failures = image_features(tower, images, progress=False, batch_size=3)
    assert failures == {}
    assert feats.shape == (4, 3) and feats.dtype == np.float32
    for row, colour in zip(feats, COLOURS):
        np.testing.assert_allclose(row, expected_mean(colour), atol=1e-6)
    assert tower.calls == 2 and tower.rows == 4  # batches of 3 + 1


def test_image_features_second_call_hits_cache(images, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "cache", "image|fake")
    first_tower = MeanColourTower()
    first, _ = image_features(first_tower, images, store=store, progress=False)
    assert first_tower.rows == 4

    tower = MeanColourTower()
    second, failures = image_features(tower, images, store=store, progress=False)
    assert tower.calls == 0 and failures == {}
    np.testing.assert_array_equal(first, second)

    # ...and the cache survived on disk: a brand-new store instance also skips the tower.
    reopened = FeatureStore(tmp_path / "cache", "image|fake")
    third, _ = image_features(tower, images, store=reopened, progress=False)
    assert tower.calls == 0
    np.testing.assert_array_equal(first, third)


def test_partial_cache_only_computes_new_images(images, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "cache", "image|fake")
    image_features(MeanColourTower(), images[:2], store=store, progress=False)
    tower = MeanColourTower()
    feats, _ = image_features(tower, images, store=store, progress=False)
    assert tower.rows == 2
    for row, colour in zip(feats, COLOURS):
        np.testing.assert_allclose(row, expected_mean(colour), atol=1e-6)


def test_a_photo_named_twice_is_encoded_once(images, tmp_path: Path) -> None:
    """Two training sources can share products (kagl and kagl-all): same bytes and view, one encode."""
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_text("this is not a jpeg")
    sources = [images[0], images[1], images[0], str(corrupt), images[1], str(corrupt)]
    tower = MeanColourTower()
    feats, failures = image_features(tower, sources, store=None, progress=False, view="greyscale")
    assert tower.rows == 2  # the corrupt file fails once, in decoding; its repeat reports the same reason
    assert set(failures) == {3, 5} and failures[5] == failures[3]
    np.testing.assert_array_equal(feats[2], feats[0])
    np.testing.assert_array_equal(feats[4], feats[1])
    assert not np.array_equal(feats[0], feats[1])


def test_bad_images_are_reported_by_position_and_do_not_stop_others(images, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_text("this is not a jpeg")
    missing = tmp_path / "missing.jpg"
    sources = [images[0], str(corrupt), images[1], str(missing), images[2]]
    store = FeatureStore(tmp_path / "cache", "image|fake")
    tower = MeanColourTower()
    feats, failures = image_features(tower, sources, store=store, progress=False, batch_size=2)

    assert set(failures) == {1, 3}
    assert "corrupt.jpg" in failures[1] and len(failures[1]) > len(str(corrupt))  # names the file and why
    assert "missing.jpg" in failures[3] and len(failures[3]) > len(str(missing))
    np.testing.assert_array_equal(feats[1], 0.0)
    np.testing.assert_array_equal(feats[3], 0.0)
    for row, colour in zip(feats[[0, 2, 4]], COLOURS[:3]):
        np.testing.assert_allclose(row, expected_mean(colour), atol=1e-6)

    # Failures are not cached as zeros: they are reported again, the good ones come from the cache.
    again = MeanColourTower()
    feats2, failures2 = image_features(again, sources, store=store, progress=False)
    assert set(failures2) == {1, 3}
    assert again.rows == 0
    np.testing.assert_array_equal(feats, feats2)


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="needs FIFOs and /dev/zero")
@pytest.mark.parametrize("custom_loader", [False, True])
def test_fifos_devices_and_huge_files_fail_alone_and_never_hang(images, tmp_path: Path, custom_loader: bool) -> None:
    """The cache key is the first thing that opens a photo: it must check the file before reading it."""
    from modalens.catalog.images import load_image

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.jpg"
    zero.symlink_to("/dev/zero")
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as handle:
        handle.truncate(2 * 2**30)  # sparse: costs no disk, but hashing it would read 2 GiB
    sources = [images[0], str(fifo), str(zero), str(huge), images[1]]
    store = FeatureStore(tmp_path / "cache", "image|fake")
    loader = {"load_image": load_image} if custom_loader else {}
    feats, failures = image_features(MeanColourTower(), sources, store=store, progress=False, workers=0, **loader)
    assert set(failures) == {1, 2, 3}
    assert str(fifo) in failures[1] and "not a regular file" in failures[1]
    assert str(zero) in failures[2] and "not a regular file" in failures[2]
    assert str(huge) in failures[3] and "over the limit" in failures[3]
    for row, colour in zip(feats[[0, 4]], COLOURS[:2]):
        np.testing.assert_allclose(row, expected_mean(colour), atol=1e-6)


def test_file_key_is_the_sha1_of_the_bytes_and_refuses_special_files(tmp_path: Path) -> None:
    import hashlib

    from modalens.catalog import ImageError
    from modalens.encoders.features import file_key

    path = tmp_path / "a.png"
    path.write_bytes(b"x" * 3_000_001)
    assert file_key(path) == hashlib.sha1(path.read_bytes()).hexdigest()  # unchanged: existing caches stay valid
    with pytest.raises(ImageError, match="over the limit of 1000 bytes"):
        file_key(path, max_bytes=1000)
    with pytest.raises(ImageError, match="not a regular file"):
        file_key(tmp_path)


def test_different_preprocess_id_does_not_share_cache(images, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "cache", "image|shared")
    a = MeanColourTower()
    b = OtherSizeTower()
    assert a.preprocess_id != b.preprocess_id
    image_features(a, images, store=store, progress=False)
    image_features(b, images, store=store, progress=False)
    assert b.rows == len(images)  # nothing reused from tower a
    assert len(store) == 2 * len(images)


def test_changed_file_bytes_are_recomputed(images, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "cache", "image|fake")
    image_features(MeanColourTower(), images[:1], store=store, progress=False)
    Image.new("RGB", (8, 8), (0, 0, 0)).save(images[0])  # same path, new photo
    tower = MeanColourTower()
    feats, _ = image_features(tower, images[:1], store=store, progress=False)
    assert tower.rows == 1
    np.testing.assert_allclose(feats[0], expected_mean((0, 0, 0)), atol=1e-6)


def test_empty_source_list(tmp_path: Path) -> None:
    feats, failures = image_features(MeanColourTower(), [], progress=False)
    assert feats.shape == (0, 3) and failures == {}


# --- text_features --------------------------------------------------------------------------


def test_text_features_keep_input_order_and_hit_cache(tmp_path: Path) -> None:
    texts = ["ccc", "a", "bbbbbb", "dd"]  # length-sorted internally
    store = FeatureStore(tmp_path / "cache", "text|fake")
    tower = LengthTower()
    feats = text_features(tower, texts, store=store, batch_size=2, progress=False)
    expected = np.array([[len(t), ord(t[0]), 1] for t in texts], dtype=np.float32)
    np.testing.assert_array_equal(feats, expected)
    assert tower.calls == 2

    again = LengthTower()
    np.testing.assert_array_equal(text_features(again, texts, store=FeatureStore(tmp_path / "cache", "text|fake"), progress=False), expected)
    assert again.calls == 0


def test_text_features_interrupted_run_keeps_finished_batches(tmp_path: Path) -> None:
    texts = ["a", "bb", "ccc", "dddd"]
    store = FeatureStore(tmp_path / "cache", "text|fake")
    with pytest.raises(RuntimeError, match="simulated crash"):
        text_features(LengthTower(fail_on_call=2), texts, store=store, batch_size=2, progress=False)
    resumed = FeatureStore(tmp_path / "cache", "text|fake")
    assert len(resumed) == 2  # the first batch reached disk despite the crash
    tower = LengthTower()
    text_features(tower, texts, store=resumed, batch_size=2, progress=False)
    assert tower.calls == 1


def test_image_grids_are_the_map_cell_by_cell_cached_in_float16_and_fill_the_pooled_cache(images, tmp_path: Path) -> None:
    """Each row of a grid is one cell's channels in reading order; their mean is the pooled feature of the same photo."""
    from modalens.encoders.features import default_grid_store, image_grids

    tower = MeanColourTower()
    grid_store, pooled_store = default_grid_store(tower), default_store(tower, "image")
    grids, failures = image_grids(tower, images, store=grid_store, pooled_store=pooled_store, workers=0)
    assert not failures and grids.shape == (len(images), 64, 3) and grids.dtype == np.float16
    pooled, _ = image_features(tower, images, workers=0)
    np.testing.assert_allclose(grids.astype(np.float32).mean(axis=1), pooled, atol=2e-3)
    assert len(pooled_store) == len(images)  # the pooled vectors came with the maps
    calls = tower.calls
    again, _ = image_grids(tower, images, store=default_grid_store(tower), workers=0)
    np.testing.assert_array_equal(again, grids)
    assert tower.calls == calls  # read back from disk: the tower was not asked again


def test_a_feature_store_reads_only_the_shards_it_is_asked_for(tmp_path):
    """Opening reads the key lists; a shard's vectors are read when one of its keys is asked for (a machine's cache
    holds every catalogue and view it has seen; a command wanting a few vectors must not hold them all)."""
    writer = FeatureStore(tmp_path, "ns")
    writer.flush_rows = 4
    vectors = np.arange(12 * 3, dtype=np.float32).reshape(12, 3)
    for start in (0, 4, 8):  # three shards of four
        writer.put_many([f"k{i}" for i in range(start, start + 4)], vectors[start : start + 4])
    assert len(list(writer.dir.glob("part-*.npz"))) == 3

    reader = FeatureStore(tmp_path, "ns")
    assert len(reader) == 12 and "k7" in reader and "k12" not in reader
    assert reader._table == {}  # nothing read yet
    np.testing.assert_array_equal(reader.get("k5"), vectors[5])
    assert len(reader._table) == 4  # that one shard
    assert reader.get("k12") is None
    reader.put_many(["k0"], np.full((1, 3), -1, np.float32))  # a vector put since opening stays
    np.testing.assert_array_equal(reader.get("k0"), [-1, -1, -1])
    assert [reader.get(f"k{i}").tolist() for i in range(1, 12)] == vectors[1:].tolist()
