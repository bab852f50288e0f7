"""Safe image decoding for catalogue photos.

User catalogues contain whatever a shop exported: CMYK JPEGs, palette PNGs,
16-bit scans, rotated phone photos, half-uploaded files and the odd
decompression bomb.  Everything downstream wants one thing: an RGB image of
the product as a person would see it, or a clear error naming the file.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .schema import CatalogError

__all__ = ["ImageError", "load_image", "image_sha1"]

#: Background for transparent pixels: product photos are shot on white.
WHITE = (255, 255, 255)

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_DEPTH_PREFIXES = ("I", "F")  # I, I;16, I;16B, I;16L, I;16N, F


class ImageError(CatalogError):
    """An image that cannot be decoded safely; the message names the source and the reason."""


def load_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = 40_000_000,
    max_bytes: int = 50 * 2**20,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode ``source`` (a path or the encoded bytes) into an upright RGB image.

    Limits are checked before any pixel is decoded: the file size against
    ``max_bytes`` and width*height from the header (after a JPEG draft, i.e.
    the size that will really be decoded) against ``max_pixels``.  Truncated
    files raise instead of coming back half grey.  ``draft_size`` lets the
    JPEG decoder produce a reduced image (1/2, 1/4, 1/8 scale) at least that
    big, which is much faster for thumbnails and encoder inputs.
    """
    name, data = _read_bytes(source, max_bytes)
    image = _open(name, data)
    if draft_size is not None and image.format == "JPEG":
        image.draft("RGB", tuple(draft_size))
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image is {width}x{height} = {width * height} pixels, "
            f"over the limit of {max_pixels} (possible decompression bomb)"
        )
    _decode(name, image)
    return to_rgb(_upright(image), name=name)


def image_sha1(path: str | Path) -> str:
    """SHA-1 of the file's bytes, read in chunks: a cache key that changes when the photo does."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha1").hexdigest()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def to_rgb(image: Image.Image, *, name: str = "<image>") -> Image.Image:
    """Any PIL mode to 8-bit RGB; alpha is composited on white, high bit depths are rescaled not clipped."""
    if image.mode.startswith(_HIGH_DEPTH_PREFIXES):
        image = _high_depth_to_l(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"{name}: cannot convert mode {image.mode} to RGB ({exc})") from exc


def _read_bytes(source: str | Path | bytes, max_bytes: int) -> tuple[str, bytes]:
    """The source's name for messages and its bytes, refusing missing, empty or oversized files early."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = f"<{len(data)} bytes>"
    else:
        name = str(source)
        size = _file_size(name)
        if size > max_bytes:
            raise ImageError(f"{name}: file is {size} bytes, over the limit of {max_bytes} bytes")
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            raise ImageError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise ImageError(f"{name}: {len(data)} bytes, over the limit of {max_bytes} bytes")
    if not data:
        raise ImageError(f"{name}: file is empty")
    return name, data


def _file_size(name: str) -> int:
    try:
        stat = os.stat(name)
    except FileNotFoundError as exc:
        raise ImageError(f"{name}: no such file") from exc
    except OSError as exc:
        raise ImageError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    if not os.path.isfile(name):
        raise ImageError(f"{name}: not a regular file")
    return stat.st_size


def _open(name: str, data: bytes) -> Image.Image:
    """Parse the header only; PIL's own bomb check (global limit) is reported as our error too."""
    try:
        with warnings.catch_warnings():
            # Our max_pixels check replaces PIL's warning; its hard error still applies as a backstop.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: decompression bomb refused ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not a recognised image file") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: corrupt image header ({exc})") from exc


def _decode(name: str, image: Image.Image) -> None:
    """Decode all pixels now so truncation and corruption surface here, named."""
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: decompression bomb refused ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        reason = "truncated or corrupt image data" if "truncated" in str(exc).lower() else "corrupt image data"
        raise ImageError(f"{name}: {reason} ({exc})") from exc


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the image as stored rather than failing."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        return image


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """16/32-bit and float greyscale to 8-bit L by scaling (PIL's convert clips everything above 255)."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scale = 65535.0
    elif image.mode == "F" and array.size and np.nanmax(array) <= 1.0:
        scale = 1.0
    else:
        peak = float(np.nanmax(array)) if array.size else 0.0
        scale = 255.0 if peak <= 255 else (65535.0 if peak <= 65535 else peak)
    scaled = np.nan_to_num(array / scale * 255.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
