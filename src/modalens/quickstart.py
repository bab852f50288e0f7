"""The main job on the embedded default: index a catalogue, search it by words and by photo, tag a photo.

Needs no download: the KAGL photos in ``../shared`` when present, otherwise
Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .catalog import read_catalog
from .paths import shared_data_dir
from .search import SearchEngine
from .zeroshot import build_classifier

EXAMPLE_QUERIES = ("navy blue check shirt", "black leather handbag for women", "white sports shoes")


def default_catalogue() -> str:
    return "kagl:test" if shared_data_dir() and (shared_data_dir() / "kagl-fashion").is_dir() else "fashion-mnist:test"


def run_quickstart(
    catalogue: str | None = None,
    index_dir: Path | None = None,
    limit: int | None = None,
    echo: Callable[[str], None] = print,
    progress: bool | None = None,
) -> SearchEngine:
    catalogue = catalogue or default_catalogue()
    if catalogue.startswith("fashion-mnist") and limit is None:
        limit = 2000  # 28×28 thumbnails: a sample is enough to try things out
    catalog = read_catalog(catalogue, limit=limit)
    echo(f"catalogue {catalogue}: {len(catalog)} products ({len(catalog.errors)} rows skipped)")
    engine = SearchEngine(index_dir, progress=progress)
    report = engine.build(catalog)
    echo(f"index {engine.index_dir}: {report}")

    for query in EXAMPLE_QUERIES:
        echo(f"\nsearch {query!r}")
        for hit in engine.search(query, k=5):
            echo(f"  {hit.score:.3f}  {hit.product.title[:70]}")

    probe = next((p for p in catalog if p.image), None)
    if probe is not None:
        echo(f"\nsearch by photo {probe.image} ({probe.title})")
        for hit in engine.search(image=probe.image, k=5):
            echo(f"  {hit.score:.3f}  {hit.product.title[:70]}")
        labels = sorted({p.get("article_type") for p in catalog} - {""})
        if labels:
            classifier = build_classifier(engine.model, labels)
            vector = engine.query_vector(image=probe.image)
            tags = ", ".join(f"{label} ({score:.2f})" for label, score in classifier.top_k(vector[None], k=3)[0])
            echo(f"\nzero-shot tags for {Path(probe.image).name}: {tags}")
    echo(
        "\nnext: modalens search \"red summer dress\" | modalens search --image PHOTO.jpg | "
        "modalens tag PHOTO.jpg --labels dress,shirt,jeans"
    )
    return engine
