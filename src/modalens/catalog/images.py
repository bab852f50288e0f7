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
import stat
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .schema import CatalogError

__all__ = [
    "MAX_IMAGE_BYTES",
    "ImageError",
    "fitted_size",
    "image_sha1",
    "letterbox",
    "load_image",
    "load_letterboxed",
    "load_letterboxed_many",
    "normalise_pixels",
    "open_image_file",
    "open_regular_file",
    "read_image_bytes",
]

#: The largest photo file modalens reads, in bytes; a bigger one is refused before a byte of it is read.
MAX_IMAGE_BYTES = 50 * 2**20

#: Background for transparent pixels: product photos are shot on white.
WHITE = (255, 255, 255)

#: A deterministic transform of the decoded image (see ``encoders.views``).
ImageView = Callable[[Image.Image], Image.Image]

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_DEPTH_PREFIXES = ("I", "F")  # I, I;16, I;16B, I;16L, I;16N, F


class ImageError(CatalogError):
    """An image that cannot be decoded safely; the message names the source and the reason."""


def load_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = 40_000_000,
    max_bytes: int = MAX_IMAGE_BYTES,
    draft_size: tuple[int, int] | None = None,
    draft_fit: int | None = None,
) -> Image.Image:
    """Decode ``source`` (a path or the encoded bytes) into an upright RGB image.

    Limits are checked before any pixel is decoded: the file size against
    ``max_bytes`` and width*height from the header (after a JPEG draft, i.e.
    the size that will really be decoded; for a progressive JPEG, whose decoder
    holds the full image's coefficients anyway, before it) against ``max_pixels``.  Truncated
    files raise instead of coming back half grey.  ``draft_size`` lets the
    JPEG decoder produce a reduced image (1/2, 1/4, 1/8 scale) at least that
    big, which is much faster for thumbnails and encoder inputs.
    ``draft_fit`` asks for the same with the box that :func:`letterbox` to a
    ``draft_fit`` square will resize to, so no detail the letterbox keeps is lost.
    """
    name, data = _read_bytes(source, max_bytes)
    image = _open(name, data)
    if draft_fit is not None:
        draft_size = fitted_size(image.size, draft_fit)
    drafted = draft_size is not None and image.format == "JPEG"
    if not drafted or image.info.get("progressive"):
        # A progressive JPEG keeps every DCT coefficient of the full image even when drafted.
        _check_pixels(name, image.size, max_pixels)
    if drafted:
        image.draft("RGB", tuple(draft_size))
        _check_pixels(name, image.size, max_pixels)
    _decode(name, image)
    return to_rgb(_upright(image), name=name)


def load_letterboxed(source: str | Path | bytes, size: int, *, draft: bool = True, view: ImageView | None = None) -> np.ndarray:
    """Decode ``source`` and fit it into a ``size`` square on white: the uint8 (size, size, 3) pixels an image tower normalises.

    ``draft`` lets a JPEG much larger than ``size`` decode at 1/2, 1/4 or 1/8
    scale in the DCT (several times faster; pixels differ slightly from a
    full decode, so callers that cache features must key on it).
    ``view`` transforms the upright RGB image before the letterbox.
    """
    image = load_image(source, draft_fit=size if draft else None)
    if view is not None:
        image = view(image)
    return np.asarray(letterbox(image, size))


def load_letterboxed_many(
    sources: list[str], size: int, draft: bool = True, view: ImageView | None = None
) -> list[tuple[np.ndarray | None, str | None]]:
    """:func:`load_letterboxed` for several files: ``(pixels, None)`` or ``(None, reason)`` each, never an exception.

    This is what decoding worker processes run, which is why it lives in this
    torch-free module (a worker imports only PIL and numpy) and returns plain
    arrays and strings, cheap to send back.
    """
    results: list[tuple[np.ndarray | None, str | None]] = []
    for source in sources:
        try:
            results.append((load_letterboxed(source, size, draft=draft, view=view), None))
        except Exception as exc:  # any decode problem is the image's, not the run's
            results.append((None, str(exc)))
    return results


def fitted_size(size: tuple[int, int], side: int) -> tuple[int, int]:
    """The (width, height) that :func:`letterbox` resizes an image of ``size`` to: longer side ``side``, aspect kept."""
    width, height = size
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def letterbox(image: Image.Image, size: int, fill: tuple[int, int, int] = WHITE) -> Image.Image:
    """Resize the longer side to ``size`` and pad to a square (no crop: a cut-off sleeve is a different product)."""
    image = image.convert("RGB")
    new_w, new_h = fitted_size(image.size, size)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    if new_w == new_h == size:
        return image
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(image, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def image_sha1(path: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """SHA-1 of the file's bytes, read in chunks: a cache key that changes when the photo does.

    Checked like every photo read (:func:`open_image_file`): a FIFO, a device or
    a file over ``max_bytes`` is an :class:`ImageError`, never a hang.
    """
    digest = hashlib.sha1()
    with open_image_file(path, max_bytes=max_bytes) as handle:
        total = 0
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            total += len(chunk)
            if total > max_bytes:  # it grew after the check
                raise ImageError(f"{path}: file grew past the limit of {max_bytes} bytes while it was read")
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def open_image_file(path: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES) -> Iterator[BinaryIO]:
    """Open a user's photo for reading only if it is a regular file of at most ``max_bytes``.

    The path is resolved (a link counts as what it points to) and checked
    before it is opened, so a FIFO (whose open blocks until someone writes),
    a device such as /dev/zero (which never ends) or a huge file is refused
    as an :class:`ImageError` without waiting or reading.  The open itself is
    non-blocking and the opened file is checked again, so a file swapped for
    a FIFO between the check and the open is refused too.  Callers still read
    at most ``max_bytes`` (+1, to notice a file that grew).
    """
    with open_regular_file(path, max_bytes=max_bytes, error=ImageError) as handle:
        yield handle


@contextmanager
def open_regular_file(
    path: str | Path, *, max_bytes: int | None = None, error: type[CatalogError] = CatalogError
) -> Iterator[BinaryIO]:
    """:func:`open_image_file` for any file a user names (``max_bytes`` None: no size limit); problems raise ``error``."""
    name = str(path)
    _check_regular(name, _stat(name, os.stat, error), max_bytes, error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(name, flags)
    except OSError as exc:
        raise error(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    try:
        _check_regular(name, _stat(fd, os.fstat, error), max_bytes, error)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        try:
            yield handle
        except OSError as exc:
            raise error(f"{name}: cannot read file ({exc.strerror or exc})") from exc


def read_image_bytes(path: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """A photo file's bytes, checked by :func:`open_image_file` and read to at most ``max_bytes``."""
    with open_image_file(path, max_bytes=max_bytes) as handle:
        # Ask for the size the file had when checked, +1 to see whether it grew (a read of max_bytes would
        # allocate that much for every small photo).
        expected = min(os.fstat(handle.fileno()).st_size, max_bytes) + 1
        data = handle.read(expected)
        while len(data) == expected and len(data) <= max_bytes:  # it grew: read on, up to the limit
            more = handle.read(max_bytes + 1 - len(data))
            if not more:
                break
            data += more
    if len(data) > max_bytes:
        raise ImageError(f"{path}: file grew past the limit of {max_bytes} bytes while it was read")
    return data


def _stat(target: str | int, how: Callable[..., os.stat_result], error: type[CatalogError] = ImageError) -> os.stat_result:
    name = target if isinstance(target, str) else f"<fd {target}>"
    try:
        return how(target)
    except FileNotFoundError as exc:
        raise error(f"{name}: no such file") from exc
    except OSError as exc:
        raise error(f"{name}: cannot read file ({exc.strerror or exc})") from exc


def _check_regular(name: str, info: os.stat_result, max_bytes: int | None, error: type[CatalogError] = ImageError) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{name}: not a regular file ({file_kind(info.st_mode)})")
    if max_bytes is not None and info.st_size > max_bytes:
        raise error(f"{name}: file is {info.st_size} bytes, over the limit of {max_bytes} bytes")


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words, for error messages."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


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
    """The source's name for messages and its bytes, refusing missing, special, empty or oversized files early."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = f"<{len(data)} bytes>"
    else:
        name = str(source)
        data = read_image_bytes(name, max_bytes=max_bytes)
    if len(data) > max_bytes:
        raise ImageError(f"{name}: {len(data)} bytes, over the limit of {max_bytes} bytes")
    if not data:
        raise ImageError(f"{name}: file is empty")
    return name, data


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


def _check_pixels(name: str, size: tuple[int, int], max_pixels: int) -> None:
    """Refuse an image whose decode would hold more than ``max_pixels`` pixels."""
    width, height = size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image is {width}x{height} = {width * height} pixels, "
            f"over the limit of {max_pixels} (possible decompression bomb)"
        )


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


def normalise_pixels(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float], *, channels_last: bool = False) -> np.ndarray:
    """uint8 (B, H, W, 3) → float32 (B, 3, H, W) as ``(x - mean) / std``, in two passes over the batch: a tower's input.

    The subtraction reads the uint8 channels-last stack through a transposed
    view and writes the planar float result directly, so stacking decoded
    photos costs no float copy per image (several times faster than per-image
    conversion). Values are bit-identical to the per-image float32 arithmetic.
    With ``channels_last`` the result is a (B, 3, H, W) view of channels-last
    memory, which is what torch's convolutions prefer.
    """
    mean32 = np.asarray(mean, dtype=np.float32)
    std32 = np.asarray(std, dtype=np.float32)
    if channels_last:
        out = np.subtract(pixels, mean32, dtype=np.float32)
        np.divide(out, std32, out=out)
        return out.transpose(0, 3, 1, 2)
    out = np.empty((pixels.shape[0], pixels.shape[3], pixels.shape[1], pixels.shape[2]), dtype=np.float32)
    np.subtract(pixels.transpose(0, 3, 1, 2), mean32[:, None, None], out=out, dtype=np.float32)
    np.divide(out, std32[:, None, None], out=out)
    return out
