"""kill -9 of a live server: every acknowledged product survives, and an interrupted bulk ingest resumes."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from modalens.catalog import read_catalog
from modalens.search import SearchEngine

KEY = "kill-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, index_dir: Path, ingest_root: Path | None = None) -> None:
        self.index_dir = index_dir
        self.ingest_root = ingest_root
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> "Server":
        port = free_port()
        env = {**os.environ, "MODALENS_API_KEYS": KEY}
        cmd = [sys.executable, "-m", "modalens", "serve", "--index", str(self.index_dir), "--port", str(port)]
        if self.ingest_root is not None:
            cmd += ["--ingest-root", str(self.ingest_root)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                return self
            except OSError:
                assert self.proc.poll() is None, "server exited during start-up"
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")


def multipart(fields: dict[str, str], files: dict[str, Path]) -> tuple[bytes, dict]:
    boundary = "modalens-test-boundary"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, path in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{path.name}"\r\nContent-Type: image/jpeg\r\n\r\n'
        parts.append(head.encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}", "X-API-Key": KEY}


@pytest.fixture()
def index_dir(mini_catalog, tmp_path) -> Path:
    folder = tmp_path / "index"
    engine = SearchEngine(folder, progress=False)
    engine.build(read_catalog(mini_catalog))
    engine.close()
    return folder


def test_acknowledged_products_survive_kill_9(index_dir, mini_catalog):
    photos = [p.image for p in read_catalog(mini_catalog).products[:6]]
    server = Server(index_dir).start()
    acknowledged = []
    for i, photo in enumerate(photos):
        body, headers = multipart({"product": json.dumps({"title": f"acked product {i}"})}, {"image": Path(photo)})
        status, _ = server.call("PUT", f"/api/products/acked-{i}", body, headers)
        assert status == 200
        acknowledged.append(f"acked-{i}")
    server.kill()  # no shutdown hook runs

    server = Server(index_dir).start()
    try:
        for product_id in acknowledged:
            status, product = server.call("GET", f"/api/products/{product_id}")
            assert status == 200 and product["title"].startswith("acked product")
        assert server.call("GET", "/health")[1]["products"] == 40 + len(acknowledged)
        status, found = server.call("POST", "/api/search", json.dumps({"q": "acked product 3", "k": 50}).encode(), {"Content-Type": "application/json"})
        assert status == 200 and set(acknowledged) <= {r["id"] for r in found["results"]}
    finally:
        server.kill()


def big_catalogue(mini_catalog: Path, folder: Path, copies: int) -> Path:
    """Copies of the fixture photos re-encoded at other qualities: new bytes, so every one is really embedded."""
    products = read_catalog(mini_catalog).products
    (folder / "images").mkdir(parents=True)
    path = folder / "big.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "image", "title", "articleType"])
        for c in range(copies):
            for p in products:
                image = folder / "images" / f"{p.id}-{c}.jpg"
                Image.open(p.image).save(image, quality=60 + c)
                writer.writerow([f"{p.id}-{c}", f"images/{image.name}", p.title, p.get("article_type")])
    return path


def test_bulk_ingest_killed_midway_resumes(index_dir, mini_catalog, tmp_path):
    catalogue = big_catalogue(mini_catalog, tmp_path / "big", copies=6)  # 240 products, 64 per committed batch
    server = Server(index_dir, ingest_root=tmp_path).start()
    status, job = server.call("POST", "/api/ingest", json.dumps({"source": str(catalogue)}).encode(), {"Content-Type": "application/json", "X-API-Key": KEY})
    assert status == 202
    deadline = time.time() + 300
    while time.time() < deadline:
        progress = server.call("GET", f"/api/jobs/{job['id']}")[1]
        if progress["done"] >= 64:
            break
        time.sleep(0.05)
    server.kill()
    assert 64 <= progress["done"] < 240, "the kill should land mid-ingest"

    server = Server(index_dir, ingest_root=tmp_path).start()
    try:
        indexed = server.call("GET", "/health")[1]["products"] - 40
        assert indexed >= progress["added"] and indexed % 64 == 0, "only whole committed batches, none lost"
        status, job = server.call("POST", "/api/ingest", json.dumps({"source": str(catalogue)}).encode(), {"Content-Type": "application/json", "X-API-Key": KEY})
        while (progress := server.call("GET", f"/api/jobs/{job['id']}")[1])["state"] not in ("done", "failed"):
            time.sleep(0.2)
        assert progress["state"] == "done"
        assert (progress["unchanged"], progress["added"]) == (indexed, 240 - indexed)
        assert server.call("GET", "/health")[1]["products"] == 280
    finally:
        server.kill()
