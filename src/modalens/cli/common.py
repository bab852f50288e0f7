"""What every command shares: one-line user errors, common options, result printing."""

from __future__ import annotations

import json
import sys
from functools import wraps
from typing import Callable

import typer

from ..models.factory import DEFAULT_MODEL  # torch-free: the CLI's --help stays quick

INDEX_OPTION = typer.Option(None, "--index", "-i", help="Index folder (default: ~/.cache/modalens/indexes/default).")
MODEL_OPTION = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Model name or a folder saved by `modalens train`.")


def user_errors(fn: Callable) -> Callable:
    """Turn the errors a user can act on into one line on stderr and exit code 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        # CatalogError and recipes' ConfigError are ModalensErrors; IndexStoreError is looked up only once
        # an error is caught (a module never imported raised nothing), so a command imports only what it uses.
        from ..errors import ModalensError

        try:
            return fn(*args, **kwargs)
        except (ModalensError, RuntimeError, FileNotFoundError, KeyError, ValueError) as e:
            index_base = sys.modules.get("modalens.index.base")
            store_error = getattr(index_base, "IndexStoreError", ())
            if isinstance(e, RuntimeError) and not isinstance(e, (ModalensError, store_error)):
                raise
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def parse_filters(filters: list[str]) -> dict[str, list[str] | float] | None:
    """``-f field=value`` options as the index's ``where``, checked as the REST API checks its filters
    (unknown fields and empty values are errors, so a typo is never silently "no results")."""
    from ..serving.validation import where_clause  # the API's own check (no FastAPI import)

    fields: dict[str, list[str]] = {}
    prices: dict[str, float] = {}
    for item in filters:
        if "=" not in item:
            raise ValueError(f"filter {item!r} must look like field=value (for example colour=Blue)")
        key, value = (s.strip() for s in item.split("=", 1))
        if key in ("price_min", "price_max"):
            try:
                prices[key] = float(value)
            except ValueError:
                raise ValueError(f"filter {key} needs a number, not {value!r}") from None
        else:
            fields.setdefault(key, []).extend(v.strip() for v in value.split("|"))
    return where_clause(fields, prices.get("price_min"), prices.get("price_max"))


def hit_record(hit) -> dict:
    """A hit as ``--json`` prints it: the API's hit JSON, naming the photo file instead of its URL."""
    from ..serving.validation import hit_json

    return hit_json(hit, image_url=False)


def print_hits(hits, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([hit_record(h) for h in hits], indent=2))
        return
    if not hits:
        typer.echo("no results")
    for rank, hit in enumerate(hits, 1):
        attrs = ", ".join(f"{v}" for k, v in hit.product.attributes.items() if k in ("colour", "article_type", "gender"))
        typer.echo(f"{rank:>2}. {hit.score:.3f}  {hit.id:<12} {hit.product.title[:60]:<60}  [{attrs}]")
