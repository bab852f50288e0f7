"""Decode catalogue photos ahead of the image tower, in worker processes when that pays.

Ingest has three stages: decode + letterbox (PIL, per file), encode (the
tower, per batch) and writing the results. Decoding runs in a pool of worker
processes (or, for small jobs, one background thread) that hands back ready
uint8 ``(size, size, 3)`` arrays in input order, a few batches ahead of the
encoder, so the main process only stacks, normalises and encodes, and the
slowest stage sets the pace.

Start method: ``spawn``. The parent has imported torch and started ONNX
Runtime's and torch's thread pools; a ``fork``ed child inherits their locks
in whatever state they were in, which is the classic torch + fork deadlock
(and Python 3.12+ warns about forking a threaded process). A spawned worker
is a fresh interpreter that imports only ``modalens.catalog.images`` (PIL and
numpy: about 0.2 s, 35 MB), and the pool is kept for the life of the process,
so the start-up is paid once, not per call. Measured on the 2-core dev box
(first result after starting the pool): fork 0.04 s, spawn 0.24 s,
forkserver 0.31 s. As with any multiprocessing code, a script that ingests
with workers needs the ``if __name__ == "__main__":`` guard; ``workers=0``
decodes in-process.

A worker never raises for a bad file: each image comes back as pixels or as
the reason it failed. If a worker process dies (a decoder crash, the OOM
killer), the images it held are decoded again one by one in a fresh pool, so
only the culprit is reported as failed; if no pool can be started at all,
decoding falls back to a thread with a warning. No batch is ever lost.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import CancelledError, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

import numpy as np

from ..catalog.images import ImageView, load_letterboxed_many

#: How worker processes are started (see the module docstring for why not fork).
START_METHOD = "spawn"
#: Environment variable that fixes the number of decoding processes (0: decode in-process).
WORKERS_ENV = "MODALENS_DECODE_WORKERS"
#: Fewer images than this decode in-process unless a pool is already running: small jobs never pay for start-up.
MIN_IMAGES_FOR_WORKERS = 64
#: Decoding is a small share of the work next to the tower; more workers than this only steal the encoder's cores.
MAX_WORKERS = 4
#: Below this many cores, decoding runs in one background thread: measured on the 2-core dev box
#: (benchmarks/ingest.py, quiet), a decode process only competed with the encoder's threads
#: (KAGL 224 px: thread 147 products/s, process 133; 1500 px JPEGs: 86.7 vs 86.5).
MIN_CORES_FOR_WORKERS = 4
#: Seconds a new pool may take to answer its first (empty) task before decoding falls back to a thread.
START_TIMEOUT = 60.0
#: Images per task sent to a worker: large enough to amortise the round trip, small enough to keep the order tight.
CHUNK = 8

_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


class DecodedImage(NamedTuple):
    """One photo from the decoder: ``pixels`` (uint8, size × size × 3) or the ``error`` that says why not."""

    position: int
    pixels: np.ndarray | None
    error: str | None


def default_workers(n_images: int) -> int:
    """Worker processes for decoding ``n_images``: one core is left to the encoder, and small jobs decode in-process.

    0 (one background decode thread) below :data:`MIN_CORES_FOR_WORKERS` cores, inside a worker process (no pools of pools),
    and for fewer than :data:`MIN_IMAGES_FOR_WORKERS` images when no pool is
    running yet (a running pool is free to use). ``$MODALENS_DECODE_WORKERS``
    overrides the choice (0: always in-process).
    """
    _refuse_while_bootstrapping()
    if multiprocessing.parent_process() is not None:
        return 0
    requested = os.environ.get(WORKERS_ENV, "").strip()
    if requested:
        if not requested.isdigit():
            raise ValueError(f"${WORKERS_ENV} must be a whole number of decoding processes (0: in-process), not {requested!r}")
        return int(requested)
    cores = usable_cores()
    if cores < MIN_CORES_FOR_WORKERS:
        return 0
    workers = min(cores - 1, MAX_WORKERS)
    if n_images < MIN_IMAGES_FOR_WORKERS and workers not in _pools:
        return 0
    return workers


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, which a container or ``taskset`` narrows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _refuse_while_bootstrapping() -> None:
    """In a spawned child re-running an unguarded main script, stop before it ingests everything a second time.

    The parent then sees its new pool fail to start and decodes in a thread.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError("modalens: image ingest started while a worker process was starting; guard the script with `if __name__ == '__main__':`")


def decode_in_order(
    sources: Sequence[str],
    size: int,
    *,
    workers: int = 0,
    draft: bool = True,
    view: ImageView | None = None,
    ahead: int = 128,
) -> Iterator[DecodedImage]:
    """Decode and letterbox every source to ``size``, yielding them in input order, up to ``ahead`` images ahead.

    ``workers`` > 0 decodes in that many processes (``view`` must then be
    picklable, i.e. a module-level function); 0 decodes in one background
    thread, which still overlaps with the caller's encoding.
    """
    chunks = [list(range(j, min(j + CHUNK, len(sources)))) for j in range(0, len(sources), CHUNK)]

    def task(chunk: list[int]) -> tuple[Callable[..., list], tuple]:
        return load_letterboxed_many, ([sources[i] for i in chunk], size, draft, view)

    executor, owned = _executor(workers)
    try:
        yield from _ordered(executor, chunks, task, max(1, ahead // CHUNK), workers, describe=sources.__getitem__)
    finally:
        if owned:
            executor.shutdown(wait=False, cancel_futures=True)


def _executor(workers: int) -> tuple[Executor, bool]:
    """The shared process pool for ``workers`` (started on first use), or a private thread; ``owned`` says who shuts it."""
    if workers > 0:
        try:
            return _process_pool(workers), False
        except (OSError, RuntimeError, BrokenProcessPool, FutureTimeout) as exc:  # no processes here: a thread, not a failed run
            _warn_fallback(exc)
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="modalens-decode"), True


def _process_pool(workers: int) -> ProcessPoolExecutor:
    """The running pool of ``workers`` processes, or a new one that has answered an empty task (else it raises)."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = _start_pool(workers)
        return pool


def _start_pool(workers: int) -> ProcessPoolExecutor:
    """A new pool of ``workers`` spawned processes that has answered an empty task (else it raises)."""
    context = multiprocessing.get_context(START_METHOD)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init)
    try:
        pool.submit(load_letterboxed_many, [], 1).result(timeout=START_TIMEOUT)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    return pool


def _worker_init() -> None:
    """In each worker: leave Ctrl-C to the parent, and exit when the parent dies (even by SIGKILL), never orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True, name="modalens-parent-watch").start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _discard_pool(workers: int, pool: Executor | None = None) -> None:
    """Forget and stop the shared pool for ``workers``; with ``pool``, only if that is still the shared one
    (another thread may already have replaced a broken pool with a healthy one)."""
    with _pools_lock:
        current = _pools.get(workers)
        if current is None or (pool is not None and current is not pool):
            return
        del _pools[workers]
    current.shutdown(wait=False, cancel_futures=True)


def shutdown_pools() -> None:
    """Stop every decoding worker now (they also stop at interpreter exit)."""
    for workers in list(_pools):
        _discard_pool(workers)


def _warn_fallback(exc: BaseException) -> None:
    warnings.warn(f"image decoding falls back to one thread: cannot start worker processes ({type(exc).__name__}: {exc})", RuntimeWarning, stacklevel=3)


def _ordered(
    executor: Executor,
    chunks: list[list[int]],
    task: Callable[[list[int]], tuple[Callable[..., list], tuple]],
    in_flight: int,
    workers: int,
    describe: Callable[[int], str],
) -> Iterator[DecodedImage]:
    """Keep ``in_flight`` chunks submitted, yield results in order; a dead worker's chunks are redone one image at a time.

    ``task(chunk)`` gives the function and arguments that decode a chunk of
    positions; ``describe(position)`` names an image in an error message.
    """
    waiting = iter(chunks)
    pending: deque[tuple[list[int], Future]] = deque()

    def submit_next() -> None:
        chunk = next(waiting, None)
        if chunk is not None:
            fn, args = task(chunk)
            try:
                future = executor.submit(fn, *args)
            except RuntimeError as exc:  # the pool broke while earlier chunks were still being consumed
                future = Future()
                future.set_exception(BrokenProcessPool(str(exc)))
            pending.append((chunk, future))

    try:
        for _ in range(in_flight):
            submit_next()
        while pending:
            chunk, future = pending.popleft()
            try:
                results = future.result()
            except (BrokenProcessPool, CancelledError):
                # Every chunk in flight died with the pool (or another thread discarded it after a crash):
                # redo them all in isolation, then carry on in a new pool.
                if not workers:
                    raise
                lost = [chunk] + [c for c, _ in pending]
                pending.clear()
                _discard_pool(workers, executor)
                for redo in lost:
                    yield from _isolated(redo, task, describe)
                executor = _restarted(workers)
                for _ in range(in_flight):
                    submit_next()
                continue
            submit_next()
            for i, (pixels, error) in zip(chunk, results):
                yield DecodedImage(i, pixels, error)
    finally:
        for _, future in pending:
            future.cancel()


def _restarted(workers: int) -> Executor:
    """The shared pool again after a crash, or (when no process can start now, e.g. right after an OOM kill)
    one decoding thread for the rest of the job."""
    try:
        return _process_pool(workers)
    except (OSError, RuntimeError, FutureTimeout) as exc:  # BrokenProcessPool is a RuntimeError
        _warn_fallback(exc)
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="modalens-decode")


def _isolated(chunk: list[int], task: Callable[[list[int]], tuple[Callable[..., list], tuple]], describe: Callable[[int], str]) -> Iterator[DecodedImage]:
    """Decode each image of ``chunk`` alone in a private one-process pool, so a file that kills its worker fails alone.

    Private, not the shared pool: another thread's images in flight there must
    not be blamed for (or cancelled by) this chunk's culprit.
    """
    pool: ProcessPoolExecutor | None = None
    try:
        for i in chunk:
            fn, args = task([i])
            try:
                pool = pool or _start_pool(1)
            except (OSError, RuntimeError, FutureTimeout) as exc:
                yield DecodedImage(i, None, f"{describe(i)}: not decoded, no decoder process could be started after a crash ({exc}); index again to retry")
                continue
            try:
                (pixels, error), = pool.submit(fn, *args).result()
            except BrokenProcessPool as exc:
                pool.shutdown(wait=False, cancel_futures=True)
                pool = None
                pixels, error = None, f"{describe(i)}: the image decoder process died on this file ({exc})"
            yield DecodedImage(i, pixels, error)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def batches_of(decoded: Iterable[DecodedImage], batch_size: int, on_failure: Callable[[DecodedImage], None]) -> Iterator[list[DecodedImage]]:
    """Group the decoded images into batches of ``batch_size``; failures go to ``on_failure`` and take no place in a batch."""
    batch: list[DecodedImage] = []
    for item in decoded:
        if item.error is not None:
            on_failure(item)
            continue
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
