"""ClipLoss, SigLipLoss and MultiFieldLoss against hand computations (NumPy and plain loops, not the code under test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modalens.losses import ClipLoss, MultiFieldLoss, SigLipLoss


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


# --- Hand references written with plain loops (not the code under test) -----------------------------------------


def _hand_grouped_clip(images: np.ndarray, texts: np.ndarray, scale: float, groups: list[int]) -> float:
    """MIL-NCE both ways: row i's loss is -log(sum of exp over i's positives / sum of exp over the whole row)."""
    n = len(images)
    sims = [[float(np.dot(images[i], texts[j])) * scale for j in range(n)] for i in range(n)]

    def one_direction(logit) -> float:
        total = 0.0
        for i in range(n):
            everything = sum(math.exp(logit(i, j)) for j in range(n))
            positives = sum(math.exp(logit(i, j)) for j in range(n) if groups[i] == groups[j])
            total += -math.log(positives / everything)
        return total / n

    return (one_direction(lambda i, j: sims[i][j]) + one_direction(lambda i, j: sims[j][i])) / 2


# Four items, captions 0 and 2 are the same text (group 5) with different images; item 3 shares group 5 as well
# but its caption embedding differs slightly (same caption string, another product in the batch).
GROUP_IMAGES = _normalise(np.array([[1.0, 0.2, 0.0], [0.1, 1.0, 0.3], [0.7, 0.1, 0.7], [0.2, 0.4, 1.0]]))
GROUP_TEXTS = _normalise(np.array([[0.9, 0.3, 0.2], [0.0, 1.0, 0.1], [0.9, 0.3, 0.2], [0.3, 0.2, 0.9]]))
GROUPS = [5, 1, 5, 5]


def test_grouped_loss_equals_hand_computation_with_duplicate_captions() -> None:
    scale = 3.0
    expected = _hand_grouped_clip(GROUP_IMAGES, GROUP_TEXTS, scale, GROUPS)
    got = _loss(GROUP_IMAGES, GROUP_TEXTS, math.log(scale), GROUPS)
    assert got == pytest.approx(expected, abs=1e-5)
    # the same by hand for one row, written out: image 0 against texts 0..3; positives are texts 0, 2 and 3
    row = [scale * float(np.dot(GROUP_IMAGES[0], GROUP_TEXTS[j])) for j in range(4)]
    row0 = -math.log((math.exp(row[0]) + math.exp(row[2]) + math.exp(row[3])) / sum(math.exp(v) for v in row))
    assert row0 < -row[0] + math.log(sum(math.exp(v) for v in row))  # more positives: a lower loss than plain InfoNCE
    # a formula that keeps only the own caption as positive and drops the other positives from the denominator
    # (SupCon-style "positive vs negatives only") gives a clearly different number on this batch
    def dropped(i: int, j: int, sims) -> float:
        negatives = sum(math.exp(sims[i][k]) for k in range(4) if GROUPS[k] != GROUPS[i])
        return -math.log(math.exp(sims[i][j]) / (math.exp(sims[i][j]) + negatives))

    s = [[scale * float(np.dot(GROUP_IMAGES[i], GROUP_TEXTS[j])) for j in range(4)] for i in range(4)]
    st = [list(col) for col in zip(*s)]
    alt = np.mean([dropped(i, i, s) for i in range(4)]) / 2 + np.mean([dropped(i, i, st) for i in range(4)]) / 2
    assert abs(alt - expected) > 0.05


def test_grouped_loss_hand_computation_at_the_clamped_scale() -> None:
    # exp(20) is clamped to exp(4.6052) = 100 before the hand formula applies
    expected = _hand_grouped_clip(GROUP_IMAGES, GROUP_TEXTS, math.exp(4.6052), [0, 1, 0, 2])
    assert _loss(GROUP_IMAGES, GROUP_TEXTS, 20.0, [0, 1, 0, 2]) == pytest.approx(expected, rel=1e-4)


def _hand_siglip(images: np.ndarray, texts: np.ndarray, log_scale: float, bias: float, groups=None) -> float:
    """Sum over every (image, text) pair of -log sigmoid(z * (t * s + b)), z = +1 for a match and -1 otherwise; / n."""
    n = len(images)
    t = math.exp(log_scale)
    total = 0.0
    for i in range(n):
        for j in range(n):
            match = (i == j) if groups is None else (groups[i] == groups[j])
            z = 1.0 if match else -1.0
            x = z * (t * float(np.dot(images[i], texts[j])) + bias)
            total += math.log(1.0 + math.exp(-x))
    return total / n


def _siglip(images, texts, log_scale, bias, groups=None) -> float:
    return SigLipLoss(init_bias=bias)(
        torch.tensor(images, dtype=torch.float32),
        torch.tensor(texts, dtype=torch.float32),
        torch.tensor(log_scale, dtype=torch.float32),
        None if groups is None else torch.tensor(groups),
    ).item()


@pytest.mark.parametrize("log_scale, bias", [(math.log(10.0), -10.0), (1.2, -1.5), (0.0, 0.7)])
def test_siglip_equals_hand_computation(log_scale: float, bias: float) -> None:
    assert _siglip(IMAGES, TEXTS, log_scale, bias) == pytest.approx(_hand_siglip(IMAGES, TEXTS, log_scale, bias), rel=1e-5)
    # one pair spelled out: image 0 / text 0 has similarity 0.8 and is a match
    if bias == -1.5:
        assert _hand_siglip(IMAGES[:1], TEXTS[:1], log_scale, bias) == pytest.approx(
            math.log(1 + math.exp(-(math.exp(1.2) * 0.8 - 1.5)))
        )


def test_siglip_groups_equal_hand_computation_with_duplicate_captions() -> None:
    got = _siglip(GROUP_IMAGES, GROUP_TEXTS, 2.0, -3.0, GROUPS)
    assert got == pytest.approx(_hand_siglip(GROUP_IMAGES, GROUP_TEXTS, 2.0, -3.0, GROUPS), rel=1e-5)
    assert abs(got - _hand_siglip(GROUP_IMAGES, GROUP_TEXTS, 2.0, -3.0)) > 1.0  # the groups matter here


def test_multi_field_loss_equals_hand_computation() -> None:
    # three fields over four products: colour is shared by products 0 and 2, material is missing for product 1
    rng = np.random.default_rng(3)
    images = _normalise(rng.normal(size=(4, 3)))
    fields = {name: _normalise(rng.normal(size=(4, 3))) for name in ("title", "colour", "material")}
    fields["colour"][2] = fields["colour"][0]
    groups = {"title": [0, 1, 2, 3], "colour": [0, 1, 0, 2], "material": [0, 1, 2, 3]}
    present = {"material": [True, False, True, True]}
    weights = {"title": 1.0, "colour": 0.5, "material": 2.0}
    scale = 2.5

    terms = {
        "title": _hand_grouped_clip(images, fields["title"], scale, groups["title"]),
        "colour": _hand_grouped_clip(images, fields["colour"], scale, groups["colour"]),
        "material": _hand_grouped_clip(images[[0, 2, 3]], fields["material"][[0, 2, 3]], scale, [0, 2, 3]),
    }
    expected = sum(weights[f] * terms[f] for f in weights) / sum(weights.values())

    got = MultiFieldLoss(weights)(
        torch.tensor(images, dtype=torch.float32),
        {f: torch.tensor(v, dtype=torch.float32) for f, v in fields.items()},
        torch.tensor(math.log(scale), dtype=torch.float32),
        {f: torch.tensor(g) for f, g in groups.items()},
        {f: torch.tensor(m) for f, m in present.items()},
    ).item()
    assert got == pytest.approx(expected, abs=1e-5)

    # a field present for fewer than two products is left out, weight and all
    only_one = {"material": [False, True, False, False]}
    got = MultiFieldLoss(weights)(
        torch.tensor(images, dtype=torch.float32),
        {f: torch.tensor(v, dtype=torch.float32) for f, v in fields.items()},
        torch.tensor(math.log(scale), dtype=torch.float32),
        {f: torch.tensor(g) for f, g in groups.items()},
        {f: torch.tensor(m) for f, m in only_one.items()},
    ).item()
    assert got == pytest.approx((terms["title"] + 0.5 * terms["colour"]) / 1.5, abs=1e-5)
