"""The ``instance-retrieval`` task: find each product inside a multi-product scene, and the scenes that hold a product.

Seeded scenes (:mod:`modalens.scenes`) are built from the evaluated catalogue's
own products, so ``--data kagl:test`` uses test products only. Three
directions, each scored twice on the same scenes: by the model's instance
embeddings (K per scene, a product matched by the best of them) and by the
scene's single global embedding (the baseline), with the paired difference:

* ``scene_to_product``: a scene's query ranks the catalogue's packshots; every
  product in the scene is a target, ranked among the products *not* in the
  scene (so one target never pushes another down). Per scene, the share of its
  products within the top k; the mean over scenes.
* ``product_to_scene``: a product's packshot embedding ranks the scenes; the
  scenes holding it are relevant (first relevant rank).
* ``text_to_scene``: the product's title ranks the scenes (scenes holding a
  product of the same title are relevant).

Intervals are 95% bootstrap over scenes (scene→product) or query products.
``single_product`` repeats text→image R@1 on the plain catalogue: the global
path the decoder must leave as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..catalog.schema import Product
from ..embedding import CachedEncoder
from ..instances import instance_scores
from ..scenes import Scene, build_scenes, scene_products
from .bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, Estimate, fingerprint, mean_of, paired_difference
from .metrics import first_relevant_ranks
from .tasks import Bootstrap, TaskOutput, retrieval_output

if TYPE_CHECKING:
    from ..instances import InstanceEncoder

#: Scenes per evaluation, and garments per scene, unless told.
DEFAULT_SCENES = 500
DEFAULT_MIN_PRODUCTS = 2
DEFAULT_MAX_PRODUCTS = 4
KS = (1, 5, 10)
DIRECTIONS = ("scene_to_product", "product_to_scene", "text_to_scene")


def scene_hits(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = KS) -> dict[int, np.ndarray]:
    """Per scene (row), the share of its relevant items ranked within the top k among the irrelevant ones.

    A target's rank is 1 + the irrelevant items scoring at least as high (ties pessimistic), so the
    scene's other targets never count against it.
    """
    scores = np.asarray(scores, np.float64)
    negatives = np.where(relevant, -np.inf, scores)
    out = {k: np.zeros(len(scores)) for k in ks}
    for s in range(len(scores)):
        targets = np.flatnonzero(relevant[s])
        if not len(targets):
            for k in ks:
                out[k][s] = np.nan
            continue
        ranks = 1 + (negatives[s][None, :] >= scores[s, targets][:, None]).sum(axis=1)
        for k in ks:
            out[k][s] = float(np.mean(ranks <= k))
    return out


def _group(per_query: dict[int, np.ndarray], ids: str) -> tuple[dict[str, Any], dict[str, Estimate]]:
    estimates = {f"R@{k}": Estimate(float(np.nanmean(v)), mean_of(v), len(v), ids) for k, v in per_query.items()}
    return {name: est.value for name, est in estimates.items()}, estimates


def _ranked(scores: np.ndarray, relevant: np.ndarray) -> dict[int, np.ndarray]:
    ranks = first_relevant_ranks(scores, relevant)
    return {k: (ranks <= k).astype(float) for k in KS}


def eval_scenes(products: Sequence[Product], count: int, seed: int, min_products: int, max_products: int) -> list[Scene]:
    """The seeded scenes of an evaluation: only from ``products`` (the evaluated catalogue's own)."""
    return build_scenes(products, count, seed=seed, min_products=min_products, max_products=max_products)


def instance_retrieval_output(
    encoder: CachedEncoder,
    products: Sequence[Product],
    instance_encoder: "InstanceEncoder",
    *,
    scenes: int = DEFAULT_SCENES,
    min_products: int = DEFAULT_MIN_PRODUCTS,
    max_products: int = DEFAULT_MAX_PRODUCTS,
    scene_dir: str | None = None,
    single_product: bool = True,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    details: bool = False,
    examples: int = 0,
) -> TaskOutput:
    """Scene→product, product→scene and text→scene R@1/5/10: instance embeddings against the global baseline."""
    embeds, failures = encoder.image_embeddings(products)
    gallery = [p for i, p in enumerate(products) if i not in failures]
    gallery_embeds = embeds[[i for i in range(len(products)) if i not in failures]]
    chosen = eval_scenes(gallery, scenes, seed, min_products, max_products)
    photos = scene_products(chosen, scene_dir)
    found = instance_encoder.instances(photos)
    global_embeds, global_failures = encoder.image_embeddings(photos)
    keep = [i for i in range(len(photos)) if i not in found.failures and i not in global_failures]
    chosen, photos = [chosen[i] for i in keep], [photos[i] for i in keep]
    instances, global_embeds = found.embeddings[keep], global_embeds[keep]

    position = {p.id: j for j, p in enumerate(gallery)}
    relevant = np.zeros((len(chosen), len(gallery)), bool)
    for s, scene in enumerate(chosen):
        relevant[s, [position[p.id] for p in scene.products]] = True
    in_scenes = np.flatnonzero(relevant.any(axis=0))
    titles = [" ".join(gallery[j].title.lower().split()) for j in in_scenes]
    has_title = [i for i, t in enumerate(titles) if t]
    scene_titles = [{" ".join(p.title.lower().split()) for p in scene.products} for scene in chosen]
    title_relevant = np.array([[titles[i] in st for st in scene_titles] for i in has_title], bool).reshape(len(has_title), len(chosen))
    text_embeds = encoder.text_embeddings([gallery[in_scenes[i]].title for i in has_title])

    scores = {
        "instance": {
            "scene_to_product": instance_scores(gallery_embeds, instances).T,
            "product_to_scene": instance_scores(gallery_embeds[in_scenes], instances),
            "text_to_scene": instance_scores(text_embeds, instances),
        },
        "global": {
            "scene_to_product": global_embeds @ gallery_embeds.T,
            "product_to_scene": gallery_embeds[in_scenes] @ global_embeds.T,
            "text_to_scene": text_embeds @ global_embeds.T,
        },
    }
    targets = {"scene_to_product": relevant, "product_to_scene": relevant.T[in_scenes], "text_to_scene": title_relevant}
    query_ids = {
        "scene_to_product": fingerprint([p.id for p in photos]),
        "product_to_scene": fingerprint([gallery[j].id for j in in_scenes]),
        "text_to_scene": fingerprint([gallery[in_scenes[i]].id for i in has_title]),
    }
    boot = Bootstrap(resamples, seed)
    out = TaskOutput(
        {
            "scenes": len(chosen),
            "products_per_scene": float(relevant.sum(axis=1).mean()),
            "gallery": len(gallery),
            "queries": len(chosen),
            "scene_seed": seed,
            "decoder_queries": int(instances.shape[1]),
        }
    )
    for direction in DIRECTIONS:
        block: dict[str, Any] = {}
        for method in ("instance", "global"):
            s, r = scores[method][direction], targets[direction]
            per_query = scene_hits(s, r) if direction == "scene_to_product" else _ranked(s, r)
            group, estimates = _group(per_query, query_ids[direction])
            group.update(queries=int(r.shape[0]), gallery=int(r.shape[1]))
            boot.annotate(group, estimates)
            block[method] = group
            out.estimates.update({f"{direction}/{method}/{name}": est for name, est in estimates.items()})
        if resamples > 0:
            block["instance_minus_global"] = {
                f"R@{k}": paired_difference(
                    out.estimates[f"{direction}/global/R@{k}"], out.estimates[f"{direction}/instance/R@{k}"], resamples, seed
                )
                for k in KS
            }
        base = block["global"]["R@5"]
        block["R@5_ratio"] = float(block["instance"]["R@5"] / base) if base > 0 else None
        out.metrics[direction] = block
    if single_product:
        plain = retrieval_output(encoder, products, resamples=resamples, seed=seed)
        out.metrics["single_product"] = {
            "text_to_image_R@1": plain.metrics["text_to_image"]["R@1"],
            "ci": {"text_to_image_R@1": plain.metrics["text_to_image"].get("ci", {}).get("R@1")},
            "queries": plain.metrics["text_to_image"]["queries"],
        }
        out.estimates["single_product/text_to_image_R@1"] = plain.estimates["text_to_image/R@1"]
    if examples:
        out.examples["scenes"] = _examples(chosen, photos, scores["instance"]["scene_to_product"], gallery, found, keep, examples)
    return out


def _examples(chosen, photos, scores, gallery, found, keep, count: int) -> list[dict[str, Any]]:
    """The first few scenes with each one's top catalogue matches (for the report)."""
    out = []
    for s in range(min(count, len(chosen))):
        top = np.argsort(-scores[s], kind="stable")[:5]
        inside = {p.id for p in chosen[s].products}
        out.append(
            {
                "query": {"id": photos[s].id, "image": photos[s].image, "title": photos[s].title},
                "objectness": [round(float(v), 3) for v in found.objectness[keep[s]]],
                "results": [
                    {"id": gallery[j].id, "image": gallery[j].image, "title": gallery[j].title, "relevant": gallery[j].id in inside}
                    for j in top
                ],
            }
        )
    return out
