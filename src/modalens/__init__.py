"""modalens: an open, reproducible fashion vision-language system.

The Python API (``docs/python.md``)::

    import modalens
    m = modalens.load()                                   # the default model, or a name / trained folder
    vectors = m.encode_images(["photo.jpg"])              # also PIL images; m.encode_text(["red dress"])
    m.zero_shot(["photo.jpg"], ["dress", "shirt", "shoes"])
    hits = modalens.Index("my-index").search("red dress", k=5)

Importing this package is cheap (no torch, no numpy): the names above are
imported on first use (PEP 562 ``__getattr__``), so ``modalens --help`` and
``import modalens`` stay quick.

Layout (one concern per subpackage):
    api         the Python face above: load, Model, Index
    catalog     products, catalogue readers, safe image decoding
    encoders    pretrained image/text towers behind a registry
    models      the dual encoder (towers + projection heads), configs and factory
    losses      contrastive objectives
    prompts     caption and zero-shot prompt templates
    recipes     training recipes (one per paper) on the shared parts
    evaluation  retrieval and zero-shot metrics
    index       the embedded on-disk catalogue index
    cli         the `modalens` command
"""

from __future__ import annotations

from .lazy import lazy_attributes

__version__ = "0.1.0"

#: Public names → the module that defines them, imported when a name is first used. (No import statement
#: names them, not even under TYPE_CHECKING: every module of the package imports this one, and
#: tests/test_import_graph.py would rightly read such an import as a circle.)
_LAZY = {
    "load": ".api",
    "Model": ".api",
    "Index": ".api",
    "Hit": ".index.base",
    "Product": ".catalog.schema",
    "DEFAULT_MODEL": ".models.factory",
}

__all__ = ["DEFAULT_MODEL", "Hit", "Index", "Model", "Product", "__version__", "load"]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
