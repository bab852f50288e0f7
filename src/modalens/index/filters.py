"""Filters: ``where={"colour": "Red", "price_max": 50}`` as a row mask for vector search, or as SQL for keyword search.

Both forms must mean the same thing, so they are written side by side. The
mask is applied inside the vector search, before ranking, so k results come
back whenever k match; it is built from per-field columns cached in the
search structure's row order (:meth:`FiltersMixin._column`), which the
vector back-end keeps in step as rows change (:mod:`modalens.index.vectors`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modalens.index.ann import FaissIVFSearch
from modalens.index.base import IndexState

#: Filter keys with a fixed meaning; any other key filters on ``Product.attributes``.
PRICE_KEYS = ("price_min", "price_max")


class FiltersMixin(IndexState):
    """Row masks for ``where`` over the current search structure."""

    def _filter_mask(self, where: Mapping[str, Any]) -> np.ndarray:
        """Boolean row mask for ``where``: every key must match (AND), a list means any of (OR).

        Keys: ``split``, ``price_min``/``price_max`` (inclusive; products without a
        price never match) and any attribute name. An attribute no product has
        simply matches nothing; malformed values raise ValueError.
        """
        if not isinstance(where, Mapping):
            raise ValueError(f"where must be a dict of field -> value(s), got {type(where).__name__}")  # noqa: TRY004
        searcher = self._searcher
        mask = np.ones(0 if searcher is None else searcher.n_rows, dtype=bool)
        for key, value in where.items():
            _check_filter_key(key)
            if key in PRICE_KEYS:
                mask &= self._price_mask(key, value)
            else:
                mask &= np.isin(self._column(_json_path(key)), _filter_values(key, value))
        return mask

    def _price_mask(self, key: str, value: Any) -> np.ndarray:
        _check_price(key, value)
        prices = self._column("$.price")
        with np.errstate(invalid="ignore"):
            return prices >= value if key == "price_min" else prices <= value

    def _column(self, json_path: str) -> np.ndarray:
        """One JSON field of every indexed product, in the searcher's row order; cached until the rows change.

        Missing values become NaN for price and '' otherwise (stored attributes are never empty).
        """
        if json_path not in self._columns:
            rows = self._conn.execute(
                "SELECT v.id, json_extract(p.json, ?) FROM vectors v JOIN products p ON p.id = v.id ORDER BY v.id",
                (json_path,),
            ).fetchall()
            values = _column_values(json_path, [r[1] for r in rows])
            searcher = self._searcher
            if isinstance(searcher, FaissIVFSearch):  # rows are slots, not id order
                column = _resize_column(_column_values(json_path, []), searcher.n_rows, json_path)
                if values.dtype.kind == "U" and values.dtype.itemsize > column.dtype.itemsize:
                    column = column.astype(values.dtype)
                column[searcher.rows_of([r[0] for r in rows])] = values
            else:  # ExactSearch rows are the vectors in id order, as selected here
                column = values
            self._columns[json_path] = column
        return self._columns[json_path]


def _json_path(key: str) -> str:
    return "$.split" if key == "split" else f'$.attributes."{key}"'


def _check_filter_key(key: Any) -> None:
    if not isinstance(key, str) or not key or '"' in key:
        raise ValueError(f"filter field {key!r} must be a non-empty string without quotes")


def _check_price(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"filter {key} must be a finite number, got {value!r}")


def _column_values(json_path: str, raw: Sequence[Any]) -> np.ndarray:
    if json_path == "$.price":
        return np.array([np.nan if r is None else float(r) for r in raw], dtype=np.float64)
    return np.array(["" if r is None else str(r) for r in raw], dtype=str)


def _resize_column(column: np.ndarray, n_rows: int, json_path: str) -> np.ndarray:
    """The column padded (NaN / '') or cut to ``n_rows``."""
    if len(column) >= n_rows:
        return column[:n_rows].copy()
    pad = np.full(n_rows - len(column), np.nan if json_path == "$.price" else "", dtype=column.dtype)
    return np.concatenate([column, pad])


def _filter_sql(where: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """``where`` as an SQL condition on ``products p``, with the same meaning as the row mask."""
    if not isinstance(where, Mapping):
        raise ValueError(f"where must be a dict of field -> value(s), got {type(where).__name__}")  # noqa: TRY004
    clauses, params = [], []
    for key, value in where.items():
        _check_filter_key(key)
        if key in PRICE_KEYS:
            _check_price(key, value)
            clauses.append(f"json_extract(p.json, '$.price') {'>=' if key == 'price_min' else '<='} ?")
            params.append(value)
        else:
            values = _filter_values(key, value)
            clauses.append(f"CAST(json_extract(p.json, ?) AS TEXT) IN ({','.join('?' * len(values))})")
            params += [_json_path(key), *values]
    return "".join(f" AND {c}" for c in clauses), params


def _filter_values(key: str, value: Any) -> list[str]:
    """A filter's accepted values as stripped strings (stored attributes are stripped too)."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple, set, frozenset)) or not values:
        raise ValueError(f"filter {key!r} must be a string or a non-empty list of strings, got {value!r}")
    cleaned = []
    for item in values:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"filter {key!r} has a value {item!r} that is not a non-empty string")
        cleaned.append(item.strip())
    return cleaned

