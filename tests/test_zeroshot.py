"""Zero-shot classifiers built from a DualEncoder and (fake or real) text features."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from modalens.models import create_model
from modalens.prompts import ZERO_SHOT_TEMPLATES, zero_shot_prompts
from modalens.zeroshot import ZeroShotClassifier, build_classifier

TEXT_DIM = 384


class FakeTextFeatures:
    """Deterministic float32 features per text (seeded by its hash); records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    @staticmethod
    def vector(text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).normal(size=TEXT_DIM).astype(np.float32)

    def __call__(self, texts):
        texts = list(texts)
        self.calls.append(texts)
        return np.stack([self.vector(t) for t in texts]).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("modalens-lite", pretrained=False)


def test_weights_are_normalised_mean_of_prompt_embeddings(model) -> None:
    feats = FakeTextFeatures()
    clf = build_classifier(model, ["Tshirts", "Jeans", "Watches"], text_features=feats)
    assert clf.labels == ["Tshirts", "Jeans", "Watches"]
    assert clf.weights.shape == (3, model.config.embed_dim)
    assert clf.weights.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(clf.weights, axis=1), 1.0, atol=1e-5)

    # By hand: project each label's prompts, average, normalise.
    for label, row in zip(clf.labels, clf.weights):
        prompts = zero_shot_prompts([label])[0]
        projected = model.project_features(np.stack([FakeTextFeatures.vector(p) for p in prompts]), "text")
        mean = projected.mean(axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), atol=1e-5)
    assert model._towers == {}  # the callable replaced the text tower entirely


def test_labels_are_deduplicated_and_blank_labels_dropped(model) -> None:
    feats = FakeTextFeatures()
    clf = build_classifier(model, ["Shirts", "Jeans", "Shirts", "  ", "", "Jeans"], text_features=feats)
    assert clf.labels == ["Shirts", "Jeans"]
    assert clf.weights.shape[0] == 2
    assert len(feats.calls) == 1 and len(feats.calls[0]) == 2 * len(ZERO_SHOT_TEMPLATES)


def test_custom_templates(model) -> None:
    feats = FakeTextFeatures()
    clf = build_classifier(model, ["Tshirts", "Jeans"], templates=["{label}", "a photo of {label}"], text_features=feats)
    assert feats.calls[0] == ["t-shirt", "a photo of t-shirt", "jeans", "a photo of jeans"]
    assert clf.weights.shape == (2, model.config.embed_dim)


@pytest.mark.parametrize("labels", [[], ["", "   "]])
def test_empty_label_set_raises(model, labels) -> None:
    with pytest.raises(ValueError, match="empty"):
        build_classifier(model, labels, text_features=FakeTextFeatures())


def test_predict_picks_the_label_whose_weight_matches(model) -> None:
    clf = build_classifier(model, ["Tshirts", "Jeans", "Watches", "Sandals"], text_features=FakeTextFeatures())
    images = clf.weights[[2, 0, 3]]
    assert clf.predict(images) == ["Watches", "Tshirts", "Sandals"]
    scores = clf.scores(images)
    assert scores.shape == (3, 4)
    np.testing.assert_allclose(scores[np.arange(3), [2, 0, 3]], 1.0, atol=1e-5)


def test_top_k_probabilities_are_sorted_and_sum_at_most_one(model) -> None:
    clf = build_classifier(model, ["Tshirts", "Jeans", "Watches", "Sandals", "Bags"], text_features=FakeTextFeatures())
    rng = np.random.default_rng(0)
    images = rng.normal(size=(6, model.config.embed_dim)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    for temperature in (1.0, 100.0):
        top = clf.top_k(images, k=3, temperature=temperature)
        assert len(top) == 6
        for row, image in zip(top, images):
            assert len(row) == 3
            probs = [p for _, p in row]
            assert probs == sorted(probs, reverse=True)
            assert all(0.0 <= p <= 1.0 for p in probs)
            assert sum(probs) <= 1.0 + 1e-6
            assert len({label for label, _ in row}) == 3
            assert row[0][0] == clf.predict(image[None])[0]
    full = clf.top_k(images, k=10)
    assert all(len(row) == 5 for row in full)  # k larger than the label set
    for row in full:
        assert sum(p for _, p in row) == pytest.approx(1.0, abs=1e-5)


def test_top_k_matches_softmax_by_hand() -> None:
    weights = np.eye(3, dtype=np.float32)
    clf = ZeroShotClassifier(["a", "b", "c"], weights)
    image = np.array([[0.6, 0.8, 0.0]], dtype=np.float32)
    logits = np.array([0.6, 0.8, 0.0]) * 10.0
    probs = np.exp(logits) / np.exp(logits).sum()
    (row,) = clf.top_k(image, k=2, temperature=10.0)
    assert [label for label, _ in row] == ["b", "a"]
    assert row[0][1] == pytest.approx(probs[1], rel=1e-5)
    assert row[1][1] == pytest.approx(probs[0], rel=1e-5)


def test_real_text_tower_path_equals_callable_path() -> None:
    """Without a callable the model's own text tower is used; a callable wrapping that tower agrees."""
    model = create_model("modalens-lite", pretrained=False)  # its own instance: this one loads a tower
    labels = ["Tshirts", "Jeans"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small busy CI boxes: avoid thread-pool spinning
    try:
        direct = build_classifier(model, labels, templates=["a photo of {label}"])
        tower = model.text_tower

        def via_tower(texts):
            with torch.no_grad():
                return tower(list(texts)).numpy()

        cached = build_classifier(model, labels, templates=["a photo of {label}"], text_features=via_tower)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(direct.weights, cached.weights, atol=1e-5)
    assert not np.allclose(direct.weights[0], direct.weights[1], atol=1e-3)
