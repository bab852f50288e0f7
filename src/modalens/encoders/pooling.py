"""How a tower's feature map becomes its one vector: the pooling names and their sizes.

Torch-free, so an export's tower and the query path (``grounding``, the ONNX back-end) can read a model's
pooling without importing torch; ``encoders.base`` pools, ``encoders.colour`` computes the histogram.
"""

from __future__ import annotations

#: Levels per RGB channel of ``mean+colour``'s histogram: 4 × 4 × 4 = 64 joint bins (fine enough for "navy" vs
#: "blue", coarse enough to survive light and JPEG).
COLOUR_BINS = 4
HISTOGRAM_DIM = COLOUR_BINS**3

#: ``mean`` is the global average; ``mean+quadrants`` appends the averages of the map's four quadrants (5 × the
#: channels), so the heads see where on the photo a feature is (a print at the chest, a strap at the heel), which
#: fine-grained titles and small grey silhouettes need; ``mean+colour`` appends a histogram of the garment's
#: colours from the input pixels (``encoders.colour``). Each pooling with how many times the map's channels its
#: vector holds, and how many values it adds.
POOLINGS: dict[str, tuple[int, int]] = {"mean": (1, 0), "mean+quadrants": (5, 0), "mean+colour": (1, HISTOGRAM_DIM)}


def check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")


def pooling_of(preprocess_id: str) -> str:
    """The pooling an ``ImageTower.preprocess_id`` names (``mean`` where it names none): how an exported tower,
    which keeps only that id, knows its pooling."""
    for part in preprocess_id.split("|"):
        if part.startswith("pool="):
            return part.removeprefix("pool=").split("-v")[0]
    return "mean"
