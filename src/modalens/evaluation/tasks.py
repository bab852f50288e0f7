"""Evaluation tasks: a model and a list of products in, a dict of metrics out.

Every task shares one call shape (``task(encoder, products, **options)``), so
training validation, ``modalens eval`` and the benchmarks all run the same code.

Each task has two faces:

* ``retrieval``, ``zero_shot``, ``category_retrieval``, ``image_retrieval``,
  ``knn``, ``linear_probe`` return a JSON-ready dict of metrics, each metric
  group with ``ci`` (95% bootstrap intervals) beside the values;
* the ``*_output`` variants return a :class:`TaskOutput`, which adds the
  bootstrap :class:`~.bootstrap.Estimate` of every headline metric (for paired
  comparisons between models) and a few example queries (for the report).
  They also take ``details=True`` for the plots' data (confusion matrix,
  per-class accuracy, recall curves).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..catalog.schema import Product
from ..embedding import CachedEncoder
from ..prompts import ZERO_SHOT_TEMPLATES, readable
from ..zeroshot import build_classifier
from .bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Estimate,
    classification_statistics,
    fingerprint,
    mean_of,
    median_of,
    paired_difference,
)
from .metrics import (
    average_precision_at_k,
    classification_metrics,
    confusion_matrix,
    first_relevant_ranks,
    knn_votes,
    label_ranks,
    per_class_accuracy,
    ranked_relevance,
    recall_curve,
    retrieval_metrics,
    top_k_hits,
)

#: Every task by its command-line name (``modalens eval --tasks``), in report order.
TASK_NAMES = ("retrieval", "zero-shot", "templates", "category-retrieval", "image-retrieval", "knn", "linear-probe")


@dataclass
class TaskOutput:
    """A task's metrics (JSON-ready), its bootstrappable estimates by metric path, and examples for the report."""

    metrics: dict[str, Any]
    estimates: dict[str, Estimate] = field(default_factory=dict)
    examples: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bootstrap:
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    level: float = DEFAULT_LEVEL

    def annotate(self, group: dict[str, Any], estimates: dict[str, Estimate]) -> None:
        """Add ``group["ci"] = {metric: [lo, hi]}`` (nothing when resamples is 0)."""
        if self.resamples > 0:
            group["ci"] = {name: est.interval(self.resamples, self.seed, self.level) for name, est in estimates.items()}


def _usable(encoder: CachedEncoder, products: Sequence[Product]) -> tuple[list[Product], np.ndarray]:
    """Products whose image could be embedded, with their image embeddings."""
    embeds, failures = encoder.image_embeddings(products)
    keep = [i for i in range(len(products)) if i not in failures]
    return [products[i] for i in keep], embeds[keep]


def _labelled(
    encoder: CachedEncoder, products: Sequence[Product], field_name: str
) -> tuple[list[Product], np.ndarray, list[str]]:
    """Usable products that have a value for ``field_name``, their image embeddings and those values."""
    products, embeds = _usable(encoder, products)
    keep = [i for i, p in enumerate(products) if p.get(field_name)]
    return [products[i] for i in keep], embeds[keep], [products[i].get(field_name) for i in keep]


def _item(product: Product, **extra: Any) -> dict[str, Any]:
    return {"id": product.id, "image": product.image, "title": product.title, **extra}


def _pick(candidates: Sequence[int], count: int, rng: np.random.Generator) -> list[int]:
    """Up to ``count`` of ``candidates``, chosen with a seeded generator, in their original order."""
    candidates = list(candidates)
    if len(candidates) <= count:
        return candidates
    return sorted(rng.choice(candidates, size=count, replace=False).tolist())


def _ranked_estimates(ranks: np.ndarray, ks: Sequence[int], ids: str) -> dict[str, Estimate]:
    n = len(ranks)
    out = {f"R@{k}": Estimate(float(np.mean(ranks <= k)), mean_of((ranks <= k).astype(float)), n, ids) for k in ks}
    out["MRR"] = Estimate(float(np.mean(1.0 / ranks)), mean_of(1.0 / ranks), n, ids)
    finite = ranks[np.isfinite(ranks)]
    out["median_rank"] = Estimate(float(np.median(finite)) if len(finite) else float("nan"), median_of(ranks), n, ids)
    return out


# ---------------------------------------------------------------- text <-> image retrieval


def retrieval_output(
    encoder: CachedEncoder,
    products: Sequence[Product],
    text_field: str = "title",
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    details: bool = False,
    examples: int = 0,
) -> TaskOutput:
    """Text→image and image→text Recall@1/5/10, MRR and median rank over the products' own texts.

    Products with the same text (the same title listed twice) are all relevant
    to that text, so a duplicate title is not counted as a miss.
    """
    products, image_embeds = _usable(encoder, products)
    texts = [p.get(text_field).strip() for p in products]
    keep = [i for i, t in enumerate(texts) if t]
    products, image_embeds, texts = [products[i] for i in keep], image_embeds[keep], [texts[i] for i in keep]
    if not products:
        raise ValueError(f"no product has both an image and a {text_field!r} to retrieve by")
    text_embeds = encoder.text_embeddings(texts)
    norm = np.array([" ".join(t.lower().split()) for t in texts])
    relevant = norm[:, None] == norm[None, :]
    scores = text_embeds @ image_embeds.T
    boot = Bootstrap(resamples, seed)
    ids = fingerprint([p.id for p in products])
    out = TaskOutput({"text_field": text_field})
    rng = np.random.default_rng(seed)
    for direction, s, r in (("text_to_image", scores, relevant), ("image_to_text", scores.T, relevant.T)):
        group = retrieval_metrics(s, r)
        ranks = first_relevant_ranks(s, r)
        estimates = _ranked_estimates(ranks, (1, 5, 10), ids)
        boot.annotate(group, estimates)
        if details:
            group["recall_curve"] = recall_curve(ranks, min(50, s.shape[1]))
        out.metrics[direction] = group
        out.estimates.update({f"{direction}/{name}": est for name, est in estimates.items()})
        if examples:
            good = _pick(np.flatnonzero(ranks == 1), examples, rng)
            bad = _pick(np.flatnonzero(ranks > 5), examples, rng)
            out.examples[direction] = [_retrieval_example(direction, q, s, r, ranks, products, texts) for q in good + bad]
    return out


def _retrieval_example(
    direction: str, q: int, scores: np.ndarray, relevant: np.ndarray, ranks: np.ndarray, products, texts
) -> dict:
    top = np.argsort(-scores[q], kind="stable")[:5]
    first = int(np.flatnonzero(relevant[q])[np.argmax(scores[q][relevant[q]])])
    if direction == "text_to_image":
        return {
            "query": texts[q],
            "rank": float(ranks[q]),
            "results": [_item(products[j], relevant=bool(relevant[q, j]), score=round(float(scores[q, j]), 3)) for j in top],
            "expected": _item(products[first]),
        }
    return {
        "query": _item(products[q]),
        "rank": float(ranks[q]),
        "results": [
            {"text": texts[j], "relevant": bool(relevant[q, j]), "score": round(float(scores[q, j]), 3)} for j in top[:3]
        ],
    }


def retrieval(
    encoder: CachedEncoder,
    products: Sequence[Product],
    text_field: str = "title",
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Text→image and image→text retrieval metrics (``text_to_image``/``image_to_text`` with R@1/5/10, MRR, ci)."""
    return retrieval_output(encoder, products, text_field, resamples=resamples, seed=seed).metrics


# ---------------------------------------------------------------- zero-shot classification


def zero_shot_output(
    encoder: CachedEncoder,
    products: Sequence[Product],
    field: str = "article_type",
    labels: Sequence[str] | None = None,
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    details: bool = False,
    examples: int = 0,
) -> TaskOutput:
    """Zero-shot classification of ``field``: with the full prompt ensemble and with its first template alone.

    Top-1/top-5 accuracy, weighted and macro F1 (with intervals); with
    ``details`` also per-class accuracy and the confusion matrix.
    """
    products, image_embeds, truth = _labelled(encoder, products, field)
    if not products:
        raise ValueError(f"no product has both an image and a {field!r} label")
    labels = sorted(set(truth)) if labels is None else list(dict.fromkeys(labels))
    boot = Bootstrap(resamples, seed)
    ids = fingerprint([p.id for p in products])
    out = TaskOutput({"field": field})
    position = {label: i for i, label in enumerate(labels)}
    truth_codes = np.array([position.get(t, -1) for t in truth])
    rng = np.random.default_rng(seed)
    for name, chosen in (("ensemble", templates), ("single_prompt", templates[:1])):
        classifier = build_classifier(encoder.model, labels, chosen, text_features=encoder.text_features)
        scores = classifier.scores(image_embeds)
        predicted = [classifier.labels[i] for i in scores.argmax(axis=1)]
        group = classification_metrics(truth, predicted)
        k = min(5, len(labels))
        ranks = np.full(len(truth), np.inf)
        known = truth_codes >= 0
        if known.any():
            ranks[known] = label_ranks(scores[known], truth_codes[known])
        top5 = (ranks <= k).astype(float)
        group["top5_accuracy"] = float(top5.mean())
        group["labels"] = len(labels)
        group["templates"] = len(chosen)
        estimates = {
            key: Estimate(group[key], stat, len(truth), ids) for key, stat in classification_statistics(truth, predicted).items()
        }
        estimates["top5_accuracy"] = Estimate(group["top5_accuracy"], mean_of(top5), len(truth), ids)
        boot.annotate(group, estimates)
        if details:
            group["per_class"] = per_class_accuracy(truth, predicted)
            shown = sorted(set(truth) | set(predicted), key=lambda c: (-truth.count(c), c))
            group["confusion"] = {"labels": shown, "matrix": confusion_matrix(truth, predicted, shown).tolist()}
        out.metrics[name] = group
        out.estimates.update({f"{name}/{key}": est for key, est in estimates.items()})
        if examples and name == "ensemble":
            correct = [i for i in range(len(truth)) if predicted[i] == truth[i]]
            wrong = [i for i in range(len(truth)) if predicted[i] != truth[i]]
            picked = _pick(correct, examples, rng) + _pick(wrong, examples, rng)
            tops = classifier.top_k(image_embeds[picked], k=3) if picked else []
            out.examples["ensemble"] = [
                _item(products[i], truth=truth[i], predicted=predicted[i], top=[[label, round(p, 3)] for label, p in top])
                for i, top in zip(picked, tops)
            ]
    if resamples > 0:  # does the prompt ensemble help? paired on the same images
        out.metrics["ensemble_minus_single"] = {
            key: paired_difference(out.estimates[f"single_prompt/{key}"], out.estimates[f"ensemble/{key}"], resamples, seed)
            for key in ("accuracy", "weighted_f1")
        }
    return out


def zero_shot(
    encoder: CachedEncoder,
    products: Sequence[Product],
    field: str = "article_type",
    labels: Sequence[str] | None = None,
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Zero-shot classification metrics: ``ensemble`` and ``single_prompt``, each with accuracy, top-5, F1s and ci."""
    return zero_shot_output(encoder, products, field, labels, templates, resamples=resamples, seed=seed).metrics


# ---------------------------------------------------------------- category / attribute -> product retrieval


def category_retrieval_output(
    encoder: CachedEncoder,
    products: Sequence[Product],
    fields: Sequence[str] = ("article_type",),
    template: str = "a photo of {label}",
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    details: bool = False,
    examples: int = 0,
) -> TaskOutput:
    """Marqo-style category→product retrieval: one text query per value of each field, every product with that value relevant.

    P@1, P@10 and MRR averaged over the queries (one query per distinct value).
    """
    if isinstance(fields, str):
        fields = [fields]
    usable, embeds = _usable(encoder, products)
    boot = Bootstrap(resamples, seed)
    out = TaskOutput({"template": template})
    for field_name in fields:
        keep = [i for i, p in enumerate(usable) if p.get(field_name)]
        if not keep:
            raise ValueError(f"no product has both an image and a {field_name!r} value")
        chosen, gallery = [usable[i] for i in keep], embeds[keep]
        values = np.array([p.get(field_name) for p in chosen])
        labels = sorted(set(values.tolist()))
        queries = [template.format(label=readable(label)) for label in labels]
        scores = encoder.text_embeddings(queries) @ gallery.T
        relevant = np.array(labels)[:, None] == values[None, :]
        k = min(10, len(chosen))
        _, ranked = ranked_relevance(scores, relevant, k)
        ranks = first_relevant_ranks(scores, relevant)
        p1, p10, rr = ranked[:, 0].astype(float), ranked[:, :k].mean(axis=1), 1.0 / ranks
        ids = fingerprint(labels) + fingerprint([p.id for p in chosen])
        estimates = {
            "P@1": Estimate(float(p1.mean()), mean_of(p1), len(labels), ids),
            "P@10": Estimate(float(p10.mean()), mean_of(p10), len(labels), ids),
            "MRR": Estimate(float(rr.mean()), mean_of(rr), len(labels), ids),
        }
        group: dict[str, Any] = {name: est.value for name, est in estimates.items()}
        ceiling = float(np.mean(np.minimum(k, relevant.sum(axis=1)) / k))  # P@10 a perfect model would get
        group.update(
            {"P@10_ceiling": ceiling}, queries=len(labels), gallery=len(chosen), mean_relevant=float(relevant.sum(axis=1).mean())
        )
        boot.annotate(group, estimates)
        if details:
            group["per_query"] = {
                label: {"P@10": float(p10[i]), "P@1": float(p1[i]), "rank": float(ranks[i]), "relevant": int(relevant[i].sum())}
                for i, label in enumerate(labels)
            }
        out.metrics[field_name] = group
        out.estimates.update({f"{field_name}/{name}": est for name, est in estimates.items()})
        if examples:
            order = sorted(range(len(labels)), key=lambda i: (-p10[i], -relevant[i].sum(), labels[i]))
            picked = order[:examples] + [i for i in order[::-1][:examples] if i not in order[:examples]][::-1]
            out.examples[field_name] = []
            for i in picked:
                top = np.argsort(-scores[i], kind="stable")[:8]
                out.examples[field_name].append(
                    {
                        "query": queries[i],
                        "label": labels[i],
                        "P@10": float(p10[i]),
                        "relevant": int(relevant[i].sum()),
                        "results": [_item(chosen[j], relevant=bool(relevant[i, j]), label=str(values[j])) for j in top],
                    }
                )
    return out


def category_retrieval(
    encoder: CachedEncoder, products: Sequence[Product], fields: Sequence[str] = ("article_type",), **options
) -> dict[str, Any]:
    """Category→product retrieval metrics by field (P@1, P@10, MRR, ci)."""
    return category_retrieval_output(encoder, products, fields, **options).metrics


# ---------------------------------------------------------------- image -> image retrieval


def image_retrieval_output(
    encoder: CachedEncoder,
    products: Sequence[Product],
    field: str = "article_type",
    k: int = 10,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    details: bool = False,
    examples: int = 0,
    block: int = 1024,
) -> TaskOutput:
    """Image→image retrieval with "same ``field``" relevance: mAP@k and R@1, each query left out of its own gallery.

    Queries whose class has no other product cannot be answered and are left
    out (counted as ``skipped_queries``).
    """
    products, embeds, values = _labelled(encoder, products, field)
    n = len(products)
    if n < 2:
        raise ValueError(f"image retrieval needs at least 2 products with an image and a {field!r} value")
    k = min(k, n - 1)
    values_arr = np.array(values)
    n_relevant = _counts_minus_self(values_arr)
    ap = np.full(n, np.nan)
    hit1 = np.zeros(n)
    tops = np.zeros((n, min(5, k)), dtype=np.int64)
    for start in range(0, n, block):
        stop = min(n, start + block)
        scores = (embeds[start:stop] @ embeds.T).astype(np.float64)
        rows = np.arange(stop - start)
        scores[rows, rows + start] = -np.inf
        relevant = values_arr[start:stop, None] == values_arr[None, :]
        relevant[rows, rows + start] = False
        order, ranked = ranked_relevance(scores, relevant, k)
        ap[start:stop] = average_precision_at_k(ranked, n_relevant[start:stop], k)
        hit1[start:stop] = ranked[:, 0]
        tops[start:stop] = order[:, : tops.shape[1]]
    answerable = n_relevant > 0
    queries = np.flatnonzero(answerable)
    if not len(queries):
        raise ValueError(f"no {field!r} value is shared by two products: nothing to retrieve")
    ids = fingerprint([products[i].id for i in queries])
    estimates = {
        f"mAP@{k}": Estimate(float(np.mean(ap[queries])), mean_of(ap[queries]), len(queries), ids),
        "R@1": Estimate(float(np.mean(hit1[queries])), mean_of(hit1[queries]), len(queries), ids),
    }
    group: dict[str, Any] = {name: est.value for name, est in estimates.items()}
    group.update(field=field, k=k, queries=len(queries), gallery=n - 1, skipped_queries=int(n - len(queries)))
    Bootstrap(resamples, seed).annotate(group, estimates)
    if details:
        per_class = {}
        for label in sorted(set(values_arr[queries].tolist()), key=lambda c: (-values.count(c), c)):
            mask = answerable & (values_arr == label)
            per_class[label] = {f"AP@{k}": float(ap[mask].mean()), "n": int(mask.sum())}
        group["per_class"] = per_class
    out = TaskOutput(group, {name: est for name, est in estimates.items()})
    if examples:
        rng = np.random.default_rng(seed)
        good = _pick([i for i in queries if ap[i] >= 0.99], examples, rng)
        bad = _pick([i for i in queries if hit1[i] == 0], examples, rng)
        out.examples["queries"] = [
            {
                "query": _item(products[q], label=values[q]),
                f"AP@{k}": float(ap[q]),
                "results": [_item(products[j], label=values[j], relevant=values[j] == values[q]) for j in tops[q]],
            }
            for q in good + bad
        ]
    return out


def _counts_minus_self(values: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return counts[inverse] - 1


def image_retrieval(
    encoder: CachedEncoder, products: Sequence[Product], field: str = "article_type", k: int = 10, **options
) -> dict[str, Any]:
    """Image→image retrieval metrics (mAP@k, R@1, ci) with same-``field`` relevance."""
    return image_retrieval_output(encoder, products, field, k, **options).metrics


# ---------------------------------------------------------------- k-NN and linear probe on frozen image embeddings


def _classification_output(
    truth: list[str],
    predicted: list[str],
    test: list[Product],
    extra: dict[str, Any],
    boot: Bootstrap,
    details: bool,
    examples: int,
    seed: int,
) -> TaskOutput:
    group: dict[str, Any] = classification_metrics(truth, predicted)
    group.update(extra)
    ids = fingerprint([p.id for p in test])
    estimates = {
        key: Estimate(group[key], stat, len(truth), ids) for key, stat in classification_statistics(truth, predicted).items()
    }
    boot.annotate(group, estimates)
    if details:
        group["per_class"] = per_class_accuracy(truth, predicted)
    out = TaskOutput(group, estimates)
    if examples:
        rng = np.random.default_rng(seed)
        right = _pick([i for i in range(len(truth)) if truth[i] == predicted[i]], examples // 2, rng)
        wrong = _pick([i for i in range(len(truth)) if truth[i] != predicted[i]], examples, rng)
        out.examples["predictions"] = [_item(test[i], truth=truth[i], predicted=predicted[i]) for i in right + wrong]
    return out


def hashed_split(products: Sequence[Product], test_share: float = 0.5) -> tuple[list[Product], list[Product]]:
    """(train, test) decided by each product id's hash: the same split every time, whatever the order."""
    train, test = [], []
    for p in products:
        h = int(hashlib.sha1(p.id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (test if h < test_share else train).append(p)
    return train, test


def knn_output(
    encoder: CachedEncoder,
    products: Sequence[Product],
    field: str = "article_type",
    k: int = 21,
    reference: Sequence[Product] | None = None,
    temperature: float | None = 0.07,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    details: bool = False,
    examples: int = 0,
) -> TaskOutput:
    """k-NN classification of ``field`` on frozen image embeddings.

    With a ``reference`` set (the train split), train→test; without, leave-one-out
    over ``products`` (each product classified by all the others).
    """
    test, test_embeds, truth = _labelled(encoder, products, field)
    if reference is None:
        ref, ref_embeds, ref_labels = test, test_embeds, truth
        mode = "leave-one-out"
    else:
        ref, ref_embeds, ref_labels = _labelled(encoder, reference, field)
        mode = "train→test"
    if not test or len(ref) < (2 if reference is None else 1):
        raise ValueError(f"k-NN needs products with an image and a {field!r} label")
    classes = sorted(set(ref_labels))
    position = {c: i for i, c in enumerate(classes)}
    votes = knn_votes(
        test_embeds,
        ref_embeds,
        np.array([position[c] for c in ref_labels]),
        k,
        exclude_self=reference is None,
        temperature=temperature,
    )
    predicted = [classes[c] for c in votes.argmax(axis=1)]
    extra = {"k": min(k, len(ref) - (1 if reference is None else 0)), "mode": mode, "reference": len(ref), "field": field,
             "weighting": "uniform" if temperature is None else f"exp(cos/{temperature})"}  # fmt: skip
    boot = Bootstrap(resamples, seed)
    out = _classification_output(truth, predicted, test, extra, boot, details, examples, seed)
    hits = top_k_hits(votes, np.array([position.get(t, -1) for t in truth]), 5)
    top5 = Estimate(float(hits.mean()), mean_of(hits), len(hits), fingerprint([p.id for p in test]))
    out.metrics["top5_accuracy"] = top5.value
    out.estimates["top5_accuracy"] = top5
    if "ci" in out.metrics:
        out.metrics["ci"]["top5_accuracy"] = top5.interval(boot.resamples, boot.seed, boot.level)
    return out


def knn(
    encoder: CachedEncoder, products: Sequence[Product], field: str = "article_type", k: int = 21, **options
) -> dict[str, Any]:
    """k-NN classification metrics (accuracy, weighted/macro F1, ci)."""
    return knn_output(encoder, products, field, k, **options).metrics


def linear_probe_output(
    encoder: CachedEncoder,
    products: Sequence[Product],
    field: str = "article_type",
    train: Sequence[Product] | None = None,
    C: float = 1.0,
    max_iter: int = 2000,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    details: bool = False,
    examples: int = 0,
) -> TaskOutput:
    """Linear probe: scikit-learn logistic regression on standardised frozen image embeddings, train → ``products``.

    Without ``train``, ``products`` is split in two by id hash (:func:`hashed_split`).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    split = "given"
    if train is None:
        train, products = hashed_split(products)
        split = "id-hash 50/50"
    test, test_embeds, truth = _labelled(encoder, products, field)
    ref, ref_embeds, ref_labels = _labelled(encoder, train, field)
    if not test or not ref:
        raise ValueError(f"the linear probe needs train and test products with an image and a {field!r} label")
    if len(set(ref_labels)) < 2:
        raise ValueError(f"the linear probe needs at least 2 {field!r} classes in its train set")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    with warnings.catch_warnings():  # "many classes for few samples" on tiny catalogues is expected, not news
        warnings.simplefilter("ignore", UserWarning)
        probe.fit(ref_embeds, ref_labels)
    predicted = [str(p) for p in probe.predict(test_embeds)]
    extra = {"train": len(ref), "split": split, "C": C, "field": field, "train_classes": len(set(ref_labels))}
    return _classification_output(truth, predicted, test, extra, Bootstrap(resamples, seed), details, examples, seed)


def linear_probe(
    encoder: CachedEncoder, products: Sequence[Product], field: str = "article_type", train=None, **options
) -> dict[str, Any]:
    """Linear-probe classification metrics (accuracy, weighted/macro F1, ci)."""
    return linear_probe_output(encoder, products, field, train, **options).metrics
