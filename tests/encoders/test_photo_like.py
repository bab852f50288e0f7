"""Photo-like views: repeatable renderings of a packshot on new backgrounds, keyed apart in the feature cache."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from modalens.encoders.features import image_feature_salt
from modalens.encoders.photo_like import PHOTO_LIKE_VERSION, garment_mask, photo_like
from modalens.encoders.views import get_view, is_view, view_id


def _packshot() -> Image.Image:
    """A navy garment with a white patch inside it (a white print on a shirt), on studio white."""
    image = Image.new("RGB", (120, 160), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle((30, 30, 90, 130), fill=(20, 30, 90))
    draw.rectangle((50, 60, 70, 80), fill=(255, 255, 255))
    return image


def test_garment_mask_keeps_white_inside_the_garment_and_drops_the_studio_white():
    mask = np.asarray(garment_mask(_packshot())) > 127
    assert mask[70, 60], "white print inside the garment must stay garment"
    assert mask[40, 35] and mask[120, 85]
    assert not mask[5, 5] and not mask[150, 110] and not mask[80, 10]
    assert 0.25 < mask.mean() < 0.4  # the garment's share of the photo (61 × 101 of 120 × 160 ≈ 0.32)


def test_a_photo_with_no_white_border_is_all_garment():
    photo = Image.new("RGB", (64, 64), (90, 120, 60))
    assert (np.asarray(garment_mask(photo)) > 127).all()


def test_same_seed_same_rendering_other_seed_other_rendering():
    image = _packshot()
    a, b = np.asarray(photo_like(image, 3)), np.asarray(photo_like(image, 3))
    assert np.array_equal(a, b)
    assert a.shape == np.asarray(image).shape
    others = [np.asarray(photo_like(image, s)) for s in range(4, 8)]
    assert all(not np.array_equal(a, o) for o in others)


def test_most_renderings_replace_the_white_background():
    image = _packshot()
    corners = [np.asarray(photo_like(image, seed))[2:8, 2:8].reshape(-1, 3).mean(axis=0) for seed in range(24)]
    replaced = sum(1 for c in corners if (c < 235).any())
    assert replaced >= 16, f"only {replaced} of 24 renderings changed the backdrop"
    kept = 24 - replaced
    assert kept >= 1, "some renderings should keep the studio white, or white comes to mean 'not a photo'"


def test_seeded_view_names_and_their_cache_identity():
    assert is_view("photo-like:0") and is_view("photo-like:12") and is_view("thumbnail-grey")
    assert not is_view("photo-like") and not is_view("photo-like:x") and not is_view("sepia:1")
    with pytest.raises(ValueError, match="unknown image view"):
        get_view("photo-like:")
    assert view_id("photo-like:3") == f"photo-like:3@v{PHOTO_LIKE_VERSION}"
    assert view_id("greyscale") == "greyscale"
    rendered = np.asarray(get_view("photo-like:5")(_packshot()))
    assert np.array_equal(rendered, np.asarray(photo_like(_packshot(), 5)))


def test_each_view_has_its_own_feature_cache_key():
    class Tower:
        preprocess_id = "tower|224"

    salts = {image_feature_salt(Tower(), draft=True, view=v) for v in (None, "photo-like:0", "photo-like:1", "greyscale")}
    assert len(salts) == 4
    assert f"@v{PHOTO_LIKE_VERSION}" in image_feature_salt(Tower(), draft=True, view="photo-like:0")


#: sha256 of photo_like(_packshot(), seed) for seeds 0-2 as drawn at PHOTO_LIKE_VERSION (see photo_like.py).
#: If this fails, the renderer's output changed (code, Pillow, NumPy or SciPy): cached features of photo-like
#: views no longer match what the renderer draws, so bump PHOTO_LIKE_VERSION and record the new digests.
RENDER_DIGESTS = {0: "e925a2c1b12bbe51", 1: "3f30aa55546973d0", 2: "9347321bdc0bdc43"}


def test_renderer_output_is_pinned_to_its_version():
    import hashlib

    got = {seed: hashlib.sha256(photo_like(_packshot(), seed).tobytes()).hexdigest()[:16] for seed in range(3)}
    assert got == RENDER_DIGESTS, f"photo-like output changed: bump PHOTO_LIKE_VERSION (now {PHOTO_LIKE_VERSION}) and set RENDER_DIGESTS = {got}"


def test_seed_spellings_are_one_view_and_non_ascii_digits_are_not_seeds():
    assert view_id("photo-like:03") == view_id("photo-like:3")
    assert not is_view("photo-like:²") and not is_view("photo-like:٣") and not is_view(3)
