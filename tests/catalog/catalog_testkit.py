"""Small fixture builders shared by the catalog tests (real files written into tmp_path)."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
KAGL_ROOT = REPO_ROOT.parent / "shared" / "data" / "kagl-fashion"
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")


def solid_png(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def noisy_jpeg(path: Path, size: tuple[int, int] = (256, 256), seed: int = 0) -> Path:
    """A JPEG with real entropy, so cutting it loses scan data rather than padding."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)
    return path


def png_with_header_size(path: Path, width: int, height: int) -> Path:
    """A valid 1x1 PNG whose IHDR then claims width x height (CRC fixed): a bomb by header only."""
    small = path.with_suffix(".small.png")
    Image.new("L", (1, 1)).save(small)
    data = bytearray(small.read_bytes())
    small.unlink()
    assert data[12:16] == b"IHDR"
    ihdr = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    path.write_bytes(bytes(data))
    return path


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, extra: bytes = b"") -> Path:
    """An IDX file (gzip when the name ends in .gz) in the format the MNIST family uses."""
    magic = 0x0800 + array.ndim if magic is None else magic
    body = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes() + extra
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)
    return path


def read_idx_plain(path: Path, header: int) -> np.ndarray:
    """Independent, minimal IDX reading for checking the reader's output."""
    return np.frombuffer(gzip.open(path).read(), dtype=np.uint8, offset=header)
