"""A quick probe of image-feature pooling and head shape, before paying for a full photo-recipe run.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/head_probe.py mean mean+quadrants mean:linear mean:mlp-d0.5

Each argument is ``POOLING[:HEAD]``: POOLING is ``mean`` or ``mean+quadrants`` (encoders/base.py
``pool_feature_map``), HEAD is ``mlp`` (default), ``linear`` or ``mlp-dX`` (MLP with dropout X on the image
head). Heads are trained with the CLIP loss on KAGL train's 224 px photos only (rich captions, no views,
25 epochs, seed 0), from the tower's cached 7×7 maps (``CachedEncoder.image_grids``), and read on two
validation sets: KAGL val title→image R@1/R@10 (944) and Fashion-MNIST *train* (first 10k) zero-shot
weighted F1 with the prompt ensemble. A probe, not a recipe: no views, no kagl-full, one seed, so read a
difference of less than about 0.02 as noise. Never pointed at a test split.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from modalens.catalog import read_catalog
from modalens.catalog.readers import FASHION_MNIST_CLASSES, read_fashion_mnist
from modalens.embedding import CachedEncoder
from modalens.encoders.base import pool_feature_map
from modalens.models import create_model
from modalens.models.heads import ProjectionHead
from modalens.prompts import load_caption_set, zero_shot_prompts
from modalens.recipes.data import caption_table

EPOCHS, BATCH = 25, 256


def pooled(grids: np.ndarray, pooling: str) -> torch.Tensor:
    """Cached (n, h·w, C) float16 maps → the tower's pooled vectors under ``pooling`` (in chunks: the maps of
    17k photos are 4 GB as float32)."""
    side = int(round(grids.shape[1] ** 0.5))
    chunks = []
    for start in range(0, len(grids), 1000):
        maps = torch.from_numpy(grids[start : start + 1000].astype(np.float32))
        chunks.append(pool_feature_map(maps.reshape(len(maps), side, side, -1).permute(0, 3, 1, 2), pooling))
    return torch.cat(chunks)


def heads(in_dim: int, text_dim: int, head: str) -> tuple[ProjectionHead, ProjectionHead]:
    if head.startswith("mlp-d"):
        return ProjectionHead(in_dim, 512, dropout=float(head[5:])), ProjectionHead(text_dim, 512)
    return ProjectionHead(in_dim, 512, head), ProjectionHead(text_dim, 512, head)


def train(x: torch.Tensor, text_feats: torch.Tensor, choices: list[list[int]], head: str):
    torch.manual_seed(0)
    image_head, text_head = heads(x.shape[1], text_feats.shape[1], head)
    scale = torch.nn.Parameter(torch.tensor(2.659))
    params = [*image_head.parameters(), *text_head.parameters(), scale]
    optimiser = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    generator = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for step in range(len(x) // BATCH):
            batch = order[step * BATCH : (step + 1) * BATCH]
            caps = torch.tensor([choices[i][int(torch.randint(len(choices[i]), (1,), generator=generator))] for i in batch.tolist()])
            logits = scale.clamp(max=4.6052).exp() * image_head(x[batch]) @ text_head(text_feats[caps]).T
            same = caps[:, None] == caps[None, :]  # one caption twice in a batch: both positives
            loss = sum((torch.logsumexp(m, 1) - torch.logsumexp(m.masked_fill(~same, -1e9), 1)).mean() for m in (logits, logits.T)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return image_head.eval(), text_head.eval()


def main() -> None:
    encoder = CachedEncoder(create_model("modalens-photo"), progress=False)  # its towers; the heads are trained here
    kagl = read_catalog("kagl")
    train_products = [p for p in kagl.split("train").products if p.image]
    val_products = [p for p in kagl.split("val").products if p.image]
    fmnist = read_fashion_mnist("train", limit=10_000).products
    grids = {name: encoder.image_grids(products)[0] for name, products in [("train", train_products), ("val", val_products), ("fm", fmnist)]}
    texts, choices = caption_table(train_products, load_caption_set("rich"))
    text_feats = torch.from_numpy(encoder.text_features(texts).astype(np.float32))
    titles = torch.from_numpy(encoder.text_features([p.title for p in val_products]).astype(np.float32))
    prompts = zero_shot_prompts(list(FASHION_MNIST_CLASSES))
    prompt_feats = torch.from_numpy(encoder.text_features([q for group in prompts for q in group]).astype(np.float32))
    labels = np.array([p.extra["label"] for p in fmnist])
    for arg in sys.argv[1:] or ["mean", "mean+quadrants"]:
        pooling, _, head = arg.partition(":")
        x = {name: pooled(g, pooling) for name, g in grids.items()}
        image_head, text_head = train(x["train"], text_feats, choices, head or "mlp")
        with torch.no_grad():
            sims = text_head(titles) @ image_head(x["val"]).T
            classes = F.normalize(text_head(prompt_feats).reshape(len(prompts), len(prompts[0]), -1).mean(1), dim=-1)
            predicted = (image_head(x["fm"]) @ classes.T).argmax(1).numpy()
        truth = torch.arange(len(val_products))
        r1 = float((sims.argmax(1) == truth).float().mean())
        r10 = float((sims.topk(10, 1).indices == truth[:, None]).any(1).float().mean())
        print(f"{arg:24s} dim {x['train'].shape[1]:5d}  KAGL val title→image R@1 {r1:.3f} R@10 {r10:.3f}  "
              f"Fashion-MNIST train wF1 {f1_score(labels, predicted, average='weighted'):.3f}", flush=True)


if __name__ == "__main__":
    main()
