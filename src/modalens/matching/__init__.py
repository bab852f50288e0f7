"""Product matching with people in the loop (the fashionID method).

    offers.py        the Offer record (photos, title, description, price, sizes)
    pairs.py         generated training/evaluation offers: image and title changes, price noise, hard negatives
    features.py      frozen-tower features of offers (average-pooled photos), cached on disk
    offer_model.py   the offer embedding: per-part projections → one L2-normalised vector; the frozen-image baseline
    train.py         contrastive training with in-batch, rule-based and mined hard negatives
    calibration.py   score → probability, thresholds for a target precision / NPV, PR curve
    pipeline.py      candidates, scores, decisions and guarded match groups over many offers
    review.py        the review queue (SQLite or PostgreSQL): leases, decisions, undo
    (the reviewer page and its API live in modalens.serving: routers/review.py, review_web/ here)
    retrain.py       reviewed decisions → training labels and re-calibrated thresholds
    evaluate.py      the measured run on generated offers of products never trained on
"""

from .offers import Offer, read_offers, write_offers

__all__ = ["Offer", "read_offers", "write_offers"]
