"""What every command shares: one-line user errors, common options, result printing."""

from __future__ import annotations

import json
from functools import wraps
from typing import Callable

import typer

INDEX_OPTION = typer.Option(None, "--index", "-i", help="Index folder (default: ~/.cache/modalens/indexes/default).")
MODEL_OPTION = typer.Option("modalens-lite", "--model", "-m", help="Model name or a folder saved by `modalens train`.")


def user_errors(fn: Callable) -> Callable:
    """Turn the errors a user can act on into one line on stderr and exit code 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from ..catalog import CatalogError
        from ..index.store import IndexStoreError
        from ..errors import ModalensError
        from ..recipes import ConfigError

        try:
            return fn(*args, **kwargs)
        except (ModalensError, CatalogError, IndexStoreError, ConfigError, FileNotFoundError, KeyError, ValueError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def parse_filters(filters: list[str]) -> dict[str, list[str] | float] | None:
    where: dict[str, list[str] | float] = {}
    for item in filters:
        if "=" not in item:
            raise ValueError(f"filter {item!r} must look like field=value (for example colour=Blue)")
        key, value = (s.strip() for s in item.split("=", 1))
        if key in ("price_min", "price_max"):
            where[key] = float(value)
        else:
            where.setdefault(key, []).extend(v.strip() for v in value.split("|"))  # type: ignore[union-attr]
    return where or None


def hit_record(hit) -> dict:
    p = hit.product
    return {"id": hit.id, "score": round(hit.score, 4), "title": p.title, "image": p.image, "attributes": p.attributes}


def print_hits(hits, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([hit_record(h) for h in hits], indent=2))
        return
    if not hits:
        typer.echo("no results")
    for rank, hit in enumerate(hits, 1):
        attrs = ", ".join(f"{v}" for k, v in hit.product.attributes.items() if k in ("colour", "article_type", "gender"))
        typer.echo(f"{rank:>2}. {hit.score:.3f}  {hit.id:<12} {hit.product.title[:60]:<60}  [{attrs}]")
