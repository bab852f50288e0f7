"""kill -9 while writing products and the ANN cache: every acknowledged product stays searchable via the ANN path.

A child process adds batches (and deletes a product now and then) to an index
that searches with faiss, writing the ANN cache file after every few batches,
and reports each acknowledged batch in a marker file. It is killed with
SIGKILL from outside at an arbitrary moment, or from inside while it writes
the cache file or holds an open transaction. The parent then reopens the index.
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
from index_helpers import fake_vector, pid

from modalens.index import CatalogIndex
from modalens.index.store import ANN_FILE

pytest.importorskip("faiss", reason="the ANN back-end needs modalens[ann] (faiss-cpu)")
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

SRC = Path(__file__).resolve().parents[2] / "src"
TESTS = Path(__file__).resolve().parent
BATCH = 40

CHILD = """
import os, signal, sys
from pathlib import Path
import faiss
faiss.omp_set_num_threads(1)
from index_helpers import fake_embed, make_products, pid
from modalens.index import CatalogIndex, ann

index_dir, mode, marker = sys.argv[1], sys.argv[2], Path(sys.argv[3])
BATCH = {batch}
saves = 0

if mode == "in_save":  # die when the third cache file is written and synced, before it replaces the old one
    real_replace = os.replace
    def replace(src, dst):
        global saves
        saves += 1
        if saves == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
    ann.os.replace = replace

class KillInTransaction(CatalogIndex):
    def _write_batch(self, conn, products, matrix, keys):
        super()._write_batch(conn, products, matrix, keys)
        if mode == "in_transaction" and products[0].id == pid(8 * BATCH):
            os.kill(os.getpid(), signal.SIGKILL)

index = KillInTransaction.create(index_dir, model="test-model", dim=16, backend="faiss")
for batch in range(10_000):
    products = make_products((batch + 1) * BATCH)[batch * BATCH :]
    index.add(products, fake_embed(products).vectors, ["k"] * len(products))
    if batch % 2:
        index.delete([pid(batch * BATCH)])  # the first product of every odd batch
    marker.with_suffix(".tmp").write_text(str(batch + 1))  # acknowledged; renamed in whole, so a reader or a
    os.rename(marker.with_suffix(".tmp"), marker)  # kill never meets a half-written marker (os.replace is patched)
    if batch % 3 == 2:
        index.sync()  # catches up the ANN structure and writes its cache file
"""


def run_child(tmp_path: Path, mode: str) -> int:
    script = textwrap.dedent(CHILD).format(batch=BATCH)
    marker = tmp_path / "acknowledged.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "idx"), mode, str(marker)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if mode == "external":
        deadline = time.monotonic() + 30
        while not (marker.exists() and marker.read_text() and int(marker.read_text()) >= 10):
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "child too slow"
            time.sleep(0.01)
        time.sleep(0.05 + (os.getpid() % 7) / 100)  # land somewhere in the next writes
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    return int(marker.read_text())


def check_every_committed_product_found_by_ann(tmp_path: Path, acknowledged: int) -> None:
    deleted = {pid(b * BATCH) for b in range(acknowledged) if b % 2}
    expected = {pid(i) for i in range(acknowledged * BATCH)} - deleted
    with CatalogIndex.open(tmp_path / "idx", model="test-model") as index:
        committed = set(index.ids())
        assert expected <= committed  # nothing acknowledged was lost
        assert committed - expected <= {pid(i) for i in range(acknowledged * BATCH, (acknowledged + 1) * BATCH)}
        assert index.search_backend == "faiss-ivf"
        ids = sorted(committed)
        hits = index.search(np.stack([fake_vector(i) for i in ids]), k=1)
        assert [h[0].id for h in hits] == ids
        assert all(h[0].score == pytest.approx(1.0, abs=1e-5) for h in hits)
        assert not deleted & {h.id for h in index.search(np.stack([fake_vector(i) for i in deleted]), k=3)[0]}
        index.sync()  # writes the caught-up cache file
    assert not list((tmp_path / "idx").glob(f".{ANN_FILE}.tmp-*"))  # a killed writer's temporary file was cleared


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["external", "in_save", "in_transaction"])
def test_sigkill_while_writing_keeps_every_committed_product_searchable(tmp_path, mode):
    acknowledged = run_child(tmp_path, mode)
    assert acknowledged >= 8
    if mode == "in_save":
        assert (tmp_path / "idx" / ANN_FILE).exists()  # the previous cache file survived the kill
    check_every_committed_product_found_by_ann(tmp_path, acknowledged)
