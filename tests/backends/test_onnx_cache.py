"""The on-disk cache of exports: keyed by the weights, verified by sha256, never left half-written."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import modalens
from modalens.backends import onnx as onnx_backend
from modalens.backends.onnx import OnnxImageTower, cached_export, tower_cache_dir
from modalens.backends.runtime import (
    CorruptExportError,
    read_manifest,
    read_verified,
    verify_export,
)

from backends_testkit import kill_when_ready
from tiny_tower import TinyTower

#: The cache does not depend on the exporter; the TorchScript one is quicker for a tiny graph.
FAST = "torchscript"


def _check(tower: OnnxImageTower, reference: TinyTower) -> None:
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert float((tower(pixels) - reference(pixels)).abs().max()) <= 1e-5


@pytest.fixture
def root(tmp_path):
    return tmp_path / "onnx"


def test_first_use_exports_then_reuses(root) -> None:
    reference = TinyTower()
    with torch.inference_mode():  # as when DualEncoder.encode_image creates its tower
        tower = OnnxImageTower.from_torch(reference, root=root, threads=1)
    _check(tower, reference)
    folder = tower_cache_dir(reference, "image_tower", root)
    assert folder.is_dir() and folder.name.startswith("tiny-test-")
    verify_export(folder)
    mtime = (folder / "image_tower.onnx").stat().st_mtime_ns
    OnnxImageTower.from_torch(reference, root=root, threads=1)
    assert (folder / "image_tower.onnx").stat().st_mtime_ns == mtime  # not exported again
    assert not [p for p in root.iterdir() if p.name.startswith((".tmp-", ".stale-"))]


def test_other_weights_get_another_folder(root) -> None:
    a, b = TinyTower(seed=0), TinyTower(seed=1)
    assert tower_cache_dir(a, "image_tower", root) != tower_cache_dir(b, "image_tower", root)
    assert tower_cache_dir(a, "image_tower", root) == tower_cache_dir(TinyTower(seed=0), "image_tower", root)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "no-manifest"])
def test_a_damaged_export_is_detected_and_exported_again(root, damage) -> None:
    reference = TinyTower()
    OnnxImageTower.from_torch(reference, root=root, threads=1, exporter=FAST)
    folder = tower_cache_dir(reference, "image_tower", root)
    onnx_file = folder / "image_tower.onnx"
    data = onnx_file.read_bytes()
    if damage == "flip":  # same size, one byte changed: only the digest can tell
        i = len(data) - 100
        onnx_file.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    elif damage == "truncate":  # a partial copy
        onnx_file.write_bytes(data[: len(data) // 2])
    elif damage == "delete":
        onnx_file.unlink()
    else:
        (folder / "manifest.json").unlink()
    with pytest.raises(CorruptExportError):
        manifest = read_manifest(folder)
        read_verified(folder, "image_tower.onnx", manifest)

    tower = OnnxImageTower.from_torch(reference, root=root, threads=1, exporter=FAST)
    _check(tower, reference)
    verify_export(folder)
    assert not [p for p in root.iterdir() if p.name.startswith((".tmp-", ".stale-"))]


def test_an_interrupted_export_cleans_up_after_itself(root, monkeypatch) -> None:
    reference = TinyTower()

    def dies_halfway(tower, path, exporter="auto"):
        path.write_bytes(b"\x08\x07 half an onnx file")
        raise KeyboardInterrupt  # the user pressed ^C in the middle of the export

    monkeypatch.setattr(onnx_backend, "export_image_tower", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        cached_export(reference, "image_tower", root=root, progress=False)
    folder = tower_cache_dir(reference, "image_tower", root)
    assert not folder.exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]


KILLED_EXPORT = Path(__file__).with_name("killed_export.py")


@pytest.mark.parametrize("moment", ["mid-write", "before-publish"])
def test_a_killed_export_leaves_nothing_half_written(root, tmp_path, moment) -> None:
    """A real export in another process, SIGKILLed with its ONNX file half written or with everything written
    but not yet published: readers find no export (never a partial one), and the next export succeeds."""
    reference = TinyTower()
    folder = tower_cache_dir(reference, "image_tower", root)
    ready = tmp_path / "ready"
    assert kill_when_ready([str(KILLED_EXPORT), str(root), moment, str(ready)], ready, tmp_path / "child.log", timeout=180) == -signal.SIGKILL

    # the kill left work on disk, but nothing where a reader looks: no export folder, no servable file
    assert any(root.iterdir())
    assert not folder.exists(), sorted(str(p.relative_to(root)) for p in folder.rglob("*"))
    with pytest.raises(CorruptExportError):
        read_manifest(folder)

    # the next export (the dead process's lock released) clears the leftovers and serves a complete, verified export
    tower = OnnxImageTower.from_torch(reference, root=root, threads=1, exporter=FAST)
    _check(tower, reference)
    verify_export(folder)
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [folder.name]


def test_the_torchscript_exporter_is_the_fallback(root, monkeypatch) -> None:
    """When dynamo fails the TorchScript exporter is used, and the manifest says so."""
    real_export = torch.onnx.export

    def no_dynamo(*args, **kwargs):
        if kwargs.get("dynamo", True):
            raise RuntimeError("dynamo exporter unavailable")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    reference = TinyTower(seed=5)
    _, manifest, _ = cached_export(reference, "image_tower", root=root, progress=False)
    component = manifest["components"]["image_tower"]
    assert component["exporter"] == "torchscript"
    assert "dynamo" in component["exporter_errors"]
    _check(OnnxImageTower.from_torch(reference, root=root, threads=1, exporter=FAST), reference)


def test_numpy_runtime_needs_no_torch_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from modalens.backends import runtime\n"
        "assert runtime.default_threads() >= 1\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.strip() == "ok", out.stderr


def test_the_export_cache_can_live_apart_from_the_feature_cache(tmp_path, monkeypatch) -> None:
    from modalens.backends.onnx import ONNX_CACHE_ENV, onnx_cache_root
    from modalens.paths import cache_dir

    monkeypatch.delenv(ONNX_CACHE_ENV, raising=False)
    assert onnx_cache_root() == cache_dir() / "onnx"
    monkeypatch.setenv(ONNX_CACHE_ENV, str(tmp_path / "shared-onnx"))
    assert tower_cache_dir(TinyTower(), "image_tower").parent == tmp_path / "shared-onnx"
