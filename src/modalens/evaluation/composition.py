"""The composition benchmark: does the model know which colour goes with which garment, and what is where?

SugarCrepe-style: each case is an image (a seeded scene of two or three
products, or one product alone) with its true caption and one hard negative.
A model passes a case when it scores the image closer to the true caption.
The categories:

* ``replace-colour`` / ``replace-pattern`` / ``replace-usage``: one garment's
  attribute said wrong ("red shirt above blue jeans" vs "green shirt ...");
* ``swap-attribute``: two garments' colours swapped ("blue shirt above red jeans");
* ``replace-object``: one garment's type said wrong ("... above blue shorts");
* ``swap-object``: the two garments' places swapped ("blue jeans above a red shirt");
* ``add-object``: a garment named that is not there (and, as its partner, the
  scene that has it against the caption that leaves it out).

Every case is built with a *symmetric partner*: an image whose true caption is
this case's negative and whose negative is this case's true caption (the same
products and layout with the one thing changed, the same backdrop and jitter).
A model that reads only the captions therefore wins exactly one case of each
pair: the blind baselines sit at 0.5 by construction, and are reported beside
each category to show it (SugarCrepe removes text-only shortcuts by
adversarial filtering; a symmetric construction leaves none to filter).
"""

from __future__ import annotations

import string
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..catalog.schema import Product
from ..embedding import CachedEncoder
from ..errors import InvalidInputError
from ..scenes import (
    DEFAULT_SIZE,
    Garment,
    Scene,
    Slot,
    arrange,
    build_scenes,
    column,
    garment,
    load_scene_captions,
    product_captions,
    product_role,
    scene_products,
    side,
    usable,
)
from ..scenes.captions import SceneCaptionSet
from ..scenes.files import default_scene_dir, scene_path
from .blind import BigramLM
from .bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, Estimate, Resamples, fingerprint, mean_of
from .tasks import Bootstrap, TaskOutput

#: The categories, in report order.
CATEGORIES = (
    "replace-colour", "replace-pattern", "replace-usage", "swap-attribute", "replace-object", "swap-object", "add-object",
)  # fmt: skip

#: How each category names a garment, and the field it changes or needs (the phrase's other fields are said when known).
PHRASES = {
    "replace-colour": ("{colour} {article}", "colour"),
    "replace-pattern": ("{pattern} {article}", "pattern"),
    "replace-usage": ("{usage} {article}", "usage"),
    "swap-attribute": ("{colour} {article}", "colour"),
    "replace-object": ("{colour} {article}", "article"),
    "swap-object": ("{colour} {article}", "article"),
    "add-object": ("{colour} {article}", "article"),
}

#: Symmetric pairs per category (each pair is two cases) unless told otherwise.
DEFAULT_PAIRS = 100

#: What the text-tower blind baseline compares every caption with.
GENERIC_PROMPT = "a photo of fashion products"

_RANK = {"dress": 0, "topwear": 0, "bottomwear": 1, "footwear": 2}  # an outfit's column, top to bottom
_CENTRE = Slot(0.5, 0.5, 0.8, 0.8)
_SIDE_BY_SIDE = (Slot(0.27, 0.36, 0.42, 0.6), Slot(0.73, 0.36, 0.42, 0.6))
_BELOW_THE_PAIR = Slot(0.5, 0.84, 0.4, 0.26)
_ONE_ABOVE_THE_OTHER = (Slot(0.5, 0.26, 0.6, 0.44), Slot(0.5, 0.74, 0.6, 0.44))


@dataclass(frozen=True)
class Case:
    """One test: a scene, its true caption and a hard negative; ``pair`` numbers it with its symmetric partner."""

    category: str
    scene: Scene
    positive: str
    negative: str
    pair: int


@dataclass(frozen=True)
class _Item:
    product: Product
    garment: Garment
    role: str

    def value(self, field: str) -> str:
        return getattr(self.garment, field)

    def said(self, phrase: str) -> str:
        return self.garment.phrase(phrase)


def _typed(product: Product) -> bool:
    return bool(product.get("article_type") or product.get("category"))


def _needed(phrase: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(phrase) if name]


class _Builder:
    """Cases of one category from one catalogue's products, each pair drawn from a seeded generator."""

    def __init__(self, category: str, items: list[_Item], pairs: int, seed: int, size: int, captions: SceneCaptionSet) -> None:
        self.category, self.pairs, self.size, self.captions = category, pairs, size, captions
        self.phrase, self.field = PHRASES[category]
        self.items = [it for it in items if it.value(self.field)]  # the phrase's other fields are said when known
        self.rng = np.random.default_rng([seed, CATEGORIES.index(category)])
        self.seed = seed
        self.cases: list[Case] = []
        self.seen: set[tuple[str, ...]] = set()

    # ---- wording

    def pair_caption(self, a: _Item, relation: str, b: _Item, rest: Sequence[str] = ()) -> str:
        template = next(iter(self.captions.scene.values()))
        return self.captions.scene_caption(template, a.said(self.phrase), self.captions.relation_words(relation), b.said(self.phrase), rest)

    # ---- layout

    def duo(self, first: _Item, second: _Item, seed: tuple[int, ...], extra: _Item | None = None) -> tuple[Scene, str, str | None] | None:
        """``first`` above ``second`` in an outfit's column when their roles stack that way, else side by side;
        ``extra`` beside them. (scene, relation of first to second, extra's place) or None when the layout fails."""
        stacked = first.role in _RANK and second.role in _RANK and _RANK[first.role] < _RANK[second.role]
        slots = column([first.role, second.role]) if stacked else list(_SIDE_BY_SIDE)
        products = [first.product, second.product]
        if extra is not None:
            sides = ("left-high", "left-low", "right-high", "right-low")
            slots.append(side(sides[seed[-1] % 4]) if stacked else _BELOW_THE_PAIR)
            products.append(extra.product)
        scene = arrange(products, slots, seed, kind="outfit" if stacked else "collage", size=self.size)
        relation = "above" if stacked else "left of"
        if scene.relation(0, 1) != relation:
            return None
        return scene, relation, scene.position(2) if extra is not None else None

    def add_pair(self, key: tuple[str, ...], first: tuple[Scene, str, str], second: tuple[Scene, str, str]) -> None:
        """Keep a symmetric pair: ``first`` = (scene, true caption, negative), ``second`` its mirror image."""
        if key in self.seen or first[1] == first[2]:
            return
        self.seen.add(key)
        number = len(self.cases) // 2
        self.cases += [Case(self.category, *first, number), Case(self.category, *second, number)]

    def done(self) -> bool:
        return len(self.cases) >= 2 * self.pairs

    def pick(self, pool: Sequence[_Item]) -> _Item:
        return pool[int(self.rng.integers(len(pool)))]

    def context(self, *others: _Item) -> _Item | None:
        """A third garment of another role and type than ``others`` (preferring one that stacks in a column with them)."""
        roles = {o.role for o in others}
        articles = {o.garment.article for o in others}
        pool = [it for it in self.items if it.role not in roles and it.garment.article not in articles]
        stacking = [it for it in pool if it.role in _RANK and all(o.role in _RANK and _RANK[o.role] != _RANK[it.role] for o in others)]
        pool = stacking or pool
        for _ in range(8):
            if not pool:
                return None
            choice = self.pick(pool)
            if usable(choice.product):
                return choice
        return None

    # ---- categories

    def replace(self) -> None:
        """One garment's ``field`` said wrong: p and q alike in every other word of the phrase."""
        groups: dict[tuple, list[_Item]] = defaultdict(list)
        for it in self.items:
            groups[(it.role, *(it.value(f) for f in _needed(self.phrase) if f != self.field))].append(it)
        groups_ = [g for g in groups.values() if len({it.value(self.field) for it in g}) > 1]
        for attempt in range(40 * self.pairs):
            if self.done() or not groups_:
                return
            group = self.pick(groups_)
            p, q = self.pick(group), self.pick(group)
            if p.value(self.field) == q.value(self.field) or not (usable(p.product) and usable(q.product)):
                continue
            seed = (self.seed, CATEGORIES.index(self.category), attempt)
            if attempt % 2 == 0:  # the product alone
                sp, sq = (arrange([x.product], [_CENTRE], seed, kind="collage", size=self.size) for x in (p, q))
                first, second = (sp, p.said(self.phrase), q.said(self.phrase)), (sq, q.said(self.phrase), p.said(self.phrase))
            else:  # beside a garment of another role, in the same place in both images
                other = self.context(p, q)
                if other is None:
                    continue
                stacks = p.role in _RANK and other.role in _RANK and _RANK[p.role] != _RANK[other.role]
                subject_first = _RANK[p.role] < _RANK[other.role] if stacks else bool(self.rng.random() < 0.5)
                made = []
                for x in (p, q):
                    order = (x, other) if subject_first else (other, x)
                    laid = self.duo(*order, seed)
                    if laid is None:
                        break
                    made.append((laid[0], self.pair_caption(order[0], laid[1], order[1])))
                if len(made) < 2:
                    continue
                first, second = (made[0][0], made[0][1], made[1][1]), (made[1][0], made[1][1], made[0][1])
            key = tuple(sorted((p.product.id, q.product.id))) + (("alone",) if attempt % 2 == 0 else (other.product.id,))
            self.add_pair(key, first, second)

    def swap_attribute(self) -> None:
        """Two garments' colours swapped: a c1-A with a c2-B against a c2-A with a c1-B, both photographed."""
        by_type: dict[tuple[str, str], dict[str, list[_Item]]] = defaultdict(lambda: defaultdict(list))
        for it in self.items:
            by_type[(it.role, it.garment.article)][it.garment.colour].append(it)
        kinds = sorted(by_type)
        combos = [
            (a, b, sorted(set(by_type[a]) & set(by_type[b])))
            for i, a in enumerate(kinds) for b in kinds[i + 1 :]
            if a[0] != b[0] and len(set(by_type[a]) & set(by_type[b])) >= 2
        ]  # fmt: skip
        for attempt in range(40 * self.pairs):
            if self.done() or not combos:
                return
            a, b, colours = combos[int(self.rng.integers(len(combos)))]
            c1, c2 = (colours[i] for i in self.rng.choice(len(colours), 2, replace=False))
            a1, b1, a2, b2 = (self.pick(by_type[t][c]) for t, c in ((a, c1), (b, c2), (a, c2), (b, c1)))
            if not all(usable(x.product) for x in (a1, b1, a2, b2)):
                continue
            if a[0] in _RANK and b[0] in _RANK and _RANK[b[0]] < _RANK[a[0]]:
                a1, b1, a2, b2 = b1, a1, b2, a2  # the garment that stacks higher goes first
            seed = (self.seed, CATEGORIES.index(self.category), attempt)
            one, two = self.duo(a1, b1, seed), self.duo(a2, b2, seed)
            if one is None or two is None:
                continue
            true_one, true_two = self.pair_caption(a1, one[1], b1), self.pair_caption(a2, two[1], b2)
            key = (a1.product.id, b1.product.id, a2.product.id, b2.product.id)
            self.add_pair(key, (one[0], true_one, true_two), (two[0], true_two, true_one))

    def swap_object(self) -> None:
        """Two garments' places swapped: A above B against B above A (and left/right), both photographed."""
        for attempt in range(40 * self.pairs):
            if self.done() or len(self.items) < 2:
                return
            a, b = self.pick(self.items), self.pick(self.items)
            if a.garment.article == b.garment.article or not (usable(a.product) and usable(b.product)):
                continue
            seed = (self.seed, CATEGORIES.index(self.category), attempt)
            slots, relation = (_ONE_ABOVE_THE_OTHER, "above") if attempt % 2 == 0 else (_SIDE_BY_SIDE, "left of")
            one = arrange([a.product, b.product], list(slots), seed, kind="collage", size=self.size)
            two = arrange([b.product, a.product], list(slots), seed, kind="collage", size=self.size)
            if one.relation(0, 1) != relation or two.relation(0, 1) != relation:
                continue
            true_one, true_two = self.pair_caption(a, relation, b), self.pair_caption(b, relation, a)
            self.add_pair((a.product.id, b.product.id, relation), (one, true_one, true_two), (two, true_two, true_one))

    def add_object(self) -> None:
        """A garment named that is not there: the pair alone against the pair with a third garment beside it."""
        for attempt in range(40 * self.pairs):
            if self.done() or len(self.items) < 3:
                return
            a, b = self.pick(self.items), self.pick(self.items)
            if a.role == b.role or a.garment.article == b.garment.article:
                continue
            if a.role in _RANK and b.role in _RANK and _RANK[b.role] < _RANK[a.role]:
                a, b = b, a
            extra = self.context(a, b)
            if extra is None or not (usable(a.product) and usable(b.product)):
                continue
            seed = (self.seed, CATEGORIES.index(self.category), attempt)
            pair, trio = self.duo(a, b, seed), self.duo(a, b, seed, extra)
            if pair is None or trio is None or trio[2] is None:
                continue
            place = f"{extra.said(self.phrase)} {self.captions.position_words(trio[2])}"
            without, with_ = self.pair_caption(a, pair[1], b), self.pair_caption(a, trio[1], b, [place])
            key = (a.product.id, b.product.id, extra.product.id)
            self.add_pair(key, (pair[0], without, with_), (trio[0], with_, without))


_RUNS: dict[str, Callable[[_Builder], None]] = {
    "replace-colour": _Builder.replace, "replace-pattern": _Builder.replace, "replace-usage": _Builder.replace,
    "swap-attribute": _Builder.swap_attribute, "replace-object": _Builder.replace,
    "swap-object": _Builder.swap_object, "add-object": _Builder.add_object,
}  # fmt: skip

_WHY_MISSING = {
    "colour": "no product has a colour (colour / baseColour field)",
    "pattern": "no product has a pattern (a pattern field, or a pattern word in its title)",
    "usage": "no product has a usage field",
    "article": "no product has a type (article_type / articleType field)",
}


def check_catalogue(products: Sequence[Product]) -> None:
    """Refuse, before any model loads, a catalogue no composition case can be built from."""
    typed = sum(1 for p in products if p.image and _typed(p))
    if typed < 2:
        raise InvalidInputError(
            f"composition needs products with a photo and a type (an article_type / articleType column); "
            f"{typed} of {len(products)} products have both"
        )


def build_cases(
    products: Sequence[Product], pairs: int = DEFAULT_PAIRS, seed: int = 0, *, size: int = DEFAULT_SIZE,
    categories: Sequence[str] = CATEGORIES, captions: SceneCaptionSet | None = None,
) -> tuple[list[Case], dict[str, str]]:
    """Up to ``pairs`` symmetric pairs of cases per category from ``products``; and each category left out, with why."""
    unknown = set(categories) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown composition categories {sorted(unknown)}; known: {', '.join(CATEGORIES)}")
    captions = captions or load_scene_captions()
    items = [_Item(p, garment(p, captions), product_role(p)) for p in products if p.image and _typed(p)]
    cases: list[Case] = []
    skipped: dict[str, str] = {}
    for category in categories:
        field = PHRASES[category][1]
        if not any(it.value(field) for it in items):
            skipped[category] = _WHY_MISSING[field]
            continue
        builder = _Builder(category, items, pairs, seed, size, captions)
        _RUNS[category](builder)
        if not builder.cases:
            skipped[category] = "no two products form a symmetric pair for it (too few products or values)"
            continue
        offset = len({(c.category, c.pair) for c in cases})
        cases += [Case(c.category, c.scene, c.positive, c.negative, c.pair + offset) for c in builder.cases]
    return cases, skipped


# ---------------------------------------------------------------- scoring


def blind_captions(products: Sequence[Product], seed: int = 0, scenes: int = 300, limit: int = 5000) -> list[str]:
    """Grounded captions of ``products`` (single) and of seeded scenes of them: what the blind baseline learns from."""
    texts = [text for p in products[:limit] if _typed(p) for text in product_captions(p)]
    try:
        built = build_scenes(products, scenes, seed, kind="mixed")
    except ValueError:
        built = []
    return texts + [text for scene in built for text in scene.captions()]


def _pick_score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 where ``a`` wins, 0 where ``b`` does, 0.5 on a tie."""
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))


def _macro(values: np.ndarray, groups: list[np.ndarray]) -> Callable[[Resamples], np.ndarray]:
    """The mean over categories of each category's mean, on every resample of the cases."""

    def statistic(r: Resamples) -> np.ndarray:
        per = [(r.counts[:, g] @ values[g]) / np.maximum(r.counts[:, g].sum(axis=1), 1e-12) for g in groups]
        return np.mean(per, axis=0)

    return statistic


def composition_output(
    encoder: CachedEncoder,
    products: Sequence[Product],
    train: Sequence[Product] | None = None,
    *,
    pairs: int = DEFAULT_PAIRS,
    size: int = DEFAULT_SIZE,
    scene_dir: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    details: bool = False,
    examples: int = 0,
) -> TaskOutput:
    """Per-category accuracy (true caption scored above its negative) with intervals, their mean, and the blind
    baselines beside each: a bigram LM fitted on ``train``'s grounded captions (``products``' own without one)
    and the text tower's similarity to a generic prompt."""
    cases, skipped = build_cases(products, pairs, seed, size=size)
    scenes = list({c.scene.key: c.scene for c in cases}.values())
    images, failures = encoder.image_embeddings(scene_products(scenes, scene_dir))
    failed = {scenes[i].key for i in failures}
    lost = {(c.category, c.pair) for c in cases if c.scene.key in failed}
    cases = [c for c in cases if (c.category, c.pair) not in lost]  # a pair is kept whole, or its symmetry is gone
    if not cases:
        reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "every scene failed to render"
        raise ValueError(f"composition: no case could be built from these {len(products)} products ({reasons})")
    row = {scene.key: i for i, scene in enumerate(scenes)}
    texts = sorted({c.positive for c in cases} | {c.negative for c in cases})
    position = {t: i for i, t in enumerate(texts)}
    text_embeds = encoder.text_embeddings(texts)
    image_rows = images[[row[c.scene.key] for c in cases]]
    pos, neg = (np.array([position[getattr(c, side)] for c in cases]) for side in ("positive", "negative"))
    model = _pick_score(np.einsum("ij,ij->i", image_rows, text_embeds[pos]), np.einsum("ij,ij->i", image_rows, text_embeds[neg]))
    lm = BigramLM().fit(blind_captions(train if train else products, seed))
    fluency = np.array([lm.logprob(t) for t in texts])
    generic = text_embeds @ encoder.text_embeddings([GENERIC_PROMPT])[0]
    scores = {"accuracy": model, "blind_ngram": _pick_score(fluency[pos], fluency[neg]), "blind_text_tower": _pick_score(generic[pos], generic[neg])}
    # The two cases of a pair share products and layout, so the bootstrap resamples pairs (a pair's value is the
    # mean of its two cases; cases come pair by pair): a blind baseline's interval is then exactly [0.5, 0.5].
    scores = {name: v.reshape(-1, 2).mean(axis=1) for name, v in scores.items()}
    pair_cases = cases[::2]
    boot = Bootstrap(resamples, seed)
    out = TaskOutput({"pairs_asked": pairs, "scene_size": size, "cases": len(cases), "scenes": len(scenes), "categories": {}})
    present = [c for c in CATEGORIES if any(case.category == c for case in pair_cases)]
    groups = [np.array([i for i, case in enumerate(pair_cases) if case.category == c]) for c in present]
    for category, idx in zip(present, groups):
        ids = fingerprint([f"{pair_cases[i].scene.key}|{pair_cases[i].negative}" for i in idx])
        estimates = {name: Estimate(float(v[idx].mean()), mean_of(v[idx]), len(idx), ids) for name, v in scores.items()}
        group: dict[str, Any] = {name: est.value for name, est in estimates.items()}
        group.update(n=2 * len(idx), pairs=len(idx))
        boot.annotate(group, estimates)
        out.metrics["categories"][category] = group
        out.estimates.update({f"categories/{category}/{name}": est for name, est in estimates.items()})
    ids = fingerprint([f"{c.scene.key}|{c.negative}" for c in pair_cases])
    mean_estimates = {
        name: Estimate(float(np.mean([v[g].mean() for g in groups])), _macro(v, groups), len(pair_cases), ids)
        for name, v in scores.items()
    }
    mean: dict[str, Any] = {name: est.value for name, est in mean_estimates.items()}
    mean.update(n=len(cases), pairs=len(pair_cases), categories=len(present))
    boot.annotate(mean, mean_estimates)
    out.metrics["mean"] = mean
    out.estimates.update({f"mean/{name}": est for name, est in mean_estimates.items()})
    out.metrics["skipped"] = skipped
    if examples:
        out.examples["cases"] = _examples(cases, model, scene_dir, examples, seed)
    return out


def _examples(cases: list[Case], model: np.ndarray, scene_dir: str | None, count: int, seed: int) -> list[dict]:
    """Up to ``count`` passed and ``count`` failed cases, with the scene file the report shows."""
    folder = Path(scene_dir) if scene_dir else default_scene_dir()
    rng = np.random.default_rng(seed)
    right, wrong = np.flatnonzero(model == 1), np.flatnonzero(model < 1)
    chosen = [int(i) for pool in (right, wrong) if len(pool) for i in rng.choice(pool, min(count, len(pool)), replace=False)]
    return [
        {"category": cases[i].category, "image": str(scene_path(cases[i].scene, folder)), "positive": cases[i].positive,
         "negative": cases[i].negative, "passed": bool(model[i] == 1)}
        for i in chosen
    ]  # fmt: skip
