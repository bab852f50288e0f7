"""Matching many offers: candidates, a score per pair, groups, and a decision for every pair.

1. Every offer (new ones and the catalogue) is embedded by the offer model
   (or, for the baseline, by its pooled frozen image features).
2. Candidates: each new offer's ``k`` nearest catalogue offers and ``k`` nearest
   other new offers (exact cosine search, ``index.search.ExactSearch``).
3. Score: the cosine; the calibrated match probability is reported with it.
4. Decision per pair from the calibrated thresholds: accept, reject, or review. Pairs with a small
   photo (short side under ``SMALL_PHOTO_SIDE`` pixels on either side) use thresholds calibrated on
   small photos when the matcher has them (``Matcher.strata``): a 60×80 photo makes matches score
   lower and different products score higher, so thresholds calibrated on 224 px photos promise too much.
5. Groups: accepted pairs are merged, best first, into match groups. A merge
   is allowed only when a strict majority of all pairs across the two groups
   score at or above the accept threshold, so A~B and B~C never pull an
   unrelated C in with A; such a pair goes to review instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..index.search import ExactSearch
from .calibration import Calibrator, Thresholds, load_calibration, save_calibration
from .features import OfferFeatures, OfferFeaturizer
from .offer_numpy import CONFIG_FILE, NumpyOfferModel, frozen_image_embeddings
from .offers import Offer

if TYPE_CHECKING:
    from .offer_model import OfferModel

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
CALIBRATION_FILE = "calibration.json"
#: A pair is a small-photo pair when either offer's largest photo has a short side below this (kagl-full: 60 px;
#: KAGL: 224 px). Such pairs are calibrated apart (``Matcher.strata[SMALL_PHOTOS]``).
SMALL_PHOTO_SIDE = 128
SMALL_PHOTOS = "small-photos"


@dataclass
class PairDecision:
    left: str
    right: str
    kind: str  # "new-catalogue" or "new-new"
    score: float
    probability: float
    decision: str  # accept / reject / review
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MatchResult:
    pairs: list[PairDecision]
    groups: list[list[str]]
    failures: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {"accept": 0, "reject": 0, "review": 0}
        for p in self.pairs:
            out[p.decision] += 1
        return out


class Matcher:
    """An embedder (offer model or frozen-image baseline) plus its calibration and thresholds."""

    def __init__(
        self,
        model: OfferModel | NumpyOfferModel | None,
        calibrator: Calibrator | None = None,
        thresholds: Thresholds | None = None,
        *,
        featurizer: OfferFeaturizer | None = None,
        info: dict | None = None,
        strata: dict[str, tuple[Calibrator, Thresholds]] | None = None,
    ) -> None:
        """``model`` None means the baseline: cosine of average-pooled frozen image features. ``strata``: calibrator and
        thresholds for a kind of pair calibrated apart (only ``SMALL_PHOTOS`` so far); other pairs use the main ones."""
        self.model = model
        self.calibrator = calibrator
        self.thresholds = thresholds
        self.featurizer = featurizer or OfferFeaturizer()
        self.info = info or {}
        self.strata = dict(strata or {})

    def rule_for(self, stratum: str | None) -> tuple[Calibrator | None, Thresholds]:
        """Calibrator and thresholds of a stratum (the main ones when it has none of its own)."""
        return self.strata.get(stratum, (self.calibrator, self.thresholds)) if stratum else (self.calibrator, self.thresholds)

    def pair_strata(self, new_offers: Sequence[Offer], others: Sequence[Offer],
                    candidates: Sequence[tuple[str, int, int, float]]) -> np.ndarray:
        """Per candidate pair: its stratum name, or "" for the main one. Photos are measured only when a stratum exists."""
        out = np.full(len(candidates), "", dtype=object)
        if SMALL_PHOTOS in self.strata and len(candidates):
            out[small_photo_pairs(new_offers, others, candidates)] = SMALL_PHOTOS
        return out

    def decide_scores(self, scores: np.ndarray, mutual: np.ndarray, nearest: np.ndarray, strata: np.ndarray) -> np.ndarray:
        """accept / reject / review per pair from its score, stratum and candidate flags (vectorised ``Thresholds.decide``)."""
        out = np.full(len(scores), "review", dtype=object)
        for name in set(strata.tolist()) if len(strata) else ():
            _, th = self.rule_for(name)
            sel = strata == name
            acc = sel & (scores >= th.accept) & (mutual if th.mutual_best_only else True)
            cut = np.where(nearest, th.reject_cut(True), th.reject)
            out[acc] = "accept"
            out[sel & ~acc & (scores < cut)] = "reject"
        return out

    @property
    def name(self) -> str:
        return "offer-model[" + "+".join(self.model.config.parts) + "]" if self.model else "frozen-image"

    def embed_features(self, feats: OfferFeatures) -> np.ndarray:
        return self.model.embed(feats) if self.model is not None else frozen_image_embeddings(feats)

    def embed(self, offers: Sequence[Offer]) -> tuple[np.ndarray, OfferFeatures]:
        feats = self.featurizer(offers)
        return self.embed_features(feats), feats

    def probability(self, scores: np.ndarray) -> np.ndarray:
        return self.calibrator(scores) if self.calibrator is not None else np.clip((np.asarray(scores) + 1) / 2, 0, 1)

    # ------------------------------------------------------------ save / load

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.model is not None:
            self.model.save(folder)
        if self.calibrator is None or self.thresholds is None:
            raise ValueError("calibrate the matcher before saving it")
        strata = {name: {"calibrator": c.to_dict(), "thresholds": th.to_dict()} for name, (c, th) in self.strata.items()}
        save_calibration(folder / CALIBRATION_FILE, self.calibrator, self.thresholds,
                         {"embedder": self.name, **self.info, **({"strata": strata} if strata else {})})
        return folder

    @classmethod
    def load(cls, folder: str | Path | None = None, *, featurizer: OfferFeaturizer | None = None, numpy: bool = False) -> Matcher:
        """A saved matcher (default: the shipped one). ``numpy``: score with :class:`NumpyOfferModel` (the same
        embeddings, no torch imported) instead of the PyTorch model, for matching only (not training)."""
        folder = Path(folder) if folder else PRETRAINED_DIR
        if not (folder / CALIBRATION_FILE).is_file():
            raise FileNotFoundError(f"no matcher in {folder} (expected {CALIBRATION_FILE}); make one with `modalens match train`")
        calibrator, thresholds, info = load_calibration(folder / CALIBRATION_FILE)
        strata = {name: (Calibrator.from_dict(s["calibrator"]), Thresholds.from_dict(s["thresholds"])) for name, s in info.pop("strata", {}).items()}
        model: OfferModel | NumpyOfferModel | None = None
        if (folder / CONFIG_FILE).is_file():
            if numpy:
                model = NumpyOfferModel.load(folder)
            else:
                from .offer_model import OfferModel

                model = OfferModel.load(folder)
        return cls(model, calibrator, thresholds, featurizer=featurizer, info=info, strata=strata)

    # ------------------------------------------------------------ matching

    def candidate_pairs(self, new_emb: np.ndarray, cat_emb: np.ndarray, k: int = 5, *, new_new: bool = True) -> list[tuple[str, int, int, float]]:
        """(kind, new row, other row, cosine) for each new offer's k nearest catalogue and new offers."""
        out: list[tuple[str, int, int, float]] = []
        if len(cat_emb) and len(new_emb):
            search = ExactSearch([str(i) for i in range(len(cat_emb))], cat_emb)
            for i, hits in enumerate(search.search(new_emb, min(k, len(cat_emb)))):
                out.extend(("new-catalogue", i, j, s) for j, s in hits)
        if new_new and len(new_emb) > 1:
            search = ExactSearch([str(i) for i in range(len(new_emb))], new_emb)
            seen: set[tuple[int, int]] = set()
            for i, hits in enumerate(search.search(new_emb, min(k + 1, len(new_emb)))):
                for j, s in hits:
                    key = (min(i, j), max(i, j))
                    if i != j and key not in seen:
                        seen.add(key)
                        out.append(("new-new", key[0], key[1], s))
        return out

    def match(self, new_offers: Sequence[Offer], catalogue: Sequence[Offer], *, k: int = 5, new_new: bool = True) -> MatchResult:
        if self.thresholds is None:
            raise ValueError("the matcher has no thresholds; calibrate it first")
        new_emb, new_feats = self.embed(new_offers)
        cat_emb, cat_feats = self.embed(catalogue) if catalogue else (np.zeros((0, new_emb.shape[1]), np.float32), None)
        failures = {new_offers[i].id: r for i, r in new_feats.failures.items()}
        if cat_feats is not None:
            failures.update({catalogue[i].id: r for i, r in cat_feats.failures.items()})
        return decide_pairs(
            self, new_offers, catalogue, new_emb, cat_emb, self.candidate_pairs(new_emb, cat_emb, k, new_new=new_new), failures
        )


def small_photos(offers: Sequence[Offer]) -> np.ndarray:
    """Per offer: is its largest photo's short side under ``SMALL_PHOTO_SIDE`` (False when it has no readable photo)?"""
    from .features import offer_photo_sides

    sides = offer_photo_sides(offers)
    return (sides > 0) & (sides < SMALL_PHOTO_SIDE)


def small_photo_pairs(new_offers: Sequence[Offer], others: Sequence[Offer], candidates: Sequence[tuple[str, int, int, float]]) -> np.ndarray:
    """Per candidate pair: does either offer have small photos (:func:`small_photos`)?"""
    small_new, small_other = small_photos(new_offers), small_photos(others)
    return np.array([bool(small_new[i] or (small_other[j] if kind == "new-catalogue" else small_new[j])) for kind, i, j, _ in candidates], bool)


def mutual_best(candidates: Sequence[tuple[str, int, int, float]]) -> np.ndarray:
    """Per candidate pair: does its score reach every score that either of its two offers has with a third offer
    (among the candidate pairs)? Near-duplicate products make a pair ambiguous (an offer scores as high with
    another product), and those pairs are the wrong merges a high score alone lets through."""
    return candidate_flags(candidates)[0]


def candidate_flags(candidates: Sequence[tuple[str, int, int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate pair: (mutual best: the best candidate of both its offers, nearest: the best of at least one).

    *Nearest* pairs are where the missed matches are: a low-scoring match between two changed photos is still
    usually its offers' best candidate, so the reject side treats such pairs apart (``Thresholds.reject_nearest``)."""
    top1: dict[tuple[str, int], float] = {}
    top2: dict[tuple[str, int], float] = {}
    keys = []
    for kind, i, j, s in candidates:
        a, b = ("n", i), (("c", j) if kind == "new-catalogue" else ("n", j))
        keys.append((a, b))
        for x in (a, b):
            if s > top1.get(x, -np.inf):
                top2[x], top1[x] = top1.get(x, -np.inf), s
            elif s > top2.get(x, -np.inf):
                top2[x] = s
    mutual = np.zeros(len(candidates), bool)
    nearest = np.zeros(len(candidates), bool)
    for n, ((a, b), (_, _, _, s)) in enumerate(zip(keys, candidates)):
        # the best third-offer score of x: its top score, unless that top score is this pair's (then its second)
        third = [top2.get(x, -np.inf) if top1[x] == s else top1[x] for x in (a, b)]
        mutual[n], nearest[n] = s >= max(third), s >= min(third)
    return mutual, nearest


def decide_pairs(
    matcher: Matcher,
    new_offers: Sequence[Offer],
    catalogue: Sequence[Offer],
    new_emb: np.ndarray,
    cat_emb: np.ndarray,
    candidates: list[tuple[str, int, int, float]],
    failures: dict[str, str] | None = None,
) -> MatchResult:
    failures = failures or {}
    # one node space: new offers first, then catalogue offers
    ids = [o.id for o in new_offers] + [o.id for o in catalogue]
    emb = np.concatenate([new_emb, cat_emb]) if len(cat_emb) else new_emb
    n_new = len(new_offers)
    scores = np.array([c[3] for c in candidates], np.float64)
    strata = matcher.pair_strata(new_offers, catalogue, candidates)
    mutual, nearest = candidate_flags(candidates)
    decisions = matcher.decide_scores(scores, mutual, nearest, strata)
    probs = np.zeros(len(scores))
    for name in set(strata.tolist()):
        calibrator, _ = matcher.rule_for(name)
        sel = strata == name
        probs[sel] = calibrator(scores[sel]) if calibrator is not None else np.clip((scores[sel] + 1) / 2, 0, 1)
    pairs: list[PairDecision] = []
    nodes: list[tuple[int, int]] = []
    node_stratum: dict[int, str] = {}
    for (kind, i, j, s), p, decision, unique, near, stratum in zip(candidates, probs, decisions, mutual, nearest, strata):
        th = matcher.rule_for(stratum)[1]
        a, b = i, (n_new + j if kind == "new-catalogue" else j)
        nodes.append((a, b))
        if stratum:
            node_stratum[a] = node_stratum[b] = stratum
        where = f" ({stratum} thresholds)" if stratum else ""
        if decision == "review" and s >= th.accept and th.mutual_best_only and not unique:
            reason = f"doubtful: score {s:.3f} ≥ accept threshold {th.accept:.3f}{where}, but another offer scores as high with one of the two (p={p:.2f})"
            pairs.append(PairDecision(ids[a], ids[b], kind, float(s), float(p), decision, reason))
            continue
        cut = th.reject_cut(bool(near))
        if decision == "accept":
            reason = f"score {s:.3f} ≥ accept threshold {th.accept:.3f}{where} (target precision {th.target_precision:.0%})"
        elif decision == "reject":
            reason = f"score {s:.3f} < reject threshold {cut:.3f}{where} (target NPV {th.target_npv:.0%})"
        else:
            reason = f"doubtful: score {s:.3f} between {cut:.3f} and {th.accept:.3f}{where} (p={p:.2f})"
        missing = [ids[x] for x in (a, b) if ids[x] in failures]
        if missing and decision == "accept":
            decision, reason = "review", f"no readable photo for {', '.join(missing)}; {reason}"
        pairs.append(PairDecision(ids[a], ids[b], kind, float(s), float(p), decision, reason))
    accept_of = {name: matcher.rule_for(name)[1].accept for name in {"", *node_stratum.values()}}
    groups = _group(pairs, nodes, emb, lambda x: accept_of[node_stratum.get(x, "")])
    return MatchResult(pairs, [[ids[x] for x in g] for g in groups], dict(failures))


def _group(pairs: list[PairDecision], nodes: list[tuple[int, int]], emb: np.ndarray, accept_of: Callable[[int], float]) -> list[list[int]]:
    """Merge accepted pairs best first, each merge guarded by a strict majority of cross pairs matching
    (a cross pair matches when it reaches the accept threshold of the stricter of its two offers' strata)."""
    parent: dict[int, int] = {}
    members: dict[int, list[int]] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        members.setdefault(x, [x])
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    order = sorted((k for k, p in enumerate(pairs) if p.decision == "accept"), key=lambda k: -pairs[k].score)
    for k in order:
        a, b = nodes[k]
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        ga, gb = members[ra], members[rb]
        cross = emb[ga] @ emb[gb].T
        cut = np.maximum(np.array([accept_of(x) for x in ga])[:, None], np.array([accept_of(x) for x in gb])[None, :])
        agree = int((cross >= cut).sum())
        if agree * 2 <= cross.size:
            pair = pairs[k]
            pair.decision = "review"
            pair.reason = (
                f"chain guard: accepting would join groups of {len(ga)} and {len(gb)} offers, "
                f"but only {agree} of {cross.size} pairs across them match; {pair.reason}"
            )
            continue
        if len(ga) < len(gb):
            ra, rb, ga, gb = rb, ra, gb, ga
        parent[rb] = ra
        members[ra] = ga + gb
        del members[rb]
    return sorted((sorted(m) for r, m in members.items() if len(m) > 1 and parent.get(r, r) == r), key=lambda g: g[0])


def write_result(result: MatchResult, folder: str | Path) -> dict[str, Path]:
    """pairs.jsonl (every pair with its decision and reason), groups.json, summary.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "pairs.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in result.pairs)
    (folder / "groups.json").write_text(json.dumps(result.groups, indent=1))
    summary = {"pairs": len(result.pairs), **result.counts(), "groups": len(result.groups), "failures": result.failures}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return {"pairs": folder / "pairs.jsonl", "groups": folder / "groups.json", "summary": folder / "summary.json"}


def labelled_candidates(
    matcher: Matcher, new_offers: Sequence[Offer], catalogue: Sequence[Offer], *, k: int = 5, new_new: bool = True,
    truth: Callable[[Offer, Offer], bool] | None = None,
    features: tuple[OfferFeatures, OfferFeatures] | None = None,
) -> tuple[np.ndarray, np.ndarray, int, list[tuple[str, int, int, float]], np.ndarray, np.ndarray]:
    """Candidate pairs of a generated scenario with their truth: (scores, labels, total true pairs, candidates, new_emb, cat_emb).

    The total counts every true pair among (new, catalogue) and (new, new), found or not, so recall is honest.
    """
    truth = truth or (lambda a, b: a.product_id is not None and a.product_id == b.product_id)
    if features is not None:
        new_emb, cat_emb = matcher.embed_features(features[0]), matcher.embed_features(features[1])
    else:
        new_emb, _ = matcher.embed(new_offers)
        cat_emb, _ = matcher.embed(catalogue)
    cands = matcher.candidate_pairs(new_emb, cat_emb, k, new_new=new_new)
    labels = np.array([truth(new_offers[i], catalogue[j] if kind == "new-catalogue" else new_offers[j]) for kind, i, j, _ in cands], bool)
    scores = np.array([c[3] for c in cands], np.float64)
    cat_ids: dict[str, int] = {}
    for o in catalogue:
        cat_ids[o.product_id] = cat_ids.get(o.product_id, 0) + 1
    new_ids: dict[str, int] = {}
    for o in new_offers:
        new_ids[o.product_id] = new_ids.get(o.product_id, 0) + 1
    total = sum(cat_ids.get(o.product_id, 0) for o in new_offers if o.product_id)
    if new_new:
        total += sum(c * (c - 1) // 2 for pid, c in new_ids.items() if pid)
    return scores, labels, total, cands, new_emb, cat_emb
