"""The long-lived parts of the server: one model handle, a query engine on its own thread, and ingest jobs.

The model is one :class:`~modalens.models.ModelHandle` that every engine of the
server shares. Queries go through its query encoder: the PyTorch model, or,
when the settings name an ONNX export (``onnx_dir``), the export alone, so a
read-only server never imports torch. Tagging and writes load the PyTorch
model on first use.

SQLite connections belong to the thread that opened them, and two CPU cores
gain nothing from parallel queries, so every query and single-product write
runs on one dedicated thread (``run``). Bulk ingest runs on a job thread with
its own connection; SQLite's WAL lets it write while queries read, and the
query side picks up each committed batch on its next search.

A bulk ingest reads only inside the operator's ingest roots: the source itself
(checked, symlinks resolved, before the job is queued) and every photo the
catalogue names (a product whose photo lies outside is skipped and reported),
so a client can neither index nor serve other files of the server.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from ..catalog import read_catalog
from ..models import ModelHandle, load
from ..search import SearchEngine
from .settings import ServeSettings
from .validation import FILTER_FIELDS, check_ingest_source, under_roots

T = TypeVar("T")

INGEST_BATCH = 64
#: Problems a job keeps for its report (all are counted in ``skipped_rows``).
JOB_PROBLEMS = 20
#: Filter menus come first in this order; any other filterable attribute the products carry follows, by name.
FACET_ORDER = ("gender", "article_type", "colour", "brand", "season", "usage", "master_category", "sub_category", "category")
#: An attribute with more distinct values than this (or fewer than two) gets no menu: it would not help to choose.
MAX_FACET_VALUES = 60


@dataclass
class Job:
    """A bulk ingest: its progress is what the API reports; nothing here is needed to resume (the index is)."""

    id: str
    source: str
    state: str = "queued"  # queued → running → done | failed
    total: int = 0
    done: int = 0
    added: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped_rows: int = 0
    #: The first rows skipped and why (unreadable rows, photos outside the ingest roots).
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}


class Service:
    def __init__(self, settings: ServeSettings, handle: ModelHandle | None = None) -> None:
        """``handle`` shares a model already loaded (the CLI's indexing step, tests); else one is loaded from the settings."""
        self.settings = settings
        self.handle = handle if handle is not None else load(settings.model, settings.onnx_dir)
        if not self.handle.torch_free:
            self.handle.warm()  # queries need the model: load it now, not on the first request
        self._query_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modalens-query")
        self._job_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modalens-ingest")
        self.engine = self._engine()
        self.jobs: dict[str, Job] = {}
        self._facets: tuple[tuple[int, int], dict[str, Any]] | None = None
        self._jobs_lock = threading.Lock()

    def _engine(self) -> SearchEngine:
        """An engine on the shared handle (each thread needs its own SQLite connection, or Milvus client)."""
        return SearchEngine(self.settings.index_dir, self.handle, progress=False, store=self.settings.store)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the query thread without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._query_thread, lambda: fn(*args, **kwargs))

    def ensure_index(self) -> None:
        """Create the index if it does not exist yet, so a server can start empty and be filled through the API."""
        self.engine.ensure_index()

    def start_ingest(self, source: str) -> Job:
        """Queue a bulk ingest of ``source``, which must lie inside an ingest root (ForbiddenError otherwise)."""
        resolved = check_ingest_source(source, self.settings.ingest_roots)
        job = Job(id=uuid.uuid4().hex[:12], source=str(resolved))
        with self._jobs_lock:
            self.jobs[job.id] = job
        self._job_thread.submit(self._ingest, job)
        return job

    def _ingest(self, job: Job) -> None:
        engine = self._engine()
        try:
            job.state = "running"
            catalog = read_catalog(job.source)
            products, refused = self._inside_roots(catalog.products)
            job.total, job.skipped_rows = len(products), len(catalog.errors) + len(refused)
            job.problems = [str(e) for e in catalog.errors[:JOB_PROBLEMS]] + refused[:JOB_PROBLEMS]
            del job.problems[JOB_PROBLEMS:]
            for start in range(0, len(products), INGEST_BATCH):
                report = engine.build(products[start : start + INGEST_BATCH], batch_size=INGEST_BATCH)
                job.added += report.added
                job.unchanged += report.skipped_unchanged
                job.failed += report.failed
                job.done += report.total
            job.state = "done"
        except Exception as e:  # the job reports its error; the server keeps serving
            job.state, job.error = "failed", f"{type(e).__name__}: {e}"
        finally:
            job.finished = time.time()
            engine.close()

    def _inside_roots(self, products: list) -> tuple[list, list[str]]:
        """The products whose photos all lie inside the ingest roots, and a line for each one refused."""
        kept, refused = [], []
        for product in products:
            outside = next((image for image in product.images if under_roots(image, self.settings.ingest_roots) is None), None)
            if outside is None:
                kept.append(product)
            else:
                refused.append(f"{product.id}: photo {outside} lies outside the ingest roots")
        return kept, refused

    def facets(self) -> dict[str, Any]:
        """What the products can be filtered by, from the data: each filterable attribute with 2 to
        MAX_FACET_VALUES values (with counts), and the price range. Cached until the index changes."""
        index = self.engine.index
        generation = (index.meta["generation"], len(index))
        if self._facets is None or self._facets[0] != generation:
            counts = {name: values for name, values in index.attribute_values().items()
                      if name in FILTER_FIELDS and name != "split" and 2 <= len(values) <= MAX_FACET_VALUES}
            order = sorted(counts, key=lambda name: (FACET_ORDER.index(name) if name in FACET_ORDER else len(FACET_ORDER), name))
            price = index.price_range()
            self._facets = (generation, {
                "fields": [{"name": name, "values": [{"value": v, "count": n} for v, n in counts[name].items()]} for name in order],
                "price": None if price is None else {"min": price[0], "max": price[1], "count": price[2]},
                "products": generation[1],
            })
        return self._facets[1]

    def close(self) -> None:
        self._job_thread.shutdown(wait=False, cancel_futures=True)
        self._query_thread.submit(self.engine.close).result()
        self._query_thread.shutdown(wait=True)
