"""Retrieval and classification metrics on plain arrays (no model in sight, so they test on tiny hand cases)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import f1_score


def first_relevant_ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of the best-ranked relevant item per query (``inf`` when a query has none).

    Ties are counted pessimistically: a relevant item tied with irrelevant ones
    ranks below all of them, so a constant scorer cannot look good.
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape:
        raise ValueError(f"scores {scores.shape} and relevance {relevant.shape} differ in shape")
    best = np.where(relevant, scores, -np.inf).max(axis=1, keepdims=True)
    irrelevant_at_or_above = ((scores >= best) & ~relevant).sum(axis=1)
    ranks = irrelevant_at_or_above + 1.0
    ranks[~relevant.any(axis=1)] = np.inf
    return ranks


def recall_at_k(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Share of queries with a relevant item in the top k (queries with none count as misses)."""
    return {f"R@{k}": float(np.mean(ranks <= k)) if len(ranks) else float("nan") for k in ks}


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / ranks)) if len(ranks) else float("nan")


def retrieval_metrics(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    ranks = first_relevant_ranks(scores, relevant)
    out = recall_at_k(ranks, ks)
    out["MRR"] = mean_reciprocal_rank(ranks)
    finite = ranks[np.isfinite(ranks)]
    out["median_rank"] = float(np.median(finite)) if len(finite) else float("nan")
    out["queries"] = int(scores.shape[0])
    out["gallery"] = int(scores.shape[1])
    return out


def classification_metrics(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """Top-1 accuracy and weighted macro-F1 (the metric FashionCLIP's zero-shot table reports)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("no examples to score")
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "n": int(len(y_true)),
        "classes": int(len(set(y_true.tolist()))),
    }


# ---------------------------------------------------------------- ranked lists (top-k with pessimistic ties)


def ranked_relevance(scores: np.ndarray, relevant: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` gallery items per query (best first) and whether each is relevant.

    Ties are broken pessimistically, as in :func:`first_relevant_ranks`: among
    equal scores irrelevant items come first. Items scored ``-inf`` (e.g. the
    query itself, excluded from its gallery) rank last. Exact and memory-light:
    only the items scoring at least the k-th best score are sorted.
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape:
        raise ValueError(f"scores {scores.shape} and relevance {relevant.shape} differ in shape")
    n, g = scores.shape
    if not 1 <= k <= g:
        raise ValueError(f"k={k} must be between 1 and the gallery size {g}")
    order = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        s, r = scores[start : start + block], relevant[start : start + block]
        kth = -np.partition(-s, k - 1, axis=1)[:, k - 1 : k]  # the k-th best score per row
        width = int((s >= kth).sum(axis=1).max())  # every row's candidates fit in the top `width`
        cand = np.argpartition(-s, width - 1, axis=1)[:, :width] if width < g else np.broadcast_to(np.arange(g), s.shape)
        cs, cr = np.take_along_axis(s, cand, 1), np.take_along_axis(r, cand, 1)
        # lexsort: last key is primary -> score descending, then irrelevant first, then index for determinism
        inner = np.lexsort((cand, cr, -cs), axis=1)[:, :k]
        order[start : start + block] = np.take_along_axis(cand, inner, 1)
    return order, np.take_along_axis(relevant, order, 1)


def precision_at_k(ranked: np.ndarray, k: int) -> np.ndarray:
    """Per query: the share of relevant items among the first ``k`` of a ranked relevance matrix."""
    ranked = np.asarray(ranked, dtype=bool)
    if ranked.shape[1] < k:
        raise ValueError(f"need at least {k} ranked items per query, got {ranked.shape[1]}")
    return ranked[:, :k].mean(axis=1)


def average_precision_at_k(ranked: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query AP@k = (1 / min(k, R)) * sum over i <= k of P@i * rel(i); ``nan`` where R = 0.

    ``ranked`` holds the relevance of the first ``k`` (or more) items of each
    ranking; ``n_relevant`` (R) counts each query's relevant items in the whole
    gallery, so a query whose relevant items fall outside the top k is penalised.
    """
    ranked = np.asarray(ranked, dtype=bool)[:, :k]
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    hits = np.cumsum(ranked, axis=1)
    precision = hits / np.arange(1, ranked.shape[1] + 1)
    summed = (precision * ranked).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = summed / np.minimum(k, n_relevant)
    ap[n_relevant == 0] = np.nan
    return ap


def recall_curve(ranks: np.ndarray, max_k: int = 50) -> list[float]:
    """Recall@k for k = 1..max_k (a plot's worth of points)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not len(ranks):
        return []
    return [float(np.mean(ranks <= k)) for k in range(1, max_k + 1)]


# ---------------------------------------------------------------- classification details


def label_ranks(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based rank of each example's true label among the label scores (pessimistic ties)."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    relevant = np.zeros(scores.shape, dtype=bool)
    relevant[np.arange(len(truth)), truth] = True
    return first_relevant_ranks(scores, relevant)


def confusion_matrix(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> np.ndarray:
    """counts[i, j] = examples of true ``labels[i]`` predicted as ``labels[j]`` (labels outside the list are ignored)."""
    position = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if t in position and p in position:
            counts[position[t], position[p]] += 1
    return counts


def per_class_accuracy(y_true: Sequence, y_pred: Sequence) -> dict[str, dict[str, float]]:
    """Per true class: accuracy (recall of that class) and its number of examples, largest class first."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    out = {}
    for label in sorted(set(y_true.tolist()), key=lambda c: (-int(np.sum(y_true == c)), str(c))):
        mask = y_true == label
        out[str(label)] = {"accuracy": float(np.mean(y_pred[mask] == label)), "n": int(mask.sum())}
    return out


def knn_votes(
    queries: np.ndarray,
    reference: np.ndarray,
    reference_labels: np.ndarray,
    k: int = 21,
    *,
    exclude_self: bool = False,
    temperature: float | None = 0.07,
    block: int = 1024,
) -> np.ndarray:
    """(queries, classes) k-NN vote totals by cosine similarity: the ranking behind top-1 and top-5 k-NN.

    Votes are weighted by ``exp(similarity / temperature)`` (the DINO k-NN
    protocol; MCIP evaluates with k = 21, T = 0.1); ``temperature=None`` gives
    a plain majority vote. With ``exclude_self`` the queries are the reference
    set itself (leave-one-out): each query never votes for itself.
    """
    queries = np.asarray(queries, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    reference_labels = np.asarray(reference_labels, dtype=np.int64)
    if exclude_self and len(queries) != len(reference):
        raise ValueError("leave-one-out needs the queries to be the reference set")
    available = len(reference) - (1 if exclude_self else 0)
    k = min(k, available)
    if k < 1:
        raise ValueError("the k-NN reference set is empty")
    n_classes = int(reference_labels.max()) + 1
    votes = np.zeros((len(queries), n_classes))
    for start in range(0, len(queries), block):
        sims = queries[start : start + block] @ reference.T
        if exclude_self:
            rows = np.arange(sims.shape[0])
            sims[rows, rows + start] = -np.inf
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        near_sims = np.take_along_axis(sims, nearest, 1).astype(np.float64)
        weights = np.ones_like(near_sims) if temperature is None else np.exp((near_sims - 1.0) / temperature)
        rows = np.repeat(np.arange(start, start + sims.shape[0]), k)
        np.add.at(votes, (rows, reference_labels[nearest].ravel()), weights.ravel())
    return votes


def knn_predict(queries: np.ndarray, reference: np.ndarray, reference_labels: np.ndarray, k: int = 21, **options) -> np.ndarray:
    """k-NN labels (integer codes): the class with most votes (:func:`knn_votes`); a tie goes to the lowest code."""
    return knn_votes(queries, reference, reference_labels, k, **options).argmax(axis=1)


def top_k_hits(votes: np.ndarray, truth: np.ndarray, k: int = 5) -> np.ndarray:
    """Per query, 1.0 when the true class (code; -1: a class the votes never saw) is among the ``k`` best-voted."""
    truth = np.asarray(truth)
    true_votes = np.where(truth >= 0, votes[np.arange(len(votes)), truth.clip(min=0)], -np.inf)
    # pessimistic ties: a class with as many votes as the true one counts as ranked above it
    above = (votes >= true_votes[:, None]).sum(axis=1) - 1
    return ((above < k) & (truth >= 0) & (true_votes > 0)).astype(np.float64)
