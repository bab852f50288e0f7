"""Decisions flow back: reviewed pairs become training labels and re-calibrate the thresholds."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..catalog.schema import Product
from .evaluate import Scenario, calibrate, calibration_scenarios, guarantee
from .features import OfferFeaturizer
from .offer_model import OfferModel
from .pipeline import Matcher
from .review import ReviewQueue
from .train import TrainConfig, merge, reviewed_data, train_offer_model, training_data

log = logging.getLogger(__name__)


def reviewed_scores(matcher: Matcher, labelled) -> tuple[np.ndarray, np.ndarray]:
    """Scores of reviewed pairs under ``matcher`` and their labels."""
    if not labelled:
        return np.zeros(0), np.zeros(0, bool)
    lefts = [l for l, _, _ in labelled]
    rights = [r for _, r, _ in labelled]
    a, _ = matcher.embed(lefts)
    b, _ = matcher.embed(rights)
    return np.einsum("ij,ij->i", a, b).astype(np.float64), np.array([y for _, _, y in labelled], bool)


def retrain(
    model_dir: str | Path | None,
    review_db: str | Path,
    out_dir: str | Path,
    *,
    train_products: Sequence[Product] = (),
    val_products: Sequence[Product] = (),
    more_val_products: Sequence[Product] = (),
    config: TrainConfig | None = None,
    featurizer: OfferFeaturizer | None = None,
    k: int = 5,
) -> tuple[Matcher, dict]:
    """Continue training the matcher in ``model_dir`` with the reviewed pairs (plus generated pairs of
    ``train_products``), then re-calibrate on the reviewed labels (plus a generated scenario of ``val_products``,
    and scenarios of ``more_val_products`` the same size, which give small-photo pairs thresholds of their own).
    Audit answers are reviewed pairs like any other (``ReviewQueue.labelled_pairs``).

    A fine-tune, not a new training: a tenth of the training learning rate for a few epochs (on KAGL,
    resuming at the full rate for 10 epochs lost 10 points of recall on test; 2e-4 for 5 epochs gained 4).
    """
    featurizer = featurizer or OfferFeaturizer()
    old = Matcher.load(model_dir, featurizer=featurizer)
    if old.model is None:
        raise ValueError("the frozen-image baseline has nothing to retrain; train an offer model first (`modalens match train`)")
    with ReviewQueue(review_db) as queue:
        labelled = queue.labelled_pairs()
    if not labelled:
        raise ValueError(f"no reviewed pairs in {review_db}: review some first (`modalens match review`)")
    config = config or TrainConfig(epochs=5, lr=2e-4)
    data = reviewed_data(labelled, seed=config.seed)
    if train_products:
        data = merge(training_data(train_products, seed=config.seed, copies=config.copies), data)
    # start from the current weights (a copy, so the old matcher stays usable for comparison)
    init = OfferModel(old.model.config)
    init.load_state_dict(old.model.state_dict())
    model, history = train_offer_model(data, featurizer, config=config, init=init)
    new = Matcher(model, featurizer=featurizer, info=dict(old.info))
    extra = reviewed_scores(new, labelled)
    if val_products:
        val = Scenario(val_products, featurizer, seed="val0")
        more = calibration_scenarios(more_val_products, len(val.products), featurizer, seed="val0") if more_val_products else ()
        calibrate(new, val, k=k, target_precision=old.thresholds.target_precision, target_npv=old.thresholds.target_npv, extra=extra,
                  confidence=old.thresholds.confidence, more=more,
                  precision_bound=old.thresholds.precision_bound, npv_bound=old.thresholds.npv_bound)
    else:
        from .calibration import Calibrator, choose_thresholds

        new.calibrator = Calibrator(old.calibrator.method if old.calibrator else "isotonic").fit(*extra)
        new.thresholds = choose_thresholds(*extra, target_precision=old.thresholds.target_precision, target_npv=old.thresholds.target_npv,
                                           confidence=old.thresholds.confidence,
                                           precision_bound=old.thresholds.precision_bound, npv_bound=old.thresholds.npv_bound,
                                           clusters=np.arange(len(extra[0])),  # reviewed pairs: one cluster each
                                           new_set_share=1.0)
        new.info["guarantee"] = guarantee(new.thresholds)
    n_match = int(extra[1].sum())
    new.info.update({"reviewed_pairs": len(labelled), "reviewed_matches": n_match, "retrained_from": str(model_dir or "shipped")})
    new.save(out_dir)
    before = reviewed_scores(old, labelled)
    report = {
        "reviewed_pairs": len(labelled),
        "reviewed_matches": n_match,
        "loss_first_last": [history[0], history[-1]] if history else None,
        "old_thresholds": old.thresholds.to_dict(),
        "new_thresholds": new.thresholds.to_dict(),
        "reviewed_auc_before": _auc(*before),
        "reviewed_auc_after": _auc(*extra),
    }
    return new, report


def _auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    if labels.all() or not labels.any():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))
