"""ClipLoss against hand computations (NumPy, not the code under test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modalens.losses import ClipLoss


def _normalise(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _soft_ce(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean over rows of -sum_j t_ij log softmax(logits_i)_j, in float64."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-(targets * log_probs).sum(axis=1).mean())


IMAGES = _normalise(np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.6, 0.8]]))
TEXTS = _normalise(np.array([[0.8, 0.6, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))


def _loss(images, texts, logit_scale, group_ids=None) -> float:
    return ClipLoss()(
        torch.tensor(images, dtype=torch.float32),
        torch.tensor(texts, dtype=torch.float32),
        torch.tensor(logit_scale, dtype=torch.float32),
        None if group_ids is None else torch.tensor(group_ids),
    ).item()


def test_equals_hand_computation_on_3x3() -> None:
    # Similarities by hand: S = I T^T
    #   [[0.8,  0.0,  0.0 ],
    #    [0.96, 0.8,  0.0 ],
    #    [0.36, 0.6,  0.8 ]]
    sims = np.array([[0.8, 0.0, 0.0], [0.96, 0.8, 0.0], [0.36, 0.6, 0.8]])
    np.testing.assert_allclose(IMAGES @ TEXTS.T, sims, atol=1e-12)
    scale = 2.0
    logits = scale * sims

    def row_ce(row: np.ndarray, i: int) -> float:
        return -row[i] + math.log(sum(math.exp(v) for v in row))

    image_to_text = np.mean([row_ce(logits[i], i) for i in range(3)])
    text_to_image = np.mean([row_ce(logits[:, i], i) for i in range(3)])
    expected = (image_to_text + text_to_image) / 2
    assert _loss(IMAGES, TEXTS, math.log(scale)) == pytest.approx(expected, abs=1e-5)
    # Spot-check one term fully by hand: row 0 is [1.6, 0, 0] -> -1.6 + log(e^1.6 + 2).
    assert row_ce(logits[0], 0) == pytest.approx(-1.6 + math.log(math.exp(1.6) + 2))


def test_logit_scale_is_clamped_at_max() -> None:
    capped = _loss(IMAGES, TEXTS, 4.6052)
    assert _loss(IMAGES, TEXTS, 20.0) == pytest.approx(capped, abs=1e-6)
    logits = math.exp(4.6052) * (IMAGES @ TEXTS.T)
    expected = (_soft_ce(logits, np.eye(3)) + _soft_ce(logits.T, np.eye(3))) / 2
    assert capped == pytest.approx(expected, rel=1e-5)


def test_perfect_alignment_with_high_scale_is_near_zero() -> None:
    eye = np.eye(4)
    assert _loss(eye, eye, math.log(100.0)) < 1e-6
    # ...and a swapped pairing is heavily penalised.
    assert _loss(eye, eye[[1, 0, 2, 3]], math.log(100.0)) > 40


def test_loss_is_symmetric_in_images_and_texts() -> None:
    assert _loss(IMAGES, TEXTS, 1.0) == pytest.approx(_loss(TEXTS, IMAGES, 1.0), abs=1e-6)


def test_distinct_group_ids_equal_plain_loss() -> None:
    assert _loss(IMAGES, TEXTS, 1.3, [7, 3, 5]) == pytest.approx(_loss(IMAGES, TEXTS, 1.3), abs=1e-6)


DUPLICATES = _normalise(np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


def test_duplicate_caption_as_negatives_costs_log2_per_duplicate_row() -> None:
    # Items 0 and 1 are the same caption with identical embeddings, perfectly aligned.
    # Treated as negatives of each other, rows 0 and 1 (both directions) cannot beat log 2.
    logits = 50.0 * DUPLICATES @ DUPLICATES.T
    expected = (_soft_ce(logits, np.eye(3)) + _soft_ce(logits.T, np.eye(3))) / 2
    plain = _loss(DUPLICATES, DUPLICATES, math.log(50.0))
    assert plain == pytest.approx(expected, abs=1e-5)
    assert plain == pytest.approx(2 / 3 * math.log(2), abs=1e-4)


def test_shared_caption_group_lowers_loss_for_identical_duplicates() -> None:
    log_scale = math.log(50.0)
    as_negatives = _loss(DUPLICATES, DUPLICATES, log_scale)
    grouped = _loss(DUPLICATES, DUPLICATES, log_scale, [0, 0, 1])
    assert grouped < as_negatives - 0.1


def test_shared_caption_group_lowers_loss_for_different_images() -> None:
    rng = np.random.default_rng(1)
    images = _normalise(rng.normal(size=(4, 5)))
    texts = _normalise(rng.normal(size=(4, 5)))
    texts[1] = texts[0]  # items 0 and 1: two products, one attribute caption
    plain = _loss(images, texts, 2.0)
    grouped = _loss(images, texts, 2.0, [0, 0, 1, 2])
    assert grouped < plain - 1e-3


def test_group_ids_change_the_loss_when_group_members_differ() -> None:
    rng = np.random.default_rng(0)
    images = _normalise(rng.normal(size=(5, 4)))
    texts = _normalise(rng.normal(size=(5, 4)))
    grouped = _loss(images, texts, 1.7, [2, 0, 2, 1, 2])
    assert math.isfinite(grouped)
    assert abs(grouped - _loss(images, texts, 1.7)) > 1e-3


def test_gradient_reaches_embeddings_and_temperature() -> None:
    images = torch.tensor(IMAGES, dtype=torch.float32, requires_grad=True)
    texts = torch.tensor(TEXTS, dtype=torch.float32, requires_grad=True)
    scale = torch.tensor(1.0, requires_grad=True)
    ClipLoss()(images, texts, scale).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert texts.grad is not None and texts.grad.abs().sum() > 0
    assert scale.grad is not None and scale.grad.abs() > 0
