"""Batch embedding on a local Ray cluster (2 CPUs): the embedded path's vectors, shards, and a resumed job."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modalens.catalog import read_catalog
from modalens.search import SearchEngine

pytest.importorskip("ray", reason="the Ray executor needs modalens[ray]")
pytest.importorskip("pyarrow", reason="embedding shards are Parquet (modalens[ray] brings pyarrow)")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU cluster started by `ray start` in its own process, joined by address (as `--address` does).

    Started from inside the test process (``ray.init()`` with no address), the raylet is forked from a process
    that already holds gRPC threads (the Milvus tests' client, the ONNX sessions) and failed to register within
    Ray's fixed 30 s about one run in two; a clean process starts it every time.
    """
    import ray

    command = [str(Path(sys.executable).with_name("ray"))]
    started = subprocess.run(
        [*command, "start", "--head", "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if started.returncode != 0:
        subprocess.run([*command, "stop", "--force"], capture_output=True, timeout=120)
        pytest.fail(f"ray start failed: {started.stderr[-2000:]}")
    try:
        ray.init(address="auto", log_to_driver=False, configure_logging=False)
        yield
    finally:
        ray.shutdown()
        subprocess.run([*command, "stop", "--force"], capture_output=True, timeout=120)


def stored_vectors(index_dir) -> dict[str, np.ndarray]:
    with sqlite3.connect(index_dir / "index.sqlite") as conn:
        return {pid: np.frombuffer(blob, dtype="<f4") for pid, blob in conn.execute("SELECT id, vec FROM vectors")}


def test_ray_job_gives_the_embedded_paths_vectors_and_resumes(ray_cluster, mini_catalog, tmp_path, monkeypatch):
    """40 real photos in 3 shards on 2 actors: the same vectors as the embedded path to 1e-6, each worker computing
    its features anew (a feature cache of its own); a shard lost to a kill is the only one embedded again."""
    catalog = read_catalog(mini_catalog)
    monkeypatch.setenv("MODALENS_CACHE", str(tmp_path / "cache-local"))
    local = SearchEngine(tmp_path / "local", progress=False)
    assert local.build(catalog).added == 40
    local.close()

    monkeypatch.setenv("MODALENS_CACHE", str(tmp_path / "cache-ray"))  # the workers get this one: nothing cached
    options = {"shards": tmp_path / "shards", "shard_size": 16, "workers": 2}
    engine = SearchEngine(tmp_path / "ray", progress=False)
    assert engine.build(catalog, executor="ray", ray=options).added == 40
    engine.close()
    assert any(path.is_file() for path in (tmp_path / "cache-ray").rglob("*"))  # the workers computed features there
    expected, got = stored_vectors(tmp_path / "local"), stored_vectors(tmp_path / "ray")
    assert sorted(got) == sorted(expected) and len(got) == 40
    assert max(float(np.abs(got[pid] - expected[pid]).max()) for pid in expected) <= 1e-6

    shards = sorted((tmp_path / "shards").glob("shard-*.parquet"))
    assert len(shards) == 3
    before = {path: path.stat().st_mtime_ns for path in shards}
    shards[1].unlink()  # what a job killed before its second shard was written leaves
    shutil.rmtree(tmp_path / "ray")
    engine = SearchEngine(tmp_path / "ray", progress=False)
    assert engine.build(catalog, executor="ray", ray=options).added == 40
    engine.close()
    assert [path.stat().st_mtime_ns == before[path] for path in shards] == [True, False, True]
    again = stored_vectors(tmp_path / "ray")
    assert sorted(again) == sorted(expected)  # exactly one vector per product
    assert max(float(np.abs(again[pid] - expected[pid]).max()) for pid in expected) <= 1e-6
