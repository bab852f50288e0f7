"""Photo-like renderings of a packshot: the garment cut from its white background and shown as users shoot it.

A model trained only on packshots on white learns the white. Users tag a
shopper's photo, a supplier's flat-lay or a scanned catalogue page, so the
heads must meet the same garment on other backgrounds, framed, tilted, lit
and compressed differently. The white studio background makes the garment's
mask cheap: near-white pixels connected to the border are background.

Every draw comes from a generator seeded by the view's seed and the photo's
pixels, so a rendering is repeatable and its tower features cache like a photo's.
Colour is a label (captions say "navy blue shirt"), so hue is never shifted:
only brightness, contrast and saturation move, and a greyscale draw is rare.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image, ImageFilter, ImageOps
from scipy import ndimage

#: Bump when the drawing below changes: it is part of the feature-cache key (``views.view_id``).
PHOTO_LIKE_VERSION = 1

#: Pixels whose darkest channel is above this count as studio white.
WHITE_LEVEL = 244


def garment_mask(image: Image.Image) -> Image.Image:
    """An "L" mask, 255 on the garment: everything but the near-white region touching the photo's border.

    White inside the garment (a white shirt's front) is not connected to the
    border through white, so it stays garment. A photo with no white border
    (a real photo, not a packshot) is all garment.
    """
    pixels = np.asarray(image.convert("RGB"))
    white = pixels.min(axis=2) > WHITE_LEVEL
    labels, _ = ndimage.label(white)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, border[border > 0])
    padded = np.pad(~background, 3, mode="edge")  # closing must not eat the photo's own edge
    garment = ndimage.binary_closing(padded, iterations=2)[3:-3, 3:-3]  # seal thin gaps in a white garment's outline
    garment = ndimage.binary_fill_holes(garment)  # and keep the white inside it
    mask = Image.fromarray(np.where(garment, 255, 0).astype(np.uint8))
    if garment.all():
        return mask
    return mask.filter(ImageFilter.GaussianBlur(0.8))  # soft edge, as a cut-out in a real photo has


def _rng(image: Image.Image, seed: int) -> np.random.Generator:
    digest = hashlib.blake2b(image.tobytes(), digest_size=8, person=b"photolike").digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A background colour: mostly muted (walls, floors, fabric), sometimes saturated or dark."""
    base = rng.uniform(0, 255, 3)
    grey = rng.uniform(30, 235)
    mix = rng.uniform(0.2, 1.0)
    return np.clip(grey + (base - grey) * mix, 0, 255)


def background(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A backdrop the garment is composited onto: solid, gradient, blurred scene-like blobs, noise, or stripes."""
    w, h = size
    kind = rng.choice(["solid", "gradient", "blobs", "noise", "stripes"], p=[0.2, 0.25, 0.3, 0.15, 0.1])
    if kind == "solid":
        array = np.broadcast_to(_colour(rng), (h, w, 3))
    elif kind == "gradient":
        a, b = _colour(rng), _colour(rng)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        t = (np.cos(angle) * xx / max(w, 1) + np.sin(angle) * yy / max(h, 1))
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        array = a + (b - a) * t[..., None]
    elif kind == "blobs":  # an out-of-focus room or street: a few colours blown up smoothly
        cells = rng.integers(2, 6)
        small = np.stack([_colour(rng) for _ in range(cells * cells)]).reshape(cells, cells, 3)
        array = np.asarray(Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float64)
    elif kind == "noise":  # carpet, concrete, knit: coloured noise, blurred to a grain
        grain = rng.normal(0, rng.uniform(10, 45), (h, w, 1 if rng.random() < 0.5 else 3))
        array = np.clip(_colour(rng) + grain, 0, 255)
        radius = rng.uniform(0, 1.5)
        array = np.asarray(Image.fromarray(array.astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius)), dtype=np.float64)
    else:  # stripes or planks: a regular texture
        period = rng.uniform(6, 40)
        yy, xx = np.mgrid[0:h, 0:w]
        angle = rng.uniform(0, np.pi)
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) / period
        t = (np.sin(2 * np.pi * phase) > 0).astype(np.float64)[..., None]
        a, b = _colour(rng), _colour(rng)
        array = a + (b - a) * t
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")


def _place(image: Image.Image, mask: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """Scale, rotate, shift and maybe mirror the garment (and its mask) on a canvas of the photo's size."""
    w, h = image.size
    scale = rng.uniform(0.6, 1.15)
    angle = rng.uniform(-14, 14)
    dx, dy = rng.uniform(-0.12, 0.12) * w, rng.uniform(-0.12, 0.12) * h
    if rng.random() < 0.5:
        image, mask = ImageOps.mirror(image), ImageOps.mirror(mask)
    rgba = image.convert("RGBA")
    rgba.putalpha(mask)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    rgba = rgba.resize(size, Image.Resampling.BILINEAR).rotate(angle, Image.Resampling.BILINEAR, expand=True)
    canvas = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    canvas.paste(rgba, (round((w - rgba.width) / 2 + dx), round((h - rgba.height) / 2 + dy)), rgba)
    return canvas.convert("RGB"), canvas.getchannel("A")


def _perspective(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A mild keystone, as from a phone held at an angle (the edges show the backdrop, not black)."""
    w, h = image.size
    d = rng.uniform(0.03, 0.12)
    src = [(rng.uniform(0, d) * w, rng.uniform(0, d) * h), (w - rng.uniform(0, d) * w, rng.uniform(0, d) * h),
           (w - rng.uniform(0, d) * w, h - rng.uniform(0, d) * h), (rng.uniform(0, d) * w, h - rng.uniform(0, d) * h)]
    dst = [(0, 0), (w, 0), (w, h), (0, h)]
    coeffs = _perspective_coefficients(dst, src)
    return image.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR, fillcolor=image.getpixel((0, 0)))


def _perspective_coefficients(dst: list[tuple[float, float]], src: list[tuple[float, float]]) -> list[float]:
    rows = []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    b = np.array(src, dtype=np.float64).reshape(8)
    return np.linalg.solve(np.array(rows, dtype=np.float64), b).tolist()


def _crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random resized crop keeping 55-100% of the area: closer framing, part of the garment cut off."""
    w, h = image.size
    area = rng.uniform(0.55, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw, ch = min(w, round(w * np.sqrt(area * aspect))), min(h, round(h * np.sqrt(area / aspect)))
    x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    return image.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR)


def _light(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness, contrast and saturation jitter (never hue: the colour is what the caption says)."""
    array = np.asarray(image, dtype=np.float32)
    grey = array.mean(axis=2, keepdims=True)
    array = grey + (array - grey) * rng.uniform(0.6, 1.35)  # saturation
    array = array.mean() + (array - array.mean()) * rng.uniform(0.7, 1.3)  # contrast
    array = array * rng.uniform(0.7, 1.25)  # brightness
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")


def _degrade(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """What cameras, scans and uploads do: blur, low resolution, greyscale, sensor noise, JPEG blocks."""
    w, h = image.size
    if rng.random() < 0.25:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.8)))
    if rng.random() < 0.25:
        side = int(rng.integers(24, 97))
        scale = side / max(w, h)
        if scale < 1:
            small = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
            image = small.resize((w, h), Image.Resampling.BICUBIC)
    if rng.random() < 0.15:
        image = ImageOps.grayscale(image).convert("RGB")
    if rng.random() < 0.2:
        noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(3, 12), (h, w, 1))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.4:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(15, 70)))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image


def photo_like(image: Image.Image, seed: int) -> Image.Image:
    """One repeatable photo-like rendering of a packshot (the same size as the photo).

    A sixth of the draws keep the white studio background (so the heads do not
    learn that white means nothing); the rest composite the garment onto a new
    backdrop. Then framing, light and camera degradations.
    """
    image = image.convert("RGB")
    rng = _rng(image, seed)
    mask = garment_mask(image)
    placed, alpha = _place(image, mask, rng)
    backdrop = Image.new("RGB", image.size, (255, 255, 255)) if rng.random() < 1 / 6 else background(image.size, rng)
    out = Image.composite(placed, backdrop, alpha)
    if rng.random() < 0.3:
        out = _perspective(out, rng)
    if rng.random() < 0.4:
        out = _crop(out, rng)
    return _degrade(_light(out, rng), rng)
