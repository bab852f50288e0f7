"""Catalogue commands: index a catalogue, search it, tag photos, and the quickstart main job."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer

from .common import (
    FILTER_HELP,
    ID_COL_OPTION,
    IMAGE_COL_OPTION,
    INDEX_OPTION,
    INDEX_MODEL_OPTION,
    MODEL_OPTION,
    PROGRESS_OPTION,
    STORE_OPTION,
    TITLE_COL_OPTION,
    column_names,
    error_for,
    hit_record,
    image_paths,
    parse_filters,
    print_hits,
    user_errors,
)


@user_errors
def index(
    catalogue: str = typer.Argument(..., help="kagl, kagl:test, fashion-mnist[:train], NAME=ROOT[:SPLIT] for an open dataset (docs/datasets.md), a .csv/.jsonl file, or an image folder."),
    index_dir: Optional[Path] = INDEX_OPTION,
    store: Optional[str] = STORE_OPTION,
    model: Optional[str] = INDEX_MODEL_OPTION,
    limit: Optional[int] = typer.Option(None, help="Index only the first N products."),
    batch_size: int = typer.Option(64, help="Products per committed batch."),
    prune: bool = typer.Option(False, help="Remove indexed products (with --scenes: scenes) that are no longer in the catalogue."),
    id_col: Optional[str] = ID_COL_OPTION,
    image_col: Optional[str] = IMAGE_COL_OPTION,
    title_col: Optional[str] = TITLE_COL_OPTION,
    progress: Optional[bool] = PROGRESS_OPTION,
    executor: str = typer.Option("local", help="Where photos are embedded: local (this process) or ray (a Ray cluster; needs modalens[ray])."),
    address: Optional[str] = typer.Option(None, help="With --executor ray: the cluster to join (ray://HOST:10001 or auto); default: a local one."),
    workers: Optional[int] = typer.Option(None, min=1, help="With --executor ray: embedding actors (default: the cluster's CPUs)."),
    shards: Optional[Path] = typer.Option(None, help="With --executor ray: the folder of Parquet embedding shards (default: shards in the cache folder)."),
    scenes: bool = typer.Option(
        False, "--scenes", help="The catalogue lists scene photos (lookbook pages, street photos, flat-lays): store each one's "
        "instance embeddings beside the products, for `search --scenes` (needs a model with an instance decoder).",
    ),
) -> None:
    """Embed a catalogue's images into an on-disk index (resumes after an interruption); --scenes adds scene photos."""
    from ..catalog import read_catalog
    from ..search import SearchEngine

    catalog = read_catalog(catalogue, limit=limit, columns=column_names(id_col, image_col, title_col))
    for err in catalog.errors[:20]:
        typer.echo(f"skipped {err}", err=True)
    if len(catalog.errors) > 20:
        typer.echo(f"... and {len(catalog.errors) - 20} more skipped rows", err=True)
    if scenes:
        if executor != "local":
            raise ValueError("--scenes embeds in this process: drop --executor ray")
        _index_scenes(catalog, index_dir, store, model, batch_size, progress, prune)
        return
    if index_dir is None and store is None and not prune:
        _warn_if_default_index_holds_others(catalog, catalogue)
    engine = SearchEngine(index_dir, model, progress=progress, store=store)
    ray_options = {"address": address, "workers": workers, "shards": shards}
    report = engine.build(catalog, batch_size=batch_size, prune=prune, executor=executor, ray=ray_options)
    for pid, reason in engine.index.failures()[:20]:
        typer.echo(f"not indexed {pid}: {reason}", err=True)
    typer.echo(f"{report}; index {engine.index.path} holds {len(engine.index)} products")
    _export_for_queries(engine.handle)


def _index_scenes(
    catalog, index_dir: Optional[Path], store: Optional[str], model: Optional[str], batch_size: int, progress: Optional[bool], prune: bool
) -> None:
    """Scene photos into the index: the decoder runs from the model's ONNX export (made once) when it can, else in PyTorch."""
    from ..export.cache import query_handle
    from ..search import SearchEngine, index_model

    engine = SearchEngine(index_dir, query_handle(model or index_model(index_dir, store)), progress=progress, store=store)
    report = engine.add_scenes(catalog, batch_size=batch_size, prune=prune)
    index = engine.scene_index()
    listed = {scene.id for scene in catalog.products}  # a scene dropped from the list is not reported on every run
    for sid, reason in [(sid, reason) for sid, reason in index.scene_failures() if sid in listed][:20]:
        typer.echo(f"not indexed scene {sid}: {reason}", err=True)
    typer.echo(f"{report}; index {index.path} holds {index.scene_count()} scenes beside {len(index)} products")


def _export_for_queries(handle) -> None:
    """Make the model's ONNX export now (once per model and machine), while the model is loaded anyway,
    so the first `modalens search` and `tag` already answer without PyTorch."""
    from ..backends import onnx_export_available
    from ..export.cache import cached_model_export, ensure_model_export, exports_wanted

    if not exports_wanted(handle.config) or not onnx_export_available() or cached_model_export(handle.name) is not None:
        return
    try:
        ensure_model_export(handle, progress=lambda m: typer.echo(m, err=True))
    except Exception as e:  # the index is built; queries will use PyTorch
        typer.echo(f"warning: no ONNX export of {handle.name} ({type(e).__name__}: {e}); queries will use PyTorch", err=True)


def _warn_if_default_index_holds_others(catalog, catalogue: str) -> None:
    """Indexing into the default index adds to whatever it holds: say so when that is another catalogue's products."""
    from ..index import CatalogIndex
    from ..search import default_index_dir

    folder = default_index_dir()
    try:
        index = CatalogIndex.open(folder)
    except Exception:  # no default index yet (or none readable: the build says why)
        return
    try:
        others = len(set(index.ids()) - {p.id for p in catalog.products})
    finally:
        index.close()
    if others:
        typer.echo(
            f"warning: the default index {folder} already holds {others} products that are not in {catalogue}; "
            "they stay searchable beside the new ones. Give --index DIR to keep this catalogue apart, "
            "or --prune to leave only it.",
            err=True,
        )


@user_errors
def search(
    query: Optional[str] = typer.Argument(None, help="Words to search for."),
    image: Optional[Path] = typer.Option(None, "--image", help="Search by a photo (with words too: both count)."),
    look: Optional[Path] = typer.Option(
        None, "--look", help="Shop the look: each product the model's instance decoder finds in this photo, with its matches."
    ),
    explain: Optional[Path] = typer.Option(
        None, "--explain", help="With --look: draw where each product's query looked over the photo into this PNG file."
    ),
    scenes: bool = typer.Option(
        False, "--scenes", help="Find the scene photos (added with `index --scenes`) that hold what the words, --image or --product describe."
    ),
    product: Optional[str] = typer.Option(None, "--product", help="With --scenes: an indexed product's id; the scenes that hold it."),
    k: int = typer.Option(10, "-k", "--top", help="How many results."),
    filters: list[str] = typer.Option([], "--filter", "-f", help=FILTER_HELP),
    price_min: Optional[float] = typer.Option(None, "--price-min", min=0, help="Only products priced at least this."),
    price_max: Optional[float] = typer.Option(None, "--price-max", min=0, help="Only products priced at most this."),
    hybrid: float = typer.Option(0.0, min=0.0, max=1.0, help="Blend in BM25 keyword matching on titles with this weight."),
    index_dir: Optional[Path] = INDEX_OPTION,
    store: Optional[str] = STORE_OPTION,
    model: Optional[str] = INDEX_MODEL_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Search the index by words, by a photo, or both; or find each product in a photo (--look)."""
    from ..export.cache import query_handle
    from ..search import SearchEngine, index_model

    if look is not None and (scenes or product is not None):
        raise ValueError("--look finds the products in a photo and --scenes the scene photos that hold a product: use one or the other")
    if look is not None and (query or image):
        raise ValueError("--look takes a photo alone: drop the words and --image")
    # Queries come from the model's ONNX export (made once, the first time), without importing torch.
    engine = SearchEngine(index_dir, query_handle(model or index_model(index_dir, store)), progress=False, store=store)
    if look is not None:
        items = engine.look(look, k=k, where=parse_filters(filters, price_min, price_max))
        print_look(items, as_json)
        if explain is not None:
            from ..catalog.images import load_image
            from ..instances import draw_look

            draw_look(load_image(look), [i.attention for i in items], [i.box for i in items]).save(explain, format="PNG")
            if not as_json:
                typer.echo(f"where each product's query looked: {explain}")
        return
    if explain is not None:
        raise ValueError("--explain draws a --look search: give --look PHOTO")
    if scenes:
        if filters or price_min is not None or price_max is not None or hybrid:
            raise ValueError("--scenes searches scene photos, which take no filters nor --hybrid")
        print_scene_hits(engine.search_scenes(query, image, product, k=k), as_json)
        return
    if product is not None:
        raise ValueError("--product finds the scenes that hold a product: add --scenes")
    print_hits(engine.search(query, image, k=k, where=parse_filters(filters, price_min, price_max), hybrid_weight=hybrid), as_json)


def print_scene_hits(hits, as_json: bool) -> None:
    """Scenes, best first, each with the instance that matched (as ``search`` prints products)."""
    from ..serving.validation import scene_hit_json

    if as_json:
        typer.echo(json.dumps([scene_hit_json(h, image_url=False) for h in hits], indent=2))
        return
    if not hits:
        typer.echo("no scenes")
    for rank, hit in enumerate(hits, 1):
        typer.echo(f"{rank:>2}. {hit.score:.3f}  {hit.id:<24} {hit.scene.title[:48]:<48}  (instance {hit.query}, objectness {hit.objectness:.2f})")


def print_look(items, as_json: bool) -> None:
    """Each product found in the photo, then its matches (as ``search`` prints hits)."""
    if as_json:
        records = [
            {"query": i.query, "objectness": round(i.objectness, 4), "box": list(i.box), "attention": [round(a, 5) for a in i.attention],
             "hits": [hit_record(h) for h in i.hits]}
            for i in items
        ]  # fmt: skip
        typer.echo(json.dumps(records, indent=2))
        return
    for n, item in enumerate(items, 1):
        typer.echo(f"product {n} in the photo (query {item.query}, objectness {item.objectness:.2f}, around box {item.box}):")
        print_hits(item.hits, False)


@user_errors
def tag(
    images: Optional[list[Path]] = typer.Argument(None, help="Image files to tag, or folders of them."),
    labels: str = typer.Option(..., "--labels", "-l", help="Comma-separated labels, e.g. 'dress,shirt,jeans'."),
    top: int = typer.Option(3, help="Labels to show per image."),
    model: str = MODEL_OPTION,
    no_ensemble: bool = typer.Option(False, "--no-ensemble", help="Use one prompt per label instead of the ensemble."),
    explain: Optional[Path] = typer.Option(
        None, "--explain", help="Instead of tagging: draw where in this photo each label matches, one PNG per label (a heat map over the photo)."
    ),
    out: Path = typer.Option(Path("."), "--out", "-o", help="With --explain: the folder the PNGs are written to."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Zero-shot tagging: rank a label set for each image (no labelled data needed); --explain draws where each label matches."""
    from ..catalog.images import load_image
    from ..export.cache import query_handle
    from ..prompts import ZERO_SHOT_TEMPLATES
    from ..zeroshot import build_classifier

    label_list = [s.strip() for s in labels.split(",") if s.strip()]
    encoder = query_handle(model).query_encoder  # the ONNX export (no torch) when there is one, else PyTorch
    templates = ZERO_SHOT_TEMPLATES[:1] if no_ensemble else ZERO_SHOT_TEMPLATES
    if explain is not None:
        if images:
            raise ValueError("--explain takes one photo (its value); drop the other image arguments")
        _explain_labels(encoder, explain, label_list, templates, out, as_json)
        return
    if not images:
        raise ValueError("name the image files to tag (or --explain PHOTO)")
    classifier = build_classifier(encoder, label_list, templates)
    results = []
    for path in image_paths(images):
        try:
            embeds = encoder.encode_image([load_image(path)])
        except Exception as e:  # one bad file is reported, the others are still tagged
            results.append({"image": str(path), "error": str(e)})
            continue
        ranked = classifier.top_k(embeds, k=min(top, len(label_list)))[0]
        results.append({"image": str(path), "labels": [{"label": l, "score": round(s, 4)} for l, s in ranked]})
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            shown = error_for(Path(r["image"]), r["error"]) if "error" in r else ", ".join(f"{x['label']} ({x['score']:.2f})" for x in r["labels"])
            typer.echo(f"{r['image']}: {shown}")
    if any("error" in r for r in results):
        raise typer.Exit(1)


def _explain_labels(encoder, photo_path: Path, labels: list[str], templates, out: Path, as_json: bool) -> None:
    """One heat-map PNG per label over the photo (``modalens.grounding``), and each label's score and box."""
    from ..catalog.images import ImageError, load_image
    from ..grounding import explain_labels
    from ..instances import draw_look

    try:
        photo = load_image(photo_path)
    except (ImageError, OSError) as e:
        raise ValueError(f"cannot read the photo {photo_path}: {error_for(photo_path, e)}") from None
    with _writing_into(out):  # checked before the maps are computed
        out.mkdir(parents=True, exist_ok=True)
    records = []
    for j, found in enumerate(explain_labels(encoder, photo, labels, templates)):
        file = out / label_png_name(photo_path.stem, j, found["label"])
        with _writing_into(out):
            draw_look(photo, [found["map"]], [found["box"]], [found["label"]]).save(file, format="PNG")
        records.append({"label": found["label"], "score": round(found["score"], 4), "box": list(found["box"]), "file": str(file),
                        "map": [round(float(v), 5) for v in found["map"]]})  # fmt: skip
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    for r in records:
        typer.echo(f"{r['label']} ({r['score']:.2f}): matches most around box {tuple(r['box'])} -> {r['file']}")


@contextlib.contextmanager
def _writing_into(folder: Path) -> Iterator[None]:
    """An -o that is a file, or a folder this user may not write: one line on stderr, not a traceback."""
    try:
        yield
    except OSError as e:
        raise ValueError(f"cannot write the maps into {folder}: {e.strerror or e}") from None


def label_png_name(stem: str, position: int, label: str) -> str:
    """``{stem}.{position:02d}-{slug}.png``: the position keeps labels apart that read alike ("T-shirt", "t shirt"),
    the slug keeps the label's letters in any script (连衣裙) but nothing path-like (``/``, ``..``)."""
    import re

    slug = re.sub(r"[\W_]+", "-", label).strip("-").lower()[:40].strip("-") or "label"
    return f"{stem}.{position:02d}-{slug}.png"


@user_errors
def quickstart(
    catalogue: Optional[str] = typer.Option(None, help="Catalogue to index (default: KAGL test split if ../shared is present, else Fashion-MNIST)."),
    index_dir: Optional[Path] = INDEX_OPTION,
    limit: Optional[int] = typer.Option(None, help="Index only the first N products."),
    serve: bool = typer.Option(True, help="End by serving the search page on the new index (Ctrl-C stops)."),
    port: int = typer.Option(8000, help="Port for the search page."),
    progress: Optional[bool] = PROGRESS_OPTION,
) -> None:
    """The main job: index a catalogue with the default model, search and tag it, then serve the search page."""
    from ..quickstart import run_quickstart

    engine = run_quickstart(catalogue, index_dir, limit, echo=typer.echo, progress=progress)
    engine.close()
    if serve:
        from .serve_cmd import serve as serve_command

        # Every option by name: a typer command called directly gets its OptionInfo defaults, not their values.
        serve_command(
            catalogue=None, index_dir=engine.index_dir, store=None, model=engine.model_name, host="127.0.0.1", port=port, api_key=[],
            ingest_root=[], open_browser=False, onnx=None, upload_dir=None, id_col=None, image_col=None, title_col=None, progress=progress,
        )  # fmt: skip
