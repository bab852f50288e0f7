"""What every edge checks the same way: filters, ids, JSON, ingest paths; the limits; a search hit as JSON.

The REST API (``serving.dependencies`` and the routers) and the CLI
(``cli.common``) both use these, so a filter, an id or a limit means the same
thing wherever it comes in. This module imports neither FastAPI nor torch: the
CLI pays nothing for it. Every refusal is a :class:`~modalens.errors.ModalensError`,
which each edge maps once (HTTP status / one line and exit code 2).
"""

from __future__ import annotations

import json
import math
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..catalog.schema import KNOWN_ATTRIBUTES, attribute_name, normalise_column
from ..errors import ForbiddenError, InvalidInputError, NotFoundError

# ----------------------------------------------------------------- limits (the one place they are written)

#: Results per page, and how far a client may page.
MAX_K = 100
MAX_OFFSET = 1000
#: Characters of a text query.
MAX_QUERY_CHARS = 500
#: Characters of a product or offer id (the API refuses longer ones, and any control character).
MAX_ID_CHARS = 512
#: Labels one tagging request may name.
MAX_LABELS = 200
#: Nesting of any JSON a client sends in a form field (product records, filters).
MAX_JSON_DEPTH = 32
#: Filter fields per query, and values per field.
MAX_FILTER_FIELDS = 20
MAX_FILTER_VALUES = 100
MAX_FILTER_VALUE_CHARS = 200
#: Default byte limits of a request body: JSON (and anything that is not multipart), and multipart uploads;
#: both are enforced before the body is read (``serving.middleware.BodyLimit``). Per-server settings.
DEFAULT_MAX_JSON_BYTES = 1 * 2**20
DEFAULT_MAX_UPLOAD_BYTES = 10 * 2**20
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000

# ----------------------------------------------------------------- filters

#: Fields a search may filter on; ``price_min``/``price_max`` come as numbers beside them.
FILTER_FIELDS = frozenset(KNOWN_ATTRIBUTES) | {"split"}
PRICE_KEYS = ("price_min", "price_max")


class FilterError(InvalidInputError):
    """A filter that names an unknown field or no usable value (the API answers 400, as it always has)."""

    http_status = 400


def filter_field(name: Any) -> str:
    """The field a filter names, in modalens's words: a catalogue's column name works as the readers read it
    (``articleType`` → ``article_type``, ``baseColour`` or ``color`` → ``colour``), a modalens name as it is.

    Anything else raises :class:`FilterError` listing the allowed fields, so a typo (``colr``) is an
    error on the command line, in the API and on the page alike, never a silent "no results".
    """
    if isinstance(name, str):
        if name in FILTER_FIELDS:
            return name
        if normalise_column(name) == "split":
            return "split"
        canonical = attribute_name(name)
        if canonical is not None:
            return canonical
    raise FilterError(f"unknown filter field {str(name)!r}; allowed: {allowed_filter_fields()}")


def allowed_filter_fields() -> str:
    """The filter fields for an error message: each modalens name with the catalogue column names that mean it."""
    spellings: dict[str, list[str]] = {name: [] for name in sorted(FILTER_FIELDS)}
    for column in _CATALOGUE_COLUMNS:
        target = attribute_name(column)
        if target in spellings and column != target:
            spellings[target].append(column)
    parts = [f"{name} ({', '.join(names)})" if names else name for name, names in spellings.items()]
    return ", ".join(parts) + ", price_min, price_max"


#: The catalogue column spellings an error message mentions (the readers accept any case, '_', '-' or spaces).
_CATALOGUE_COLUMNS = ("articleType", "masterCategory", "subCategory", "baseColour", "color", "type")


def where_clause(filters: Mapping[str, Any] | None, price_min: float | None = None, price_max: float | None = None) -> dict | None:
    """Filters as the index's ``where``: known fields only, each with one or more non-empty string values.

    The one check of the REST API (text and photo search), the web page, ``modalens search -f``
    and ``modalens.Index.search``: field names are mapped by :func:`filter_field` (two names of one
    field pool their values); unknown fields and empty values raise :class:`FilterError`; values of
    the wrong type raise :class:`~modalens.errors.InvalidInputError`. ``price_min``/``price_max``
    may also come inside ``filters``.
    """
    if filters is None:
        filters = {}
    if not isinstance(filters, Mapping):
        raise InvalidInputError(f"filters must be an object of field → value(s), not {type(filters).__name__}")
    unknown = sorted(str(k) for k in filters if k not in PRICE_KEYS and not _known_field(k))
    if unknown:
        raise FilterError(f"unknown filter field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                          f"allowed: {allowed_filter_fields()}")
    if len(filters) > MAX_FILTER_FIELDS:
        raise InvalidInputError(f"at most {MAX_FILTER_FIELDS} filter fields")
    bounds = {"price_min": price_min, "price_max": price_max}
    where: dict[str, Any] = {}
    for key, value in filters.items():
        if key in PRICE_KEYS:
            if bounds[key] is not None and bounds[key] != value:
                raise InvalidInputError(f"{key} is given twice, with different values")
            bounds[key] = value
            continue
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
            raise InvalidInputError(f"filter {key!r} takes a string or a list of strings, not {_kind(value)}")
        if not values or not all(v.strip() for v in values):
            raise FilterError(f"filter {key!r} needs one or more non-empty values")
        if len(values) > MAX_FILTER_VALUES or any(len(v) > MAX_FILTER_VALUE_CHARS for v in values):
            raise InvalidInputError(f"filter {key!r}: at most {MAX_FILTER_VALUES} values of {MAX_FILTER_VALUE_CHARS} characters")
        field = filter_field(key)
        where[field] = list(dict.fromkeys([*where.get(field, []), *values]))
    for name, bound in bounds.items():
        if bound is not None:
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound) or bound < 0:
                raise InvalidInputError(f"{name} must be a non-negative number, not {bound!r}")
            where[name] = float(bound)
    if "price_min" in where and "price_max" in where and where["price_min"] > where["price_max"]:
        raise InvalidInputError(f"price_min ({where['price_min']:g}) is above price_max ({where['price_max']:g})")
    return where or None


def _known_field(name: Any) -> bool:
    try:
        filter_field(name)
    except FilterError:
        return False
    return True


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# ----------------------------------------------------------------- ids


def check_id(value: Any, what: str = "id") -> str:
    """An id as the API accepts it: 1 to MAX_ID_CHARS characters, no control characters, no surrounding spaces."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{what} must be a non-empty string")
    if len(value) > MAX_ID_CHARS:
        raise InvalidInputError(f"{what} is longer than {MAX_ID_CHARS} characters")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise InvalidInputError(f"{what} must not contain control characters (NUL, newlines, tabs...)")
    if value != value.strip():
        raise InvalidInputError(f"{what} must not start or end with spaces")
    return value


def product_url(product_id: str, *rest: str, query: str = "") -> str:
    """``/api/products/{id}/...`` with the id percent-encoded (``/``, ``?``, ``#`` and spaces included)."""
    path = "/".join(["/api/products", quote(product_id, safe=""), *rest])
    return f"{path}?{query}" if query else path


# ----------------------------------------------------------------- JSON from clients


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def loads_json(text: str | bytes, what: str = "body") -> Any:
    """Parse JSON a client sent in a form field: malformed JSON, NaN/Infinity and nesting past MAX_JSON_DEPTH are refused."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidInputError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, bad UTF-8 (422, as FastAPI answers a malformed JSON body)
        raise InvalidInputError(f"{what} is not valid JSON: {e}") from None
    check_depth(value, what)
    return value


def check_depth(value: Any, what: str = "body", limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse containers nested deeper than ``limit`` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise InvalidInputError(f"{what} is nested more than {limit} levels deep")
        stack.extend((child, depth + 1) for child in children)


# ----------------------------------------------------------------- ingest paths


def ingest_roots_from_env(value: str | None = None) -> tuple[Path, ...]:
    """``MODALENS_INGEST_ROOTS``: folders separated by the path separator (``:`` on Linux)."""
    value = os.environ.get("MODALENS_INGEST_ROOTS", "") if value is None else value
    return tuple(Path(p).expanduser() for p in value.split(os.pathsep) if p.strip())


def under_roots(path: str | Path, roots: Sequence[Path]) -> Path | None:
    """``path`` with every symlink resolved, if it lies inside one of ``roots`` (resolved too); else None."""
    try:
        resolved = Path(path).resolve(strict=False)
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return None
    for root in roots:
        try:
            real_root = Path(root).expanduser().resolve(strict=False)
        except (OSError, RuntimeError, ValueError):
            continue
        if resolved == real_root or real_root in resolved.parents:
            return resolved
    return None


def check_ingest_source(source: Any, roots: Sequence[Path]) -> Path:
    """The catalogue a client asks the server to ingest, as a resolved path inside an ingest root.

    Only absolute paths are accepted (a named catalogue such as ``kagl``, a relative path or ""
    would leave the choice of folder to the server); symlinks are resolved before the check, so a
    link inside a root that points outside is refused too.
    """
    if not roots:
        raise ForbiddenError("ingest is disabled on this server: start it with --ingest-root FOLDER (or MODALENS_INGEST_ROOTS)")
    if not isinstance(source, str) or not source.strip():
        raise ForbiddenError("an empty source names no catalogue: give an absolute path inside an ingest root")
    if any(unicodedata.category(c) == "Cc" for c in source) or len(source) > 4096:
        raise InvalidInputError("source must be a path without control characters, at most 4096 characters")
    if not Path(source).is_absolute():
        raise ForbiddenError(f"source {source!r} is not an absolute path; ingest reads only files and folders inside the ingest roots")
    resolved = under_roots(source, roots)
    if resolved is None:
        raise ForbiddenError(f"source {source!r} lies outside the ingest roots this server allows")
    if not resolved.exists():
        raise NotFoundError(f"source {source!r}: no such file or folder")
    return resolved


# ----------------------------------------------------------------- results


def hit_json(hit: Any, *, image_url: bool = True) -> dict[str, Any]:
    """One search hit as JSON: the API links its photo (``image_url``), the CLI names the file (``image``)."""
    p = hit.product
    record: dict[str, Any] = {
        "id": hit.id,
        "score": round(float(hit.score), 4),
        "title": p.title,
        "attributes": p.attributes,
        "price": p.price,
    }
    if image_url:
        record["image_url"] = product_url(hit.id, "image") if p.images else None
    else:
        record["image"] = p.image
    return record


def scene_url(scene_id: str, *rest: str) -> str:
    """``/api/scenes/{id}/...`` with the id percent-encoded."""
    return "/".join(["/api/scenes", quote(scene_id, safe=""), *rest])


def scene_hit_json(hit: Any, *, image_url: bool = True) -> dict[str, Any]:
    """A scene that holds what was searched for, as JSON: its best instance (which decoder query, how sure, and
    where it looked over the feature map's cells, reading order); the API links the photo, the CLI names the file."""
    record: dict[str, Any] = {
        "id": hit.id,
        "score": round(float(hit.score), 4),
        "title": hit.scene.title,
        "query": hit.query,
        "objectness": round(float(hit.objectness), 4),
        "attention": [round(float(a), 5) for a in hit.attention],
    }
    if image_url:
        record["image_url"] = scene_url(hit.id, "image") if hit.scene.images else None
    else:
        record["image"] = hit.scene.image
    return record
