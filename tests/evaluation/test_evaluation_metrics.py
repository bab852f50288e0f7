"""Retrieval and classification metrics on tiny hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modalens.evaluation.metrics import (
    classification_metrics,
    first_relevant_ranks,
    mean_reciprocal_rank,
    recall_at_k,
    retrieval_metrics,
)

T, F = True, False


def test_ranks_simple_case() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
    relevant = np.array([[F, F, T], [F, T, F]])
    np.testing.assert_array_equal(first_relevant_ranks(scores, relevant), [2.0, 1.0])


def test_ties_are_pessimistic() -> None:
    # A constant scorer: the relevant item ranks below every tied irrelevant one.
    scores = np.array([[0.5, 0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(first_relevant_ranks(scores, np.array([[F, T, F, F]])), [4.0])
    np.testing.assert_array_equal(first_relevant_ranks(scores, np.array([[T, F, F, F]])), [4.0])
    # One irrelevant item strictly above, one tied: rank 3.
    scores = np.array([[0.9, 0.7, 0.7, 0.1]])
    np.testing.assert_array_equal(first_relevant_ranks(scores, np.array([[F, T, F, F]])), [3.0])


def test_several_relevant_items_the_best_one_counts() -> None:
    scores = np.array([[0.1, 0.9, 0.8, 0.6, 0.7]])
    relevant = np.array([[T, F, F, T, T]])  # best relevant is 0.7, below 0.9 and 0.8
    np.testing.assert_array_equal(first_relevant_ranks(scores, relevant), [3.0])
    # Tied relevant items do not push each other down.
    scores = np.array([[0.7, 0.7, 0.7, 0.2]])
    relevant = np.array([[T, T, F, F]])
    np.testing.assert_array_equal(first_relevant_ranks(scores, relevant), [2.0])


def test_query_without_relevant_item_has_infinite_rank_and_is_a_miss() -> None:
    scores = np.array([[0.9, 0.1], [0.3, 0.4]])
    relevant = np.array([[T, F], [F, F]])
    ranks = first_relevant_ranks(scores, relevant)
    assert ranks[0] == 1.0 and math.isinf(ranks[1])
    metrics = retrieval_metrics(scores, relevant, ks=(1, 2))
    assert metrics["R@1"] == 0.5 and metrics["R@2"] == 0.5
    assert metrics["MRR"] == pytest.approx(0.5)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        first_relevant_ranks(np.zeros((2, 3)), np.zeros((2, 2), dtype=bool))


def test_recall_at_k_by_hand() -> None:
    ranks = np.array([1.0, 3.0, 6.0, np.inf])
    assert recall_at_k(ranks, ks=(1, 5, 10)) == {"R@1": 0.25, "R@5": 0.5, "R@10": 0.75}
    assert math.isnan(recall_at_k(np.array([]), ks=(1,))["R@1"])


def test_mrr_by_hand() -> None:
    ranks = np.array([1.0, 2.0, np.inf, 4.0])
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)


def test_retrieval_metrics_full_case() -> None:
    # 4 queries x 5 gallery items.
    scores = np.array(
        [
            [0.9, 0.2, 0.3, 0.1, 0.0],  # relevant 0 -> rank 1
            [0.5, 0.6, 0.7, 0.8, 0.4],  # relevant 0 -> items 1,2,3 above -> rank 4
            [0.3, 0.3, 0.3, 0.3, 0.3],  # relevant 2 (tie with 4 irrelevant) -> rank 5
            [0.1, 0.9, 0.2, 0.8, 0.3],  # relevant 3 and 4 -> best is 0.8 -> rank 2
        ]
    )
    relevant = np.zeros_like(scores, dtype=bool)
    relevant[0, 0] = relevant[1, 0] = relevant[2, 2] = relevant[3, 3] = relevant[3, 4] = True
    np.testing.assert_array_equal(first_relevant_ranks(scores, relevant), [1, 4, 5, 2])
    m = retrieval_metrics(scores, relevant, ks=(1, 2, 5))
    assert m["R@1"] == 0.25
    assert m["R@2"] == 0.5
    assert m["R@5"] == 1.0
    assert m["MRR"] == pytest.approx((1 + 1 / 4 + 1 / 5 + 1 / 2) / 4)
    assert m["median_rank"] == 3.0  # median of 1, 2, 4, 5
    assert m["queries"] == 4 and m["gallery"] == 5


def test_median_rank_is_nan_when_no_query_has_a_relevant_item() -> None:
    m = retrieval_metrics(np.array([[0.1, 0.2]]), np.array([[F, F]]))
    assert math.isnan(m["median_rank"])
    assert m["R@1"] == 0.0 and m["MRR"] == 0.0


def test_classification_metrics_by_hand() -> None:
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    # a: P=2/2, R=2/3 -> F1=0.8 (support 3)
    # b: P=1/2, R=1/2 -> F1=0.5 (support 2)
    # c: P=1/2, R=1/1 -> F1=2/3 (support 1)
    f1 = {"a": 0.8, "b": 0.5, "c": 2 / 3}
    support = {"a": 3, "b": 2, "c": 1}
    weighted = sum(f1[k] * support[k] for k in f1) / 6
    macro = sum(f1.values()) / 3
    m = classification_metrics(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["weighted_f1"] == pytest.approx(weighted)  # ≈ 0.6778
    assert m["weighted_f1"] == pytest.approx(0.677777, abs=1e-5)
    assert m["macro_f1"] == pytest.approx(macro)
    assert m["n"] == 6 and m["classes"] == 3


def test_classification_metrics_with_a_predicted_class_never_true() -> None:
    # 'z' is predicted but never true: weight 0 in weighted F1 (support 0).
    m = classification_metrics(["a", "a"], ["a", "z"])
    assert m["accuracy"] == 0.5
    assert m["weighted_f1"] == pytest.approx(2 / 3)  # a: P=1, R=1/2
    assert m["classes"] == 1


def test_classification_metrics_perfect_and_integer_labels() -> None:
    m = classification_metrics([0, 1, 2, 1], [0, 1, 2, 1])
    assert m["accuracy"] == 1.0 and m["weighted_f1"] == 1.0 and m["macro_f1"] == 1.0


def test_classification_metrics_empty_input_raises() -> None:
    with pytest.raises(ValueError):
        classification_metrics([], [])
