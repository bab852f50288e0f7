"""The catalogue index in Milvus: a vector database with a server mode, behind CatalogIndex's interface.

``--store milvus:URI`` selects it. With a local file path as URI the client runs
Milvus Lite (embedded, in this process); with ``http://host:19530`` it talks to
a Milvus standalone or cluster server through the same client API, so one code
path serves a laptop and a sharded deployment. The SQLite store
(:class:`~modalens.index.store.CatalogIndex`) stays the embedded default.

Layout: one collection of products (``id`` primary key, the unit ``vector``,
the ``content_key`` a resumed build compares, the whole ``product`` record as
JSON, and one nullable scalar column (with an inverted index on a server) per
filter field with a fixed meaning: ``split``, ``price`` and the known attributes) and a small
``<name>_meta`` collection for what SQLite keeps in its side tables (model
identity, dimension, generation, and embedding failures; Milvus wants a vector
in every collection, so it carries a two-dimensional placeholder). Filters are
pushed into Milvus' boolean expressions (:func:`milvus_filter`), with the
meaning the SQLite store gives them (:mod:`modalens.index.filters`): on the
scalar columns where there is one (Milvus Lite evaluates a JSON path row by
row in Python: 10x slower at 20k products), else on the JSON record. Products
are written with ``upsert`` (an update replaces the row) and removed with ``delete``.

Not here (SQLite store only): BM25 keyword and hybrid ranking. The filter
menus' counts cover the known attributes (their columns), counted in one pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from modalens.catalog.schema import KNOWN_ATTRIBUTES, Product
from modalens.index.base import Hit, IndexNotFoundError, IndexStoreError, _chunks, _validate_k, check_index_model
from modalens.index.filters import PRICE_KEYS, _check_filter_key, _check_price, _filter_values
from modalens.index.search import normalise_rows

DEFAULT_COLLECTION = "modalens_products"
#: How Milvus indexes the vectors: IVF-Flat on inner product (cosine on unit vectors), as the embedded back-end.
INDEX_PARAMS = {"index_type": "IVF_FLAT", "metric_type": "IP", "params": {"nlist": 1024}}
SEARCH_PARAMS = {"metric_type": "IP", "params": {"nprobe": 64}}
#: Milvus scans only the probed lists, with the filter inside: a filter widens the probe by this / its
#: selectivity (counted once per filter until this handle writes), or a 1% filter loses its neighbours
#: (recall@10 0.86 at 100k on Milvus Lite with a fixed probe).
FILTER_PROBE_BOOST = 2.0
MAX_TEXT = 65_535  # Milvus' VARCHAR limit
#: Filter fields stored as their own nullable scalar columns (indexed); any other attribute is filtered on the JSON record.
FIELD_COLUMNS = ("split", *KNOWN_ATTRIBUTES)
_PLACEHOLDER = [0.0, 1.0]  # the meta collection's vector


@dataclass(frozen=True)
class MilvusLocation:
    """Where a Milvus store lives: the client URI (a local file: Milvus Lite) and the collection name."""

    uri: str
    collection: str = DEFAULT_COLLECTION

    @classmethod
    def parse(cls, spec: str) -> MilvusLocation:
        """``URI`` or ``URI#collection`` (the part after ``milvus:``)."""
        uri, _, collection = spec.partition("#")
        if not uri.strip():
            raise ValueError("a milvus store needs a URI: milvus:PATH.db (Milvus Lite) or milvus:http://HOST:19530")
        collection = collection or DEFAULT_COLLECTION
        if not collection.replace("_", "a").isalnum() or collection[0].isdigit():
            raise ValueError(f"Milvus collection name {collection!r} must be letters, digits and _, not starting with a digit")
        return cls(uri.strip(), collection)

    @property
    def local(self) -> bool:
        return "://" not in self.uri

    def __str__(self) -> str:
        return f"milvus:{self.uri}#{self.collection}"


def _client(location: MilvusLocation) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise IndexStoreError(
            "the Milvus store needs pymilvus (and milvus-lite for a local file): pip install 'modalens[milvus]'"
        ) from exc
    uri = location.uri
    if location.local:
        path = Path(uri).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = str(path)
    try:
        return MilvusClient(uri)
    except Exception as exc:  # pymilvus raises MilvusException (and gRPC errors) for an unreachable server
        raise IndexStoreError(f"cannot open Milvus at {location.uri}: {exc}") from exc


def milvus_filter(where: Mapping[str, Any] | None) -> str:
    """``where`` as a Milvus boolean expression, meaning what the SQLite store's row mask means.

    Every key must match (AND); a list means any of its values (OR). ``split``,
    prices and the known attributes test their scalar columns (``colour in [...]``);
    any other attribute tests the JSON record with ``==`` alternatives (Milvus Lite
    accepts no ``in`` on a JSON path). Prices are inclusive; a product without the
    field never matches a filter on it.
    """
    if where is None:
        return ""
    if not isinstance(where, Mapping):
        raise ValueError(f"where must be a dict of field -> value(s), got {type(where).__name__}")  # noqa: TRY004
    clauses = []
    for key, value in where.items():
        _check_filter_key(key)
        if key in PRICE_KEYS:
            _check_price(key, value)
            clauses.append(f'price {">=" if key == "price_min" else "<="} {float(value)!r}')
        elif key in FIELD_COLUMNS:
            clauses.append(f"{key} in [{', '.join(_quote(v) for v in _filter_values(key, value))}]")
        else:
            path = f'product["attributes"][{_quote(key)}]'
            clauses.append(f"({' or '.join(f'{path} == {_quote(v)}' for v in _filter_values(key, value))})")
    return " and ".join(clauses)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a double-quoted string with \\ and \" escaped, as Milvus reads it


class MilvusIndex:
    """Products + unit vectors + failures in a Milvus collection; the same calls as :class:`CatalogIndex`.

    Open with :meth:`create` or :meth:`open`; close with :meth:`close` or a ``with`` block.
    """

    search_backend = "milvus"

    def __init__(self, location: MilvusLocation, client: Any) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self.location = location
        self.path = location  # what messages and the CLI print as "the index"
        self._client = client
        self._meta = self._read_meta()
        self._dim = int(self._meta["dim"])
        self._selectivity: dict[str, float] = {}  # filter expression -> share of products it allows

    # ----------------------------------------------------------------- opening

    @classmethod
    def create(cls, location: MilvusLocation | str, *, model: str, dim: int, exist_ok: bool = True) -> MilvusIndex:
        """Create the collections (or open them when they exist and ``exist_ok``); model and dim are fixed here."""
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model must be a non-empty string")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        location = MilvusLocation.parse(location) if isinstance(location, str) else location
        client = _client(location)
        try:
            if client.has_collection(location.collection):
                if not exist_ok:
                    raise FileExistsError(f"an index already exists at {location}")
            else:
                _create_collections(client, location.collection, model=model, dim=dim, scalar_indexes=not location.local)
            index = cls(location, client)
            index._check(model=model, dim=dim)
        except BaseException:
            client.close()
            raise
        return index

    @classmethod
    def open(cls, location: MilvusLocation | str, *, model: str | None = None) -> MilvusIndex:
        """Open an existing store; with ``model``, refuse one built with another model."""
        location = MilvusLocation.parse(location) if isinstance(location, str) else location
        if location.local and not Path(location.uri).expanduser().exists():
            raise IndexNotFoundError(f"no Milvus Lite file at {location.uri}; build one with `modalens index CATALOGUE --store milvus:{location.uri}`")
        client = _client(location)
        try:
            if not client.has_collection(location.collection) or not client.has_collection(_meta_name(location.collection)):
                raise IndexNotFoundError(f"no modalens index in {location}; build one with `modalens index CATALOGUE --store {location}`")
            index = cls(location, client)
            if model is not None:
                index._check(model=model)
        except BaseException:
            client.close()
            raise
        return index

    def _check(self, *, model: str, dim: int | None = None) -> None:
        check_index_model(self.location, self._meta["model"], model, self._dim, dim)

    def close(self) -> None:
        """Close the client; safe to call twice."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MilvusIndex({str(self.location)!r}, model={self._meta['model']!r}, dim={self._dim})"

    @property
    def _conn(self) -> Any:
        if self._client is None:
            raise IndexStoreError(f"index at {self.location} is closed")
        return self._client

    @property
    def _name(self) -> str:
        return self.location.collection

    # ------------------------------------------------------------------ meta

    def _read_meta(self) -> dict[str, str]:
        rows = self._conn.query(_meta_name(self._name), filter='key like "meta:%"', output_fields=["key", "value"])
        meta = {row["key"].removeprefix("meta:"): row["value"] for row in rows}
        if "model" not in meta or "dim" not in meta:
            raise IndexStoreError(f"{self.location} is not a modalens index (no model/dim in {_meta_name(self._name)})")
        return meta

    @property
    def meta(self) -> dict[str, Any]:
        """model, dim, generation, store (read fresh)."""
        meta: dict[str, Any] = self._read_meta()
        meta["dim"] = int(meta["dim"])
        meta["generation"] = int(meta.get("generation", 0))
        meta["store"] = str(self.location)
        return meta

    @property
    def model(self) -> str:
        return str(self._meta["model"])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def backend(self) -> str:
        return "milvus"

    def _bump_generation(self) -> None:
        """Count writes as the SQLite store does, so a reader (the server's facet cache) sees the store changed."""
        self._selectivity.clear()
        generation = int(self._read_meta().get("generation", 0)) + 1
        self._conn.upsert(_meta_name(self._name), [_meta_row("meta:generation", str(generation))])

    # ----------------------------------------------------------------- reading

    def __len__(self) -> int:
        rows = self._conn.query(self._name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def __contains__(self, product_id: object) -> bool:
        return bool(self._conn.get(self._name, ids=[str(product_id)], output_fields=["id"]))

    def ids(self) -> list[str]:
        """Indexed product ids (in id order: Milvus keeps no insertion order)."""
        return sorted(row["id"] for row in self._iterate(["id"]))

    def get(self, product_id: str) -> Product:
        rows = self._conn.get(self._name, ids=[str(product_id)], output_fields=["product"])
        if not rows:
            raise KeyError(f"product {product_id!r} is not in the index at {self.location}")
        return Product.from_dict(rows[0]["product"])

    def content_keys(self, ids: Sequence[str] | None = None) -> dict[str, str]:
        """id -> content key of the indexed products (all, or just ``ids``), so a builder can skip unchanged ones."""
        if ids is None:
            return {row["id"]: row["content_key"] for row in self._iterate(["id", "content_key"])}
        keys: dict[str, str] = {}
        for chunk in _chunks(list(ids)):
            for row in self._conn.get(self._name, ids=list(chunk), output_fields=["id", "content_key"]):
                keys[row["id"]] = row["content_key"]
        return keys

    def failures(self) -> list[tuple[str, str]]:
        """(product id, reason) of products that could not be embedded, by id."""
        rows = self._conn.query(_meta_name(self._name), filter='key like "failure:%"', output_fields=["key", "value"])
        return sorted((row["key"].removeprefix("failure:"), row["value"]) for row in rows)

    def attribute_values(self) -> dict[str, dict[str, int]]:
        """Each known attribute with how many products have each value (the server's filter menus), from the
        scalar columns in one pass; attributes kept only in the JSON record are not counted (no menu offers them)."""
        counts: dict[str, dict[str, int]] = {name: {} for name in KNOWN_ATTRIBUTES}
        for row in self._iterate(list(KNOWN_ATTRIBUTES)):
            for name, values in counts.items():
                if row.get(name) is not None:
                    values[str(row[name])] = values.get(str(row[name]), 0) + 1
        return {name: dict(sorted(values.items())) for name, values in sorted(counts.items()) if values}

    def price_range(self) -> tuple[float, float, int] | None:
        """(lowest, highest, products with a price), or None when no product has one."""
        prices = [float(row["price"]) for row in self._iterate(["price"]) if row.get("price") is not None]
        return (min(prices), max(prices), len(prices)) if prices else None

    def _iterate(self, fields: list[str]) -> Iterable[dict[str, Any]]:
        iterator = self._conn.query_iterator(self._name, batch_size=4096, filter="", output_fields=fields)
        try:
            while batch := iterator.next():
                yield from batch
        finally:
            iterator.close()

    # ----------------------------------------------------------------- writing

    def add(self, products: Sequence[Product], vectors: np.ndarray, content_keys: Sequence[str]) -> None:
        """Insert or replace ``products`` with their unit vectors (``upsert``: an update replaces the row)."""
        matrix = np.asarray(vectors)
        if matrix.ndim != 2 or matrix.shape[1] != self._dim:
            raise ValueError(f"vectors must have shape (n, {self._dim}), got {matrix.shape}")
        if not (len(products) == matrix.shape[0] == len(content_keys)):
            raise ValueError(f"{len(products)} products, {matrix.shape[0]} vectors and {len(content_keys)} content keys; they must be equal")
        ids = [p.id for p in products]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate product ids in one add(): {sorted({i for i in ids if ids.count(i) > 1})[:5]}")
        if not np.isfinite(matrix.astype(np.float64)).all():
            raise ValueError("vectors contain NaN or infinite values; nothing was written")
        if not products:
            return
        unit = normalise_rows(matrix, what="vector")
        rows = [
            {"id": p.id, "vector": unit[i].tolist(), "content_key": key, "product": p.to_dict(), **_columns(p)}
            for i, (p, key) in enumerate(zip(products, content_keys))
        ]
        for chunk in _chunks(rows, 1000):
            self._conn.upsert(self._name, list(chunk))
        self._conn.delete(_meta_name(self._name), ids=[f"failure:{i}" for i in ids])
        self._bump_generation()

    def record_failures(self, failures: Iterable[tuple[str, str]]) -> None:
        """Remember products that could not be embedded (an indexed product keeps its vector)."""
        rows = [_meta_row(f"failure:{pid}", str(reason)[:MAX_TEXT]) for pid, reason in failures]
        if rows:
            self._conn.upsert(_meta_name(self._name), rows)
            self._bump_generation()

    def delete(self, ids: Iterable[str]) -> int:
        """Remove products (and their failure records); returns how many were indexed."""
        keys = [str(i) for i in ids]
        if not keys:
            return 0
        present = len(self.content_keys(keys))
        for chunk in _chunks(keys):
            self._conn.delete(self._name, ids=list(chunk))
            self._conn.delete(_meta_name(self._name), ids=[f"failure:{i}" for i in chunk])
        self._bump_generation()
        return present

    def sync(self) -> str:
        """Flush written rows so they are sealed and indexed (Milvus searches growing rows too, so this is for speed)."""
        self._conn.flush(self._name)
        return self.search_backend

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        text: str | Sequence[str] | None = None,
        hybrid_weight: float = 0.0,
    ) -> list[list[Hit]]:
        """Cosine top-k per query, best first (ties by id), with ``where`` pushed into Milvus as a boolean expression."""
        if hybrid_weight:
            raise IndexStoreError("hybrid keyword ranking needs the SQLite store (BM25 over FTS5); the Milvus store ranks by vector")
        matrix = np.asarray(queries, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.ndim != 2 or matrix.shape[1] != self._dim or matrix.shape[0] == 0:
            raise ValueError(f"queries must have shape ({self._dim},) or (n, {self._dim}), got {np.shape(queries)}")
        if not np.isfinite(matrix).all():
            raise ValueError("queries contain NaN or infinite values")
        k = _validate_k(k)
        expression = milvus_filter(where)
        params = self._search_params(expression)
        if params is None:  # nothing matches the filter
            return [[] for _ in range(matrix.shape[0])]
        found = self._conn.search(
            self._name,
            data=normalise_rows(matrix, what="query").tolist(),
            limit=k,
            filter=expression,
            output_fields=["product"],
            search_params=params,
        )
        results = []
        for hits in found:
            ranked = sorted(((float(h["distance"]), h["id"], h["entity"]["product"]) for h in hits), key=lambda t: (-t[0], t[1]))
            results.append([Hit(pid, score, Product.from_dict(record)) for score, pid, record in ranked])
        return results

    def _search_params(self, expression: str) -> dict[str, Any] | None:
        """SEARCH_PARAMS, the probe widened for a filter by its selectivity; None when the filter allows nothing."""
        if not expression:
            return SEARCH_PARAMS
        fraction = self._selectivity.get(expression)
        if fraction is None:
            allowed = self._conn.query(self._name, filter=expression, output_fields=["count(*)"])[0]["count(*)"]
            fraction = self._selectivity[expression] = int(allowed) / max(1, len(self))
        if fraction == 0:
            return None
        nprobe = _widened(int(SEARCH_PARAMS["params"]["nprobe"]), fraction)
        return {**SEARCH_PARAMS, "params": {**SEARCH_PARAMS["params"], "nprobe": nprobe}}


def _widened(nprobe: int, fraction: float) -> int:
    """The probe for a filter allowing ``fraction`` of the products: FILTER_PROBE_BOOST / fraction wider, every list at most."""
    nlist = int(INDEX_PARAMS["params"]["nlist"])
    return min(nlist, max(nprobe, math.ceil(nprobe * FILTER_PROBE_BOOST / fraction)))


def _columns(product: Product) -> dict[str, Any]:
    """The scalar filter columns of a product (None where it has no value: it never matches a filter on it)."""
    values: dict[str, Any] = {name: product.attributes.get(name) or None for name in KNOWN_ATTRIBUTES}
    return {**values, "split": product.split or None, "price": product.price}


def _meta_name(collection: str) -> str:
    return f"{collection}_meta"


def _meta_row(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": value, "placeholder": _PLACEHOLDER}


def _create_collections(client: Any, name: str, *, model: str, dim: int, scalar_indexes: bool) -> None:
    """The products collection (IVF-Flat, inner product) and its meta collection, with the model and dim recorded.

    ``scalar_indexes``: an inverted index on each filter column, what a Milvus server filters with; Milvus
    Lite scans its Arrow columns anyway and takes half a second to create each, so a local file goes without.
    """
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False, description="modalens catalogue index")
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_TEXT)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("content_key", DataType.VARCHAR, max_length=256)
    schema.add_field("product", DataType.JSON)
    schema.add_field("price", DataType.DOUBLE, nullable=True)
    for column in FIELD_COLUMNS:
        schema.add_field(column, DataType.VARCHAR, max_length=MAX_TEXT, nullable=True)
    index = client.prepare_index_params()
    index.add_index("vector", **INDEX_PARAMS)
    for column in FIELD_COLUMNS if scalar_indexes else ():
        index.add_index(column, index_type="INVERTED")
    meta = client.create_schema(auto_id=False, enable_dynamic_field=False, description="modalens index meta and failures")
    meta.add_field("key", DataType.VARCHAR, is_primary=True, max_length=MAX_TEXT)
    meta.add_field("value", DataType.VARCHAR, max_length=MAX_TEXT)
    meta.add_field("placeholder", DataType.FLOAT_VECTOR, dim=len(_PLACEHOLDER))
    meta_index = client.prepare_index_params()
    meta_index.add_index("placeholder", index_type="FLAT", metric_type="IP")
    client.create_collection(_meta_name(name), schema=meta, index_params=meta_index)
    client.upsert(_meta_name(name), [_meta_row("meta:model", model), _meta_row("meta:dim", str(dim)), _meta_row("meta:generation", "0")])
    client.create_collection(name, schema=schema, index_params=index)  # last: its presence means the store is whole


__all__ = ["DEFAULT_COLLECTION", "INDEX_PARAMS", "SEARCH_PARAMS", "MilvusIndex", "FIELD_COLUMNS", "MilvusLocation", "milvus_filter"]
