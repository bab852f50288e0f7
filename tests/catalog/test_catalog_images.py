"""Safe decoding: every awkward real-world image becomes upright RGB, or an ImageError naming the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from catalog_testkit import noisy_jpeg, png_with_header_size
from modalens.catalog import CatalogError, ImageError, image_sha1, load_image


def close(pixel, expected, tol=6) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected))


def test_cmyk_jpeg_becomes_rgb_with_the_right_colour(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("RGB", (32, 32), (220, 40, 30)).convert("CMYK").save(path, "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (32, 32)
    assert close(image.getpixel((16, 16)), (220, 40, 30), tol=12)


def test_palette_transparency_is_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    image = Image.new("P", (10, 4), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black (transparent), index 1 blue
    image.paste(1, (5, 0, 10, 4))
    image.save(path, transparency=0)
    rgb = load_image(path)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((1, 1)) == (255, 255, 255)  # transparent black -> white, not black
    assert rgb.getpixel((8, 1)) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode}.png"
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(0, 0, 0, 0), (0, 0, 0, 128), (0, 0, 0, 255)])
    rgba.convert(mode).save(path)
    rgb = load_image(path)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert close(rgb.getpixel((1, 0)), (127, 127, 127), tol=2)
    assert rgb.getpixel((2, 0)) == (0, 0, 0)


def test_rgb_png_with_transparent_colour_key(tmp_path: Path) -> None:
    path = tmp_path / "keyed.png"
    image = Image.new("RGB", (2, 1), (10, 20, 30))
    image.putpixel((1, 0), (200, 0, 0))
    image.save(path, transparency=(10, 20, 30))
    rgb = load_image(path)
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((1, 0)) == (200, 0, 0)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    Image.fromarray(np.array([[0, 128 * 257, 65535]], dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = load_image(path)
    assert [rgb.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_float_greyscale_in_unit_range(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(path)
    assert Image.open(path).mode == "F"
    rgb = load_image(path)
    assert [rgb.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


@pytest.mark.parametrize("mode", ["1", "L"])
def test_bilevel_and_greyscale(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode}.png"
    image = Image.new(mode, (4, 1), 0)
    image.putpixel((3, 0), 255)
    image.save(path)
    rgb = load_image(path)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (0, 0, 0) and rgb.getpixel((3, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """Orientation 6: stored row 0 is the visual right side, so the stored top-left goes to the top-right."""
    path = tmp_path / "rotated.jpg"
    stored = Image.new("RGB", (64, 32), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 16, 16))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())
    image = load_image(path)
    assert image.size == (32, 64)
    assert close(image.getpixel((32 - 8, 8)), (255, 0, 0), tol=20)  # red now at the top-right
    assert close(image.getpixel((8, 8)), (0, 0, 255), tol=20)


def test_truncated_jpeg_raises_and_names_the_file(tmp_path: Path) -> None:
    path = noisy_jpeg(tmp_path / "cut.jpg")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 6 // 10])
    with pytest.raises(ImageError, match="truncated") as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert load_image(whole).size == (256, 256)  # the uncut bytes decode


def test_truncated_png_raises(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_bomb_by_header_is_refused_before_decoding(tmp_path: Path) -> None:
    path = png_with_header_size(tmp_path / "bomb.png", 10_000, 10_000)
    with pytest.raises(ImageError, match="100000000 pixels") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_pil_bomb_error_is_reported_even_when_our_limit_is_higher(tmp_path: Path) -> None:
    path = png_with_header_size(tmp_path / "huge.png", 50_000, 50_000)
    with pytest.raises(ImageError, match="bomb"):
        load_image(path, max_pixels=10**12)


def test_real_bilevel_bomb_is_small_on_disk_but_refused(tmp_path: Path) -> None:
    path = tmp_path / "bilevel.png"
    Image.new("1", (7000, 7000)).save(path)
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageError, match="over the limit"):
        load_image(path)


def test_max_pixels_is_the_callers_limit(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(path)
    assert load_image(path).size == (100, 100)
    with pytest.raises(ImageError, match="10000 pixels"):
        load_image(path, max_pixels=9_999)


def test_file_size_is_checked_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(b"not an image at all " * 100)
    with pytest.raises(ImageError, match="over the limit of 1000 bytes"):
        load_image(path, max_bytes=1000)
    with pytest.raises(ImageError, match="not a recognised image"):
        load_image(path)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("text.jpg", b"hello, I am a CSV file\n1,2,3\n", "not a recognised image"),
        ("empty.png", b"", "empty"),
        ("missing.jpg", None, "no such file"),
    ],
)
def test_bad_files_raise_image_error_naming_the_path(tmp_path: Path, name: str, content, reason: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, CatalogError)


def test_bytes_source(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (5, 3), (1, 2, 3)).save(path)
    image = load_image(path.read_bytes())
    assert image.size == (5, 3) and image.getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(ImageError, match="bytes"):
        load_image(b"garbage")


def test_draft_size_decodes_jpeg_at_reduced_size(tmp_path: Path) -> None:
    path = noisy_jpeg(tmp_path / "big.jpg", size=(800, 600))
    full = load_image(path)
    small = load_image(path, draft_size=(200, 150))
    assert full.size == (800, 600)
    assert 200 <= small.size[0] < 800 and 150 <= small.size[1] < 600
    assert small.mode == "RGB"


def test_image_sha1_hashes_file_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * (3 * 2**20 + 7))
    b.write_bytes(b"x" * (3 * 2**20 + 6) + b"y")
    assert image_sha1(a) == hashlib.sha1(a.read_bytes()).hexdigest()
    assert image_sha1(a) != image_sha1(b)
    with pytest.raises(ImageError, match="nope"):
        image_sha1(tmp_path / "nope.jpg")


def test_draft_fit_decodes_no_more_than_the_letterbox_needs(tmp_path: Path) -> None:
    path = noisy_jpeg(tmp_path / "tall.jpg", size=(600, 1800))
    image = load_image(path, draft_fit=224)
    # The letterbox box is 75 x 224, so 1/8 scale (75 x 225) is enough; a square (224, 224) draft would stop at 1/2.
    assert image.size == (75, 225)
    assert load_image(path, draft_size=(224, 224)).size == (300, 900)
    assert load_image(path, draft_fit=2000).size == (600, 1800)  # never upscaled, never reduced below the target


def test_draft_limit_applies_to_the_reduced_size_of_a_baseline_jpeg(tmp_path: Path) -> None:
    path = noisy_jpeg(tmp_path / "big.jpg", size=(1600, 1200))
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(path, max_pixels=1_000_000)
    assert load_image(path, max_pixels=1_000_000, draft_fit=224).size == (400, 300)


def test_draft_does_not_lift_the_limit_for_a_progressive_jpeg(tmp_path: Path) -> None:
    """A progressive decoder holds the whole image's coefficients whatever the output scale."""
    path = tmp_path / "progressive.jpg"
    Image.fromarray(np.full((1200, 1600, 3), 128, np.uint8)).save(path, "JPEG", progressive=True)
    with pytest.raises(ImageError, match="1600x1200"):
        load_image(path, max_pixels=1_000_000, draft_fit=224)
    assert load_image(path, draft_fit=224).size == (400, 300)
