"""The SQLite file: its tables, opening it safely, and migrating older formats in place.

Kept apart from what the index does with the tables so the on-disk format
(and the one transaction that upgrades it) can be read in one place. Every
statement that creates or alters a table is here; the other parts only read
and write rows.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import uuid
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from modalens.catalog.schema import Product
from modalens.index.base import IndexNotFoundError, IndexStoreError
from modalens.index.keyword import _keyword_text

INDEX_FILE = "index.sqlite"
FORMAT_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY, json TEXT NOT NULL, content_key TEXT NOT NULL, ord INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (id TEXT PRIMARY KEY, vec BLOB NOT NULL, gen INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS failures (id TEXT PRIMARY KEY, reason TEXT NOT NULL, time TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS products_ord ON products(ord);
"""
#: Format 2: the generation that wrote each vector, a log of deleted ids, keyword (FTS5) rows keyed by ``ord``.
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS removed (id TEXT PRIMARY KEY, gen INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS vectors_gen ON vectors(gen);
CREATE INDEX IF NOT EXISTS removed_gen ON removed(gen);
"""
#: Scene photos (lookbook pages, street photos, flat-lays) beside the products: each scene's instance embeddings
#: (the queries of the model's instance decoder that hold a product), apart from the products' own rows, so product
#: search, filters and keywords never see them. Made by the first scene write (an index without scenes has none).
_SCENES_SCHEMA = """
CREATE TABLE IF NOT EXISTS scenes (
    id TEXT PRIMARY KEY, json TEXT NOT NULL, content_key TEXT NOT NULL, ord INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS scene_instances (
    scene_id TEXT NOT NULL, query INTEGER NOT NULL, objectness REAL NOT NULL, vec BLOB NOT NULL, attention BLOB NOT NULL,
    PRIMARY KEY (scene_id, query));
CREATE TABLE IF NOT EXISTS scene_failures (id TEXT PRIMARY KEY, reason TEXT NOT NULL, time TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS scenes_ord ON scenes(ord);
"""
_FTS_SCHEMA = "CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5(text, tokenize = 'unicode61 remove_diacritics 2')"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _modalens_version() -> str:
    """Recorded in meta so an index can be traced to the code that wrote it."""
    try:
        return version("modalens")
    except PackageNotFoundError:  # not installed (e.g. run from a source tree)
        return "unknown"


def _locate(path: Path) -> Path:
    """The database file for an index directory (or the file itself), or a helpful error."""
    db_path = path if path.suffix == ".sqlite" else path / INDEX_FILE
    if not db_path.is_file():
        where = "directory does not exist" if not db_path.parent.exists() else f"no {INDEX_FILE} in it"
        raise IndexNotFoundError(
            f"no modalens index at {path} ({where}); build one first with `modalens index CATALOGUE`"
        )
    return db_path


def _connect(db_path: Path, *, create: bool) -> sqlite3.Connection:
    """Autocommit connection (transactions are explicit) in WAL mode with full fsync."""
    mode = "rwc" if create else "rw"
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode={mode}", uri=True, isolation_level=None, timeout=30.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise IndexStoreError(f"{db_path} is not a modalens index ({exc})") from exc
    return conn


def _initialise(conn: sqlite3.Connection, *, model: str, dim: int) -> None:
    """Tables and meta in one transaction, so a killed create leaves no half-made index.

    Existing meta is kept untouched (the caller then checks model and dim).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        meta = {
            "model": model,
            "dim": str(dim),
            "dtype": "float32",
            "created": _now(),
            "modalens_version": _modalens_version(),
            "format": str(FORMAT_VERSION),
            "generation": "0",
        }
        conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _ensure_scene_tables(conn: sqlite3.Connection) -> None:
    """The scene tables, inside the caller's write transaction (a no-op once they exist)."""
    for statement in filter(str.strip, _SCENES_SCHEMA.split(";")):
        conn.execute(statement)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


@functools.cache
def _fts5_available() -> bool:
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        try:
            conn.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
        except sqlite3.OperationalError:
            return False
    return True


def _migrate(conn: sqlite3.Connection, db_path: Path) -> None:
    """Bring an index to format 2 in one transaction (a no-op, without a write lock, when it is there).

    Format 2 adds the generation column on vectors, the deletion log, the
    keyword table (filled from the stored products) and meta uuid/backend.
    A file without modalens tables is left for the meta check to reject.
    """

    def needed() -> bool:
        if not (_has_table(conn, "meta") and _has_table(conn, "vectors")):
            return False
        columns = {r[1] for r in conn.execute("PRAGMA table_info(vectors)")}
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return (
            "gen" not in columns
            or not _has_table(conn, "removed")
            or (_fts5_available() and not _has_table(conn, "products_fts"))
            or meta.get("format") != str(FORMAT_VERSION)
            or not {"uuid", "backend", "removed_floor"} <= meta.keys()
        )

    try:
        if not needed():
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if needed():  # another process may have migrated meanwhile
                if "gen" not in {r[1] for r in conn.execute("PRAGMA table_info(vectors)")}:
                    conn.execute("ALTER TABLE vectors ADD COLUMN gen INTEGER NOT NULL DEFAULT 0")
                for statement in filter(str.strip, _SCHEMA_V2.split(";")):
                    conn.execute(statement)
                if _fts5_available() and not _has_table(conn, "products_fts"):
                    conn.execute(_FTS_SCHEMA)
                    rows = conn.execute("SELECT ord, json FROM products").fetchall()
                    conn.executemany(
                        "INSERT INTO products_fts (rowid, text) VALUES (?, ?)",
                        [(ord_, _keyword_text(Product.from_dict(json.loads(text)))) for ord_, text in rows],
                    )
                defaults = {"uuid": uuid.uuid4().hex, "backend": "auto", "removed_floor": "0"}
                conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", defaults.items())
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('format', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(FORMAT_VERSION),),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.DatabaseError as exc:
        raise IndexStoreError(f"{db_path} is not a usable modalens index ({exc})") from exc

