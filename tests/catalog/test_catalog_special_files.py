"""FIFOs, devices, links to devices and huge files named like photos: per-file errors, never a hang.

Opening a FIFO blocks until someone writes to it, and /dev/zero never ends, so
each test runs under a timeout: on code that opens before it checks, they fail
by hanging instead of by assertion.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from catalog_testkit import solid_png
from modalens.catalog import CatalogError, ImageError, Product, image_sha1, load_image, read_catalog, read_image_folder

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="needs FIFOs and /dev/zero"),
]


@pytest.fixture()
def traps(tmp_path: Path) -> dict[str, Path]:
    """A photo folder holding one real photo, a FIFO, a link to /dev/zero and a link to a FIFO, all named like photos."""
    folder = tmp_path / "photos"
    good = solid_png(folder / "good.png", (10, 200, 30))
    fifo = folder / "pipe.jpg"
    os.mkfifo(fifo)
    zero = folder / "zero.jpg"
    zero.symlink_to("/dev/zero")
    linked_fifo = folder / "nested" / "to-pipe.png"
    linked_fifo.parent.mkdir()
    linked_fifo.symlink_to(fifo)
    return {"folder": folder, "good": good, "fifo": fifo, "zero": zero, "linked_fifo": linked_fifo}


def test_image_folder_reports_special_files_as_rows(traps: dict[str, Path]) -> None:
    catalog = read_image_folder(traps["folder"])
    assert [p.id for p in catalog] == ["good"]
    reasons = {e.reason.split(":")[0]: e.reason for e in catalog.errors}
    assert set(reasons) == {"nested/to-pipe.png", "pipe.jpg", "zero.jpg"}
    assert all("not a regular file" in reason for reason in reasons.values())
    assert "FIFO" in reasons["pipe.jpg"] and "device" in reasons["zero.jpg"]


@pytest.mark.parametrize("which", ["fifo", "zero", "linked_fifo"])
def test_decoding_and_hashing_refuse_special_files(traps: dict[str, Path], which: str) -> None:
    path = traps[which]
    with pytest.raises(ImageError, match="not a regular file") as info:
        load_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(ImageError, match="not a regular file"):
        image_sha1(path)


def test_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A sparse 2 GiB file: refused by its size, not after reading (or hashing) 2 GiB."""
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as handle:
        handle.truncate(2 * 2**30)
    with pytest.raises(ImageError, match="over the limit"):
        load_image(huge)
    with pytest.raises(ImageError, match="over the limit"):
        image_sha1(huge)
    small = solid_png(tmp_path / "small.png")
    with pytest.raises(ImageError, match="over the limit of 10 bytes"):
        image_sha1(small, max_bytes=10)
    assert len(image_sha1(small)) == 40


def test_indexing_a_folder_with_special_files_finishes(traps: dict[str, Path], tmp_path: Path) -> None:
    """What `modalens index FOLDER` (and /api/ingest) run: read the folder, then build the index."""
    from modalens.search import SearchEngine

    engine = SearchEngine(tmp_path / "index", progress=False)
    try:
        catalog = read_catalog(str(traps["folder"]))
        report = engine.build(catalog)
        assert (report.added, report.failed) == (1, 0)
        assert len(catalog.errors) == 3
        # Products that name such files directly (a table, an API ingest, a file swapped after listing)
        # reach the encoder's cache key, the first place that opens the file: each fails alone.
        products = [Product(f"direct-{name}", [str(traps[name])]) for name in ("fifo", "zero", "linked_fifo", "good")]
        report = engine.build(products)
        assert (report.added, report.failed) == (1, 3)
        failures = dict(engine.index.failures())
        assert set(failures) == {"direct-fifo", "direct-zero", "direct-linked_fifo"}
        assert all("not a regular file" in reason for reason in failures.values())
    finally:
        engine.close()


@pytest.mark.parametrize("target", ["fifo", "zero"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_catalogue_file_that_is_a_fifo_or_a_device_is_refused(tmp_path: Path, target: str, suffix: str) -> None:
    """`modalens index x.csv` or an ingest job naming a FIFO or a link to /dev/zero: an error, not a hang or a full memory."""
    path = tmp_path / f"shop{suffix}"
    if target == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(CatalogError, match="not a regular file"):
        read_catalog(str(path))
