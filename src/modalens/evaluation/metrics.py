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
