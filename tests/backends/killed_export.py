"""A child process for the export-cache tests: starts a real ``cached_export`` and stops at a chosen moment,
so the test can SIGKILL it there.

    python killed_export.py ROOT MOMENT READY_FILE

MOMENT ``mid-write``: the ONNX file is half written (a real export, cut in two); ``before-publish``: the export
and its manifest are complete in the temporary folder but not yet moved into place. At that moment the
process writes READY_FILE and sleeps until it is killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from tiny_tower import TinyTower  # noqa: E402

from modalens.backends.onnx import cached_export  # noqa: E402

#: The module whose helpers cached_export calls (wherever it lives after a reorganisation).
cache_module = sys.modules[cached_export.__module__]


def main(root: str, moment: str, ready: str) -> None:
    def wait_for_the_kill() -> None:
        Path(ready).write_text(moment)
        time.sleep(600)
        raise SystemExit("not killed")

    if moment == "mid-write":
        real_export = cache_module.export_image_tower

        def half_written(tower, path, **kwargs):
            entry = real_export(tower, path, **kwargs)
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])  # only half of it reached the disk...
            wait_for_the_kill()  # ...when the process died
            return entry

        cache_module.export_image_tower = half_written
    elif moment == "before-publish":
        real_manifest = cache_module.write_manifest

        def then_stop(*args, **kwargs):
            real_manifest(*args, **kwargs)
            wait_for_the_kill()

        cache_module.write_manifest = then_stop
    else:
        raise SystemExit(f"unknown moment {moment!r}")
    cached_export(TinyTower(), "image_tower", root=root, exporter="torchscript", progress=False)
    raise SystemExit("the export finished without reaching the kill point")


if __name__ == "__main__":
    main(*sys.argv[1:4])
