"""Query → product across languages with trained models: the hand-translated queries of text_towers.py against KAGL test photos.

    PYTHONPATH=src .venv/bin/python benchmarks/multilingual_queries.py modalens-photo runs/recaptioned-e5

Each query ("black t-shirt", "schwarzes T-Shirt", "t-shirt noir", "camiseta negra", "maglietta nera")
goes through a model's text tower and head and ranks the KAGL test products by their photos'
embeddings; precision@10 counts products of the query's article type and colour. Queries whose
type and colour no test product has are left out (the count is reported). 95% bootstrap intervals
over queries, and each model minus the first paired on the same queries. A text tower that knows only English still scores above zero on words English shares
("Jeans", "Top", "Kurta"), which is why English is the row to compare each language with.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text_towers import LANGUAGES, QUERIES, summary  # noqa: E402

from modalens.catalog import read_catalog  # noqa: E402
from modalens.embedding import CachedEncoder  # noqa: E402
from modalens.models.handle import load  # noqa: E402

HERE = Path(__file__).resolve().parent


def precision_at_10(model: str, data: str) -> dict[str, object]:
    products = read_catalog(data).products
    encoder = CachedEncoder(load(model).model, progress=False)
    images, failures = encoder.image_embeddings(products)
    keep = [i for i in range(len(products)) if i not in failures]
    products, images = [products[i] for i in keep], images[keep]
    kinds = np.array([(p.get("article_type"), p.get("colour")) for p in products], dtype=object)
    relevant = [np.array([tuple(k) == (kind, colour) for k in kinds]) for kind, colour, _ in QUERIES]
    used = [i for i, r in enumerate(relevant) if r.any()]
    record: dict[str, object] = {"queries_used": len(used), "products": len(products)}
    for li, language in enumerate(LANGUAGES):
        queries = encoder.text_embeddings([QUERIES[i][2][li] for i in used])
        top = np.argsort(-(queries @ images.T), axis=1)[:, :10]
        per_query = np.array([relevant[i][top[j]].mean() for j, i in enumerate(used)])
        record[f"p@10_{language}"] = {**summary(per_query), "per_query": per_query.tolist()}
    return record


def paired(results: dict[str, dict], base: str) -> dict[str, dict[str, object]]:
    """Each other model minus ``base``, per language: mean P@10 difference with a bootstrap interval over the same queries."""
    out: dict[str, dict[str, object]] = {}
    for model, r in results.items():
        if model == base:
            continue
        out[model] = {lang: summary(np.array(r[f"p@10_{lang}"]["per_query"]) - np.array(results[base][f"p@10_{lang}"]["per_query"]))
                      for lang in LANGUAGES}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--data", default="kagl:test")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "multilingual_queries.json")
    args = parser.parse_args()
    results = {model: precision_at_10(model, args.data) for model in args.models}
    print(f"{'model':<28}" + "".join(f"{'p@10 ' + lang:>20}" for lang in LANGUAGES))
    for model, r in results.items():
        cells = "".join(f"{r[f'p@10_{lang}']['mean']:8.3f} [{r[f'p@10_{lang}']['ci95'][0]:.2f},{r[f'p@10_{lang}']['ci95'][1]:.2f}]" for lang in LANGUAGES)
        print(f"{model:<28}{cells}")
    differences = paired(results, args.models[0])
    for model, by_language in differences.items():
        cells = "".join(f"{d['mean']:+8.3f} [{d['ci95'][0]:+.2f},{d['ci95'][1]:+.2f}]" for d in by_language.values())
        print(f"{model + ' − ' + args.models[0]:<28}{cells}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"data": args.data, "models": results, "paired_minus_first": differences}, indent=1) + "\n")


if __name__ == "__main__":
    main()
