"""Pipelined ingest: worker-process decoding gives the in-process features, failures stay per image, draft is keyed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from modalens.catalog.images import load_image, load_letterboxed
from modalens.encoders import ImageTower, TextTower
from modalens.encoders import pipeline
from modalens.encoders.base import normalise_pixels, to_tensor
from modalens.encoders.features import (
    DRAFT_DECODE_ID,
    FeatureStore,
    default_store,
    image_feature_salt,
    image_features,
    text_features,
)

MINI_IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "mini-catalog" / "images"


class GridTower(ImageTower):
    """Pooled feature = the normalised image averaged over a 4x4 grid (48 numbers): any pixel change shows."""

    name = "fake-grid"
    output_dim = 48
    image_size = 64

    def __init__(self) -> None:
        super().__init__()
        self.rows = 0

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.rows += len(pixels)
        return F.adaptive_avg_pool2d(pixels, 4).flatten(1)


class CropTower(GridTower):
    """A tower with its own preprocess: gets full-size decodes, no draft."""

    name = "fake-crop"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return to_tensor(image.convert("RGB").resize((self.image_size, self.image_size)), self.pixel_mean, self.pixel_std)


@pytest.fixture(scope="module", autouse=True)
def _stop_workers():
    """The decoding pool outlives calls by design; these tests stop theirs when done."""
    yield
    pipeline.shutdown_pools()


@pytest.fixture
def photos() -> list[str]:
    return sorted(str(p) for p in MINI_IMAGES.glob("*.jpg"))


def big_jpeg(path: Path, size: tuple[int, int] = (1600, 1200), **save) -> Path:
    """A smooth photo-like JPEG (a gradient with a dark square), much larger than a tower's input."""
    x = np.linspace(0, 255, size[0], dtype=np.float32)[None, :]
    y = np.linspace(0, 255, size[1], dtype=np.float32)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    pixels[size[1] // 4 : size[1] // 2, size[0] // 4 : size[0] // 2] = 20
    Image.fromarray(pixels).save(path, "JPEG", quality=92, **save)
    return path


def reference_features(tower: ImageTower, paths: list[str]) -> np.ndarray:
    """The plain path: full decode, the tower's own preprocess, one batch."""
    with torch.inference_mode():
        return tower(torch.stack([tower.preprocess(load_image(p)) for p in paths])).numpy()


# --- equivalence ----------------------------------------------------------------------------


def test_worker_processes_give_the_in_process_features(photos, tmp_path: Path) -> None:
    tower = GridTower()
    in_process, failures0 = image_features(tower, photos, progress=False, batch_size=16, workers=0)
    pipelined, failures1 = image_features(tower, photos, progress=False, batch_size=16, workers=1)
    assert failures0 == failures1 == {}
    np.testing.assert_allclose(pipelined, in_process, atol=1e-5)
    # ...and both equal the unpipelined path (the fixture's 96 px photos are too small for draft to act).
    np.testing.assert_allclose(in_process, reference_features(tower, photos), atol=1e-5)


def test_batched_normalisation_is_bit_identical_to_per_image() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 9, 7, 3), dtype=np.uint8)
    mean, std = (123.7, 116.3, 103.5), (58.4, 57.1, 57.4)
    batched = normalise_pixels(pixels, mean, std)
    per_image = np.stack([(p.astype(np.float32) - np.float32(mean)) / np.float32(std) for p in pixels]).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(batched, per_image)
    np.testing.assert_array_equal(normalise_pixels(pixels, mean, std, channels_last=True), batched)


# --- failures -------------------------------------------------------------------------------


def test_bad_files_fail_alone_in_worker_mode(photos, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(big_jpeg(tmp_path / "whole.jpg").read_bytes()[:3000])
    sources = [photos[0], str(corrupt), photos[1], str(text), photos[2], str(truncated), str(tmp_path / "missing.jpg"), photos[3]]
    tower = GridTower()
    store = FeatureStore(tmp_path / "cache", "image|fake")
    feats, failures = image_features(tower, sources, store=store, progress=False, batch_size=2, workers=1)

    assert set(failures) == {1, 3, 5, 6}
    for i in failures:
        assert Path(sources[i]).name in failures[i] and len(failures[i]) > len(sources[i])  # names the file and why
        np.testing.assert_array_equal(feats[i], 0.0)
    np.testing.assert_allclose(feats[[0, 2, 4, 7]], reference_features(GridTower(), [photos[i] for i in range(4)]), atol=1e-5)
    assert len(store) == 4  # every good image reached the cache, no failure was cached


def test_a_dying_worker_costs_only_its_own_image(photos) -> None:
    """A file that kills its decoder process (a crash, the OOM killer) is reported; the rest of the batch is decoded."""
    deadly = 1

    def task(chunk: list[int]):
        if deadly in chunk:
            return os._exit, (3,)
        return pipeline.load_letterboxed_many, ([photos[i] for i in chunk], 32, True, None)

    executor = pipeline._process_pool(1)
    decoded = list(pipeline._ordered(executor, [[0, 1, 2]], task, in_flight=1, workers=1, describe=photos.__getitem__))
    assert [d.position for d in decoded] == [0, 1, 2]
    assert decoded[1].pixels is None and "decoder process died" in decoded[1].error and photos[1] in decoded[1].error
    assert decoded[0].pixels.shape == decoded[2].pixels.shape == (32, 32, 3)


def test_a_worker_dying_while_earlier_chunks_wait_loses_nothing(photos) -> None:
    """Chunks decode ahead of the consumer: when a later one kills the pool, the next submit must not abort the job."""
    import time

    deadly = 2

    def task(chunk: list[int]):
        if deadly in chunk:
            return os._exit, (3,)
        return pipeline.load_letterboxed_many, ([photos[i] for i in chunk], 32, True, None)

    pipeline.shutdown_pools()
    executor = pipeline._process_pool(1)
    decoded = []
    for item in pipeline._ordered(executor, [[i] for i in range(5)], task, in_flight=3, workers=1, describe=photos.__getitem__):
        decoded.append(item)
        if len(decoded) == 1:
            time.sleep(1.0)  # the consumer is busy encoding; meanwhile chunk 2 kills the pool
    assert [d.position for d in decoded] == [0, 1, 2, 3, 4]
    assert [d.error is None for d in decoded] == [True, True, False, True, True]
    assert "decoder process died" in decoded[2].error


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed ingest (the OOM killer's usual pick: the process holding the model) leaves no decoder behind."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys\n"
        "from modalens.encoders import pipeline\n"
        "if __name__ == '__main__':\n"
        "    pool = pipeline._process_pool(1)\n"
        "    print(*[p.pid for p in pool._processes.values()], flush=True)\n"
        "    sys.stdin.read()\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline().split()[0])
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the decoder process outlived its killed parent")


def test_small_jobs_decode_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pipeline.WORKERS_ENV, raising=False)
    pipeline.shutdown_pools()
    assert pipeline.default_workers(1) == 0
    monkeypatch.setattr(pipeline, "usable_cores", lambda: 1)
    assert pipeline.default_workers(10_000) == 0
    monkeypatch.setattr(pipeline, "usable_cores", lambda: 2)  # a decode process would only compete with the encoder
    assert pipeline.default_workers(10_000) == 0
    monkeypatch.setattr(pipeline, "usable_cores", lambda: 8)
    assert pipeline.default_workers(10_000) == 4
    monkeypatch.setenv(pipeline.WORKERS_ENV, "2")
    assert pipeline.default_workers(1) == 2


# --- JPEG draft -----------------------------------------------------------------------------


def test_draft_decodes_a_big_jpeg_at_reduced_scale(tmp_path: Path) -> None:
    path = big_jpeg(tmp_path / "big.jpg", (1600, 1200))
    drafted = load_image(path, draft_fit=224)
    assert drafted.size == (400, 300)  # 1/4 scale: the smallest DCT scale still >= the 224 x 168 letterbox
    assert load_image(path).size == (1600, 1200)
    fast, full = load_letterboxed(path, 224), load_letterboxed(path, 224, draft=False)
    assert fast.shape == full.shape == (224, 224, 3) and fast.dtype == np.uint8
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 2.0  # the same photo, pixels a little different


def test_draft_keeps_exif_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise
    path = big_jpeg(tmp_path / "rotated.jpg", (1600, 1200), exif=exif.tobytes())
    assert load_image(path, draft_fit=224).size == (300, 400)
    assert load_letterboxed(path, 224).shape == (224, 224, 3)


def test_draft_changes_the_cache_key(tmp_path: Path) -> None:
    path = str(big_jpeg(tmp_path / "big.jpg"))
    tower = GridTower()
    assert image_feature_salt(tower, draft=True) != image_feature_salt(tower, draft=False)
    assert DRAFT_DECODE_ID in (default_store(tower, "image").dir / "NAMESPACE").read_text()
    assert DRAFT_DECODE_ID not in (default_store(CropTower(), "image").dir / "NAMESPACE").read_text()

    store = FeatureStore(tmp_path / "cache", "image|shared")
    drafted, _ = image_features(tower, [path], store=store, progress=False)
    full, _ = image_features(tower, [path], store=store, progress=False, load_image=lambda p: load_image(p))
    assert tower.rows == 2 and len(store) == 2  # the full decode did not reuse the drafted feature
    assert not np.array_equal(drafted, full)
    np.testing.assert_allclose(full, reference_features(GridTower(), [path]), atol=1e-5)


# --- text -----------------------------------------------------------------------------------


def test_length_sorted_text_batches_equal_unsorted(tmp_path: Path) -> None:
    from modalens.encoders import create_text_tower

    tower: TextTower = create_text_tower("minilm-l6")
    texts = ["a", "Women's black leather ankle boots with a block heel, for autumn evenings", "blue jeans", "", "red silk dress"] * 3
    texts += [f"navy check shirt number {i} with a long description of the fabric" * (i % 3 + 1) for i in range(8)]
    by_length = text_features(tower, texts, batch_size=4, progress=False)
    as_given = text_features(tower, texts, batch_size=4, progress=False, by_length=False)
    np.testing.assert_allclose(by_length, as_given, atol=1e-5)
