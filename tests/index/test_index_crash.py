"""A build killed at any moment leaves the index at its last committed batch, and resumes.

Each test runs a real build in a child Python process and kills it hard
(os._exit, SIGKILL from inside an open transaction, SIGKILL from outside),
then reopens the index in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from index_helpers import fake_embed, fake_vector, make_products, pid

from modalens.index import CatalogIndex, build_index, product_content_key

SRC = Path(__file__).resolve().parents[2] / "src"
TESTS = Path(__file__).resolve().parent
N_PRODUCTS, BATCH, COMMITTED_BATCHES = 100, 10, 3

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

CHILD = """
import os, signal, sys, time
from pathlib import Path
from index_helpers import fake_embed, make_products
from modalens.index import CatalogIndex, build_index, product_content_key

index_dir, mode, marker = sys.argv[1], sys.argv[2], Path(sys.argv[3])
N_PRODUCTS, BATCH, COMMITTED = {n}, {batch}, {committed}
calls = 0

def embed(products):
    global calls
    calls += 1
    marker.write_text(str(calls))
    if calls == COMMITTED + 1 and mode == "exit":
        os._exit(137)
    if calls == COMMITTED + 1 and mode == "external":
        time.sleep(60)  # the parent kills us here
    return fake_embed(products)

class KillInTransaction(CatalogIndex):
    def _write_batch(self, conn, products, matrix, keys):
        super()._write_batch(conn, products, matrix, keys)  # rows written, not committed
        if calls == COMMITTED + 1:
            os.kill(os.getpid(), signal.SIGKILL)

cls = KillInTransaction if mode == "in_transaction" else CatalogIndex
index = cls.create(index_dir, model="test-model", dim=16)
build_index(index, make_products(N_PRODUCTS), embed, batch_size=BATCH,
            content_key=product_content_key, progress=False)
"""


def start_child(tmp_path: Path, mode: str) -> tuple[subprocess.Popen, Path]:
    script = textwrap.dedent(CHILD).format(n=N_PRODUCTS, batch=BATCH, committed=COMMITTED_BATCHES)
    marker = tmp_path / "calls.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "idx"), mode, str(marker)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return proc, marker


def wait_for_calls(proc: subprocess.Popen, marker: Path, calls: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text() == str(calls):
            return
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.communicate()[1].decode()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("child never reached the batch to kill")


def check_committed_and_resume(tmp_path: Path) -> None:
    """Exactly the committed batches, searchable; a second build adds only the rest."""
    committed = [pid(i) for i in range(COMMITTED_BATCHES * BATCH)]
    with CatalogIndex.open(tmp_path / "idx", model="test-model") as index:
        assert index.ids() == committed
        assert set(index.content_keys()) == set(committed)
        top = index.search(fake_vector(pid(5)), k=1)[0][0]
        assert top.id == pid(5) and top.score == pytest.approx(1.0, abs=1e-5)

        embedded: list[str] = []

        def embed(products):
            embedded.extend(p.id for p in products)
            return fake_embed(products)

        products = make_products(N_PRODUCTS)
        report = build_index(index, products, embed, batch_size=BATCH, content_key=product_content_key, progress=False)
        assert embedded == [p.id for p in products[len(committed) :]]
        assert (report.added, report.skipped_unchanged, report.failed) == (
            N_PRODUCTS - len(committed),
            len(committed),
            0,
        )
        assert index.ids() == [p.id for p in products]
        queries = np.stack([fake_vector(pid(i)) for i in (0, 42, 99)])
        assert [hits[0].id for hits in index.search(queries, k=3)] == [pid(0), pid(42), pid(99)]


@pytest.mark.timeout(60)
def test_exit_inside_embedder_keeps_committed_batches(tmp_path):
    proc, _ = start_child(tmp_path, "exit")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 137, err.decode()
    check_committed_and_resume(tmp_path)


@pytest.mark.timeout(60)
def test_sigkill_inside_open_transaction_rolls_back_that_batch(tmp_path):
    proc, _ = start_child(tmp_path, "in_transaction")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    check_committed_and_resume(tmp_path)


@pytest.mark.timeout(60)
def test_external_sigkill_mid_build(tmp_path):
    proc, marker = start_child(tmp_path, "external")
    wait_for_calls(proc, marker, COMMITTED_BATCHES + 1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    check_committed_and_resume(tmp_path)
