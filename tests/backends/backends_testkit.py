"""Inputs shared by the back-end tests."""

from __future__ import annotations

from pathlib import Path

PHOTOS = sorted((Path(__file__).parents[1] / "fixtures" / "mini-catalog" / "images").glob("*.jpg"))
#: Varied lengths: empty, one letter, emoji and accents, longer than max_length (truncated).
TEXTS = [
    "a red cotton t-shirt for men",
    "",
    "a",
    "Women's black leather ankle boots with a block heel, perfect for autumn evenings",
    "émoji 👗 dress — 100% silk",
    "blue denim jeans",
    "slim fit stretch shirt with a button-down collar " * 12,
]
TOLERANCE = 1e-4


def kill_when_ready(args: list[str], ready: Path, log: Path, *, timeout: float = 240) -> int:
    """Run ``args`` (a Python child with ``src`` importable) until it creates ``ready``, then SIGKILL it.

    The child writes ``ready`` at the moment worth interrupting (mid-write, before a rename);
    its output goes to ``log`` so a child that dies early shows why. Returns its exit status.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    with open(log, "w") as out:
        child = subprocess.Popen([sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not ready.exists():
            assert child.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
    return child.returncode
