"""What every command shares: one-line user errors, common options, result printing."""

from __future__ import annotations

import json
import sys
from functools import wraps
from pathlib import Path
from typing import Callable

import typer

from ..models.factory import DEFAULT_MODEL  # torch-free: the CLI's --help stays quick

INDEX_OPTION = typer.Option(
    None, "--index", "-i",
    help="Index folder. Default: indexes/default in the cache folder (~/.cache/modalens, or $MODALENS_CACHE).",
)
STORE_OPTION = typer.Option(
    None, "--store",
    help="Where the index lives: sqlite (default, the --index folder), sqlite:DIR, or milvus:URI[#collection] "
    "(a local file path runs Milvus Lite; http://HOST:19530 a Milvus server; needs modalens[milvus]).",
)
MODEL_OPTION = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Model name or a folder saved by `modalens train`.")
#: For commands on an index: unnamed, the model the index was built with (``search.index_model``), so an upgrade that
#: changes the default leaves older indexes working; a new index gets the default.
INDEX_MODEL_OPTION = typer.Option(
    None, "--model", "-m", help=f"Model name or a folder saved by `modalens train` (default: the index's own; a new index: {DEFAULT_MODEL})."
)
ID_COL_OPTION = typer.Option(None, "--id-col", help="The catalogue's column holding product ids (default: id).")
IMAGE_COL_OPTION = typer.Option(None, "--image-col", help="The column holding photo paths (default: image or images).")
TITLE_COL_OPTION = typer.Option(None, "--title-col", help="The column holding titles (default: title).")


def column_names(id_col: str | None, image_col: str | None, title_col: str | None) -> dict[str, str] | None:
    """--id-col / --image-col / --title-col as ``read_catalog(columns=...)`` takes them."""
    columns = {role: name for role, name in (("id", id_col), ("image", image_col), ("title", title_col)) if name}
    return columns or None


PROGRESS_OPTION = typer.Option(
    None, "--progress/--no-progress", show_default=False,
    help="Progress bars on stderr. Default: only when stderr is a terminal (logs get the one-line summary).",
)


def _flags_take_no_value() -> None:
    """typer's rich help prints every option's type, ``--json <bool>`` included, as if a flag took a value:
    flags show none (one place for every command, the match and eval groups too)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - another typer layout: its help stays as it is
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_modalens_flags", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else original(self, ctx)

    display_type_rich._modalens_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich


_flags_take_no_value()


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


FILTER_HELP = (
    "field=value, repeatable; value1|value2 for any of several. Fields are the catalogue's column names "
    "(articleType=Shirts, baseColour=Blue, brand=Acme) or modalens's (article_type, colour); an unknown field is an error."
)


def parse_filters(filters: list[str], price_min: float | None = None, price_max: float | None = None) -> dict[str, list[str] | float] | None:
    """``-f field=value`` options (and ``--price-min/--price-max``) as the index's ``where``, checked as the
    REST API checks its filters: catalogue column names work, unknown fields and empty values are
    errors listing what is allowed, so a typo is never silently "no results"."""
    from ..serving.validation import where_clause  # the API's own check (no FastAPI import)

    fields: dict[str, list[str]] = {}
    prices: dict[str, float] = {}
    for item in filters:
        if "=" not in item:
            raise ValueError(f"filter {item!r} must look like field=value (for example baseColour=Blue)")
        key, value = (s.strip() for s in item.split("=", 1))
        if key in ("price_min", "price_max"):
            try:
                prices[key] = float(value)
            except ValueError:
                raise ValueError(f"filter {key} needs a number, not {value!r}") from None
        else:
            fields.setdefault(key, []).extend(v.strip() for v in value.split("|"))
    price_min = price_min if price_min is not None else prices.get("price_min")
    price_max = price_max if price_max is not None else prices.get("price_max")
    return where_clause(fields, price_min, price_max)


def image_paths(paths: list[Path]) -> list[Path]:
    """Photos named on the command line: a folder stands for every image file under it (as ``index`` reads an
    image folder: sorted, hidden files skipped); files are kept as given, missing ones included (each is reported)."""
    from ..catalog.readers import _image_files

    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = [path / relative for relative in _image_files(path)]
            if not found:
                raise ValueError(f"{path} holds no image files")
            out += found
        else:
            out.append(path)
    return out


def error_for(path: Path, error: Exception | str) -> str:
    """An error about ``path`` without the path again (messages about a file usually start with its name)."""
    message = str(error)
    for prefix in (f"{path}: ", f"{path.resolve()}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


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
        product = hit.product
        shown = [product.attributes[k] for k in ("brand", "colour", "article_type", "gender") if product.attributes.get(k)]
        if product.price is not None:
            shown.append(f"{product.price:.2f}")
        typer.echo(f"{rank:>2}. {hit.score:.3f}  {hit.id:<12} {product.title[:60]:<60}  [{', '.join(shown)}]")
