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


# ---------------------------------------------------------------- ranked lists, AP@K, P@K


from modalens.evaluation.metrics import (
    average_precision_at_k,
    confusion_matrix,
    knn_predict,
    knn_votes,
    top_k_hits,
    label_ranks,
    per_class_accuracy,
    precision_at_k,
    ranked_relevance,
    recall_curve,
)


def test_ranked_relevance_breaks_ties_against_the_model() -> None:
    scores = np.array([[0.9, 0.5, 0.5, 0.1], [0.2, 0.2, 0.2, 0.2]])
    relevant = np.array([[F, T, F, F], [T, F, T, F]])
    order, ranked = ranked_relevance(scores, relevant, k=3)
    # row 0: 0.9 first, then the tied pair with the irrelevant item (2) before the relevant one (1)
    np.testing.assert_array_equal(order[0], [0, 2, 1])
    np.testing.assert_array_equal(ranked[0], [F, F, T])
    # row 1: all tied: both irrelevant items come first
    np.testing.assert_array_equal(ranked[1], [F, F, T])
    # agrees with the first-relevant ranks
    np.testing.assert_array_equal(first_relevant_ranks(scores, relevant), [3.0, 3.0])


def test_ranked_relevance_excluded_items_rank_last_and_k_is_checked() -> None:
    scores = np.array([[-np.inf, 0.3, 0.8]])
    order, ranked = ranked_relevance(scores, np.array([[F, T, F]]), k=2)
    np.testing.assert_array_equal(order[0], [2, 1])
    np.testing.assert_array_equal(ranked[0], [F, T])
    with pytest.raises(ValueError, match="k="):
        ranked_relevance(scores, np.array([[F, T, F]]), k=4)


def test_ranked_relevance_matches_a_full_sort_on_random_data() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((50, 40)), 1)  # many ties
    relevant = rng.random((50, 40)) < 0.2
    order, ranked = ranked_relevance(scores, relevant, k=7, block=16)
    for q in range(50):
        full = np.lexsort((np.arange(40), relevant[q], -scores[q]))[:7]
        np.testing.assert_array_equal(order[q], full)
        np.testing.assert_array_equal(ranked[q], relevant[q, full])


def test_precision_at_k_by_hand() -> None:
    ranked = np.array([[T, F, T, F], [F, F, F, F], [T, T, T, T]])
    np.testing.assert_allclose(precision_at_k(ranked, 1), [1, 0, 1])
    np.testing.assert_allclose(precision_at_k(ranked, 2), [0.5, 0, 1])
    np.testing.assert_allclose(precision_at_k(ranked, 4), [0.5, 0, 1])
    with pytest.raises(ValueError):
        precision_at_k(ranked, 5)


def test_average_precision_at_k_by_hand() -> None:
    ranked = np.array(
        [
            [T, F, T, F, F],  # R=3: (P@1 + P@3) / min(5, 3) = (1 + 2/3) / 3 = 5/9
            [F, T, F, F, F],  # R=1: P@2 / 1 = 1/2
            [T, T, T, T, T],  # R=10: 5 / min(5, 10) = 1
            [F, F, F, F, F],  # R=2, none found: 0
            [F, F, F, F, F],  # R=0: undefined
            [F, F, F, F, T],  # R=4: P@5 = 1/5, / 4 = 0.05
        ]
    )
    n_relevant = np.array([3, 1, 10, 2, 0, 4])
    ap = average_precision_at_k(ranked, n_relevant, k=5)
    np.testing.assert_allclose(ap[:4], [5 / 9, 0.5, 1.0, 0.0])
    assert math.isnan(ap[4])
    assert ap[5] == pytest.approx(0.05)
    # a smaller k only looks at the first k items: AP@2 of row 0 = P@1 / min(2, 3) = 1/2
    assert average_precision_at_k(ranked, n_relevant, k=2)[0] == pytest.approx(0.5)


def test_recall_curve() -> None:
    assert recall_curve(np.array([1.0, 3.0, np.inf, 2.0]), 3) == [0.25, 0.5, 0.75]
    assert recall_curve(np.array([]), 3) == []


def test_label_ranks_give_top_k_accuracy_with_pessimistic_ties() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.3, 0.3], [0.7, 0.2, 0.1]])
    ranks = label_ranks(scores, np.array([2, 0, 0]))
    np.testing.assert_array_equal(ranks, [2, 3, 1])
    assert np.mean(ranks <= 1) == pytest.approx(1 / 3) and np.mean(ranks <= 2) == pytest.approx(2 / 3)


def test_confusion_matrix_and_per_class_accuracy_by_hand() -> None:
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, ["a", "b", "c"]), [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    per_class = per_class_accuracy(y_true, y_pred)
    assert list(per_class) == ["a", "b", "c"]  # largest class first
    assert per_class["a"] == {"accuracy": pytest.approx(2 / 3), "n": 3}
    assert per_class["b"]["accuracy"] == 0.5 and per_class["c"]["accuracy"] == 1.0


def test_knn_by_hand_leave_one_out_and_weighting() -> None:
    angles = np.array([0.0, 0.08, 0.2, 1.5, 1.6, 3.0])
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.array([0, 0, 1, 1, 1, 0])
    # k=1 leave-one-out: each point's nearest other point
    np.testing.assert_array_equal(knn_predict(emb, emb, labels, k=1, exclude_self=True), [0, 0, 0, 1, 1, 1])
    # without leaving itself out, each point is its own nearest neighbour
    np.testing.assert_array_equal(knn_predict(emb, emb, labels, k=1), labels)
    # k=3 majority vote for a query at angle 0.15: neighbours 0.2 (1), 0.08 (0), 0.0 (0) -> 0
    q = np.array([[np.cos(0.15), np.sin(0.15)]])
    assert knn_predict(q, emb, labels, k=3, temperature=None)[0] == 0
    # k=5 uniform: 0.2, 0.08, 0.0, 1.5, 1.6 -> labels 1,0,0,1,1 -> 1; weighted by exp(cos/0.07) -> 0
    assert knn_predict(q, emb, labels, k=5, temperature=None)[0] == 1
    assert knn_predict(q, emb, labels, k=5, temperature=0.07)[0] == 0
    with pytest.raises(ValueError, match="leave-one-out"):
        knn_predict(q, emb, labels, exclude_self=True)


def test_knn_top_k_hits_rank_the_true_class_among_the_votes() -> None:
    angles = np.array([0.0, 0.1, 0.2, 1.0, 2.0])
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.array([0, 0, 1, 2, 3])
    q = np.array([[1.0, 0.0]])
    votes = knn_votes(q, emb, labels, k=4, temperature=None)  # nearest four: 0, 0, 1, 2
    np.testing.assert_array_equal(votes, [[2, 1, 1, 0]])
    assert top_k_hits(votes, np.array([1]), k=1)[0] == 0 and top_k_hits(votes, np.array([0]), k=1)[0] == 1
    # class 2 ties class 1 (one vote each): pessimistic, so it is third, in the top 3 but not the top 2
    assert top_k_hits(votes, np.array([2]), k=2)[0] == 0 and top_k_hits(votes, np.array([2]), k=3)[0] == 1
    # a class no neighbour voted for, or one the reference never saw (-1), is never a hit
    assert top_k_hits(votes, np.array([3]), k=4)[0] == 0 and top_k_hits(votes, np.array([-1]), k=4)[0] == 0
