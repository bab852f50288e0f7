"""Catalogues: read any product source into one ``Catalog`` of ``Product`` records, and decode its images safely."""

from .images import ImageError, image_sha1, load_image
from .readers import (
    FASHION_MNIST_CLASSES,
    default_cache_dir,
    read_catalog,
    read_fashion_mnist,
    read_image_folder,
    read_kagl,
    read_kagl_all,
    read_table,
    write_jsonl,
)
from .schema import KNOWN_ATTRIBUTES, MAX_ID_LENGTH, Catalog, CatalogError, Product, RowError, check_id

__all__ = [
    "FASHION_MNIST_CLASSES",
    "KNOWN_ATTRIBUTES",
    "MAX_ID_LENGTH",
    "Catalog",
    "CatalogError",
    "ImageError",
    "Product",
    "RowError",
    "check_id",
    "default_cache_dir",
    "image_sha1",
    "load_image",
    "read_catalog",
    "read_fashion_mnist",
    "read_image_folder",
    "read_kagl",
    "read_kagl_all",
    "read_table",
    "write_jsonl",
]
