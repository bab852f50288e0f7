"""Text towers side by side: query latency (torch, ONNX fp32, ONNX int8), caption throughput, and raw-embedding quality.

    .venv/bin/python benchmarks/text_towers.py [--towers minilm-l6 mpnet-base e5-small-multilingual] [--queries 200]

Every tower in one run, MiniLM-L6 (today's default) first as the baseline.
Needs no trained head: the signals read the frozen towers' own embeddings.

* **Latency**: one query at a time (batch 1, tokenising included), p50 and
  p95 over ``--queries`` varied fashion queries, for torch fp32, ONNX Runtime
  fp32 (the tower's cached export, as ``modalens export`` writes it) and ONNX
  Runtime int8 (dynamic, per channel, as ``modalens export --int8``). The
  calls are interleaved (one of each candidate per query), so load from
  other processes on a shared machine falls on every row alike.
* **Feature cache cost**: seconds to encode ``--captions`` KAGL train titles
  in batches of 128 (as ``modalens.encoders.features`` does), scaled to 10k.
* **Quality, English** (KAGL val, 944 products): (a) title → article type:
  each title against the 55 article-type names present in val, top-1
  accuracy; the same for base colour (34 names); (b) query → product: the
  English queries below against the val titles, precision@10 (a title is
  relevant when its article type and colour are the query's).
* **Binding** (a SugarCrepe-style swap test on text alone): an anchor
  "a {c1} {g1} with {c2} {g2}" must be nearer, on average, to the two
  orders of its own pairs ("{c1} {g1} and {c2} {g2}", "{c2} {g2} and {c1}
  {g1}") than to the two orders with the colours swapped between the garments
  ("{c2} {g1} and {c1} {g2}", "{c1} {g2} and {c2} {g1}"). Same words on both
  sides and the same word positions in sum, so a bag of words and a
  position-only matcher both score 0.5. 400 seeded anchors, 10 colours, 12 garments.
* **Quality, other languages**: the same queries in German, French, Spanish
  and Italian (translated by hand for this benchmark) against the same
  English titles; precision@10 per language, and the mean cosine between a
  translated query and its English original.

95% intervals are bootstrap intervals over products / queries. Writes
benchmarks/results/text_towers.json. Reads ../shared/data/kagl-fashion.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from machine import cpu_model, load_average  # noqa: E402  (benchmarks/machine.py)

from modalens.backends.onnx import OnnxTextTower, cached_export
from modalens.backends.runtime import default_threads
from modalens.encoders import create_text_tower
from modalens.export import quantize
from modalens.paths import shared_data_dir

HERE = Path(__file__).resolve().parent
LANGUAGES = ("en", "de", "fr", "es", "it")

#: (article type, colour) in KAGL's words, then the query in English, German, French, Spanish, Italian.
QUERIES: list[tuple[str, str, tuple[str, str, str, str, str]]] = [
    ("Tshirts", "Black", ("black t-shirt", "schwarzes T-Shirt", "t-shirt noir", "camiseta negra", "maglietta nera")),
    ("Shirts", "White", ("white shirt", "weißes Hemd", "chemise blanche", "camisa blanca", "camicia bianca")),
    ("Jeans", "Blue", ("blue jeans", "blaue Jeans", "jean bleu", "vaqueros azules", "jeans blu")),
    ("Handbags", "Black", ("black handbag", "schwarze Handtasche", "sac à main noir", "bolso negro", "borsa nera")),
    ("Wallets", "Brown", ("brown wallet", "braune Geldbörse", "portefeuille marron", "cartera marrón", "portafoglio marrone")),
    ("Sunglasses", "Black", ("black sunglasses", "schwarze Sonnenbrille", "lunettes de soleil noires", "gafas de sol negras", "occhiali da sole neri")),
    ("Sports Shoes", "White", ("white sports shoes", "weiße Sportschuhe", "chaussures de sport blanches", "zapatillas deportivas blancas", "scarpe sportive bianche")),
    ("Casual Shoes", "Black", ("black casual shoes", "schwarze Freizeitschuhe", "chaussures décontractées noires", "zapatos casuales negros", "scarpe casual nere")),
    ("Formal Shoes", "Brown", ("brown formal shoes", "braune Anzugschuhe", "chaussures habillées marron", "zapatos de vestir marrones", "scarpe eleganti marroni")),
    ("Sweatshirts", "Grey", ("grey sweatshirt", "graues Sweatshirt", "sweat-shirt gris", "sudadera gris", "felpa grigia")),
    ("Tops", "Red", ("red top", "rotes Top", "haut rouge", "top rojo", "top rosso")),
    ("Belts", "Black", ("black belt", "schwarzer Gürtel", "ceinture noire", "cinturón negro", "cintura nera")),
    ("Shirts", "Navy Blue", ("navy blue shirt", "dunkelblaues Hemd", "chemise bleu marine", "camisa azul marino", "camicia blu navy")),
    ("Tshirts", "Pink", ("pink t-shirt", "rosa T-Shirt", "t-shirt rose", "camiseta rosa", "maglietta rosa")),
    ("Watches", "Black", ("black wrist watch", "schwarze Armbanduhr", "montre noire", "reloj de pulsera negro", "orologio da polso nero")),
    ("Sandals", "Brown", ("brown sandals", "braune Sandalen", "sandales marron", "sandalias marrones", "sandali marroni")),
    ("Backpacks", "Black", ("black backpack", "schwarzer Rucksack", "sac à dos noir", "mochila negra", "zaino nero")),
    ("Trousers", "Grey", ("grey trousers", "graue Hose", "pantalon gris", "pantalones grises", "pantaloni grigi")),
    ("Jackets", "Black", ("black jacket", "schwarze Jacke", "veste noire", "chaqueta negra", "giacca nera")),
    ("Socks", "White", ("white socks", "weiße Socken", "chaussettes blanches", "calcetines blancos", "calzini bianchi")),
    ("Heels", "Black", ("black high heels", "schwarze High Heels", "escarpins noirs à talons", "tacones negros", "scarpe col tacco nere")),
    ("Kurtas", "Purple", ("purple kurta", "lila Kurta", "kurta violette", "kurta morada", "kurta viola")),
    ("Flip Flops", "Blue", ("blue flip flops", "blaue Flip-Flops", "tongs bleues", "chanclas azules", "infradito blu")),
    ("Tshirts", "Green", ("green t-shirt", "grünes T-Shirt", "t-shirt vert", "camiseta verde", "maglietta verde")),
    ("Sweaters", "Black", ("black sweater", "schwarzer Pullover", "pull noir", "jersey negro", "maglione nero")),
    ("Briefs", "White", ("white briefs", "weiße Unterhosen", "slips blancs", "calzoncillos blancos", "slip bianchi")),
    ("Shirts", "Blue", ("blue shirt", "blaues Hemd", "chemise bleue", "camisa azul", "camicia blu")),
    ("Tshirts", "Red", ("red t-shirt", "rotes T-Shirt", "t-shirt rouge", "camiseta roja", "maglietta rossa")),
    ("Flats", "Black", ("black ballet flats", "schwarze Ballerinas", "ballerines noires", "bailarinas negras", "ballerine nere")),
    ("Watches", "Silver", ("silver watch", "silberne Uhr", "montre argentée", "reloj plateado", "orologio argentato")),
]


COLOURS = ("red", "blue", "black", "white", "green", "yellow", "pink", "grey", "brown", "navy")
GARMENTS = ("shirt", "jeans", "jacket", "skirt", "t-shirt", "trousers", "sweater", "shorts", "dress", "coat", "shoes", "cap")


def binding_cases(n: int = 400, seed: int = 0) -> list[tuple[str, str, str, str, str]]:
    """(anchor, positive, positive reordered, negative, negative reordered)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        c1, c2 = rng.choice(COLOURS, 2, replace=False)
        g1, g2 = rng.choice(GARMENTS, 2, replace=False)
        out.append((f"a {c1} {g1} with {c2} {g2}", f"{c1} {g1} and {c2} {g2}", f"{c2} {g2} and {c1} {g1}",
                    f"{c2} {g1} and {c1} {g2}", f"{c1} {g2} and {c2} {g1}"))
    return out


def read_kagl(split: str) -> list[dict[str, str]]:
    root = shared_data_dir()
    path = root / "kagl-fashion" / "products.csv" if root else None
    if not path or not path.exists():
        raise SystemExit("needs ../shared/data/kagl-fashion/products.csv (or $MODALENS_SHARED_DATA)")
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if row["split"] == split]


def bootstrap(values: np.ndarray, n: int = 1000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n, len(values)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def summary(values: np.ndarray) -> dict[str, float | list[float]]:
    return {"mean": float(values.mean()), "ci95": bootstrap(values), "n": int(len(values))}


def encode(fn: Callable[[list[str]], np.ndarray], texts: Sequence[str], batch: int = 128) -> np.ndarray:
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    parts = [fn([texts[i] for i in order[j : j + batch]]) for j in range(0, len(order), batch)]
    out = np.concatenate(parts)
    result = np.empty_like(out)
    result[order] = out
    return result


def quality(fn: Callable[[list[str]], np.ndarray], val: list[dict[str, str]]) -> dict[str, object]:
    titles = [r["title"] for r in val]
    title_vecs = encode(fn, titles)
    record: dict[str, object] = {}
    for field in ("articleType", "baseColour"):
        names = sorted({r[field] for r in val})
        label_vecs = encode(fn, names)
        predicted = (title_vecs @ label_vecs.T).argmax(1)
        truth = np.array([names.index(r[field]) for r in val])
        record[f"title_to_{field}_top1"] = summary((predicted == truth).astype(float))
    relevant = [np.array([(r["articleType"], r["baseColour"]) == (kind, colour) for r in val]) for kind, colour, _ in QUERIES]
    kept = [i for i, rel in enumerate(relevant) if rel.any()]
    english = encode(fn, [QUERIES[i][2][0] for i in kept])
    for li, language in enumerate(LANGUAGES):
        queries = encode(fn, [QUERIES[i][2][li] for i in kept])
        top = np.argsort(-(queries @ title_vecs.T), axis=1)[:, :10]
        precision = np.array([relevant[i][top[j]].mean() for j, i in enumerate(kept)])
        record[f"p@10_{language}"] = summary(precision)
        if language != "en":
            record[f"cosine_to_english_{language}"] = float((queries * english).sum(1).mean())
    record["queries_used"] = len(kept)
    cases = binding_cases()
    anchor, *others = (encode(fn, [case[i] for case in cases]) for i in range(5))
    positive, negative = ((anchor * others[i]).sum(1) + (anchor * others[i + 1]).sum(1) for i in (0, 2))
    record["binding_swap_accuracy"] = summary((positive > negative).astype(float))
    return record


def latencies(candidates: dict[str, Callable[[list[str]], object]], queries: Sequence[str]) -> dict[str, dict[str, float]]:
    for fn in candidates.values():
        fn([queries[0]])  # warm-up
        fn([queries[-1]])
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for query in queries:
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn([query])
            times[name].append(1000 * (time.perf_counter() - start))
    return {
        name: {"p50_ms": statistics.median(t), "p95_ms": float(np.percentile(t, 95)), "n": len(t)} for name, t in times.items()
    }


def tower_candidates(name: str, threads: int, onnx_root: Path | None, scratch: Path) -> tuple[object, dict[str, Callable[[list[str]], np.ndarray]], dict]:
    tower = create_text_tower(name).eval()
    folder, manifest, data = cached_export(tower, "text_tower", root=onnx_root)
    component = manifest["components"]["text_tower"]
    fp32 = OnnxTextTower(data, component, tower.tokenizer, max_length=tower.max_length, threads=threads)
    int8_path = scratch / f"{name}.int8.onnx"
    quantize(folder / component["file"], int8_path, "text_tower")
    int8 = OnnxTextTower(int8_path, component, tower.tokenizer, max_length=tower.max_length, threads=threads)

    def torch_fn(batch: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return tower(batch).numpy()

    sizes = {"onnx_fp32_mb": (folder / component["file"]).stat().st_size / 1e6, "onnx_int8_mb": int8_path.stat().st_size / 1e6,
             "parameters_m": sum(p.numel() for p in tower.parameters()) / 1e6, "output_dim": int(tower.output_dim)}
    return tower, {"torch fp32": torch_fn, "ORT fp32": fp32.encode_numpy, "ORT int8": int8.encode_numpy}, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--towers", nargs="+", default=["minilm-l6", "mpnet-base", "e5-small-multilingual"])
    parser.add_argument("--queries", type=int, default=200, help="single queries timed per candidate")
    parser.add_argument("--captions", type=int, default=1000, help="KAGL train titles encoded for the feature-cache cost")
    parser.add_argument("--no-quality", action="store_true", help="latency and feature-cache cost only")
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: modalens's)")
    parser.add_argument("--onnx-root", type=Path, default=None, help="where tower exports are cached (default: modalens's cache)")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "text_towers.json")
    args = parser.parse_args()
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    val, train = read_kagl("val"), read_kagl("train")
    pool = [q for _, _, langs in QUERIES for q in langs] + [r["title"] for r in val[:100]]
    queries = [pool[(i * 37) % len(pool)] for i in range(args.queries)]
    captions = [r["title"] for r in train[: args.captions]]
    scratch = Path(tempfile.mkdtemp(prefix="modalens-text-towers-"))
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, load {load_average()}; torch {torch.__version__}, "
          f"onnxruntime {__import__('onnxruntime').__version__}; {threads} threads")
    record: dict[str, object] = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "towers": {},
                                 "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "queries_timed": len(queries)}
    candidates: dict[str, Callable[[list[str]], np.ndarray]] = {}
    for name in args.towers:
        try:
            start = time.perf_counter()
            tower, fns, sizes = tower_candidates(name, threads, args.onnx_root, scratch)
            sizes["load_s"] = time.perf_counter() - start  # includes the export on a first run
        except FileNotFoundError as e:
            print(f"{name}: skipped ({e})")
            record["towers"][name] = {"skipped": str(e)}  # type: ignore[index]
            continue
        entry: dict[str, object] = dict(sizes)
        start = time.perf_counter()
        encode(fns["ORT fp32"], captions)
        entry["feature_cache_s_per_10k_captions_ort_fp32"] = (time.perf_counter() - start) * 10_000 / len(captions)
        start = time.perf_counter()
        encode(fns["torch fp32"], captions)
        entry["feature_cache_s_per_10k_captions_torch"] = (time.perf_counter() - start) * 10_000 / len(captions)
        if not args.no_quality:
            entry["quality_torch_fp32"] = quality(fns["torch fp32"], val)
            entry["quality_ort_int8"] = quality(fns["ORT int8"], val)
        titles = [r["title"] for r in val]
        fp32, int8 = encode(fns["ORT fp32"], titles), encode(fns["ORT int8"], titles)
        cosine = (fp32 * int8).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(int8, axis=1)
        entry["int8_cosine_to_fp32_on_val_titles"] = {"mean": float(cosine.mean()), "min": float(cosine.min())}
        record["towers"][name] = entry  # type: ignore[index]
        candidates.update({f"{name} | {kind}": fn for kind, fn in fns.items()})
        del tower
    timing = latencies(candidates, queries)
    base = timing.get("minilm-l6 | ORT fp32", {}).get("p50_ms")
    print(f"load at end {load_average()}")
    print(f"\n{'tower | back-end':<38} {'p50 ms':>7} {'p95 ms':>7} {'p50 vs MiniLM ORT fp32':>24}")
    for key, t in timing.items():
        ratio = f"x{t['p50_ms'] / base:.2f}" if base else ""
        print(f"{key:<38} {t['p50_ms']:7.2f} {t['p95_ms']:7.2f} {ratio:>24}")
    for name, entry in record["towers"].items():  # type: ignore[union-attr]
        if "skipped" in entry:
            continue
        entry["latency"] = {k.split(" | ")[1]: v for k, v in timing.items() if k.startswith(f"{name} | ")}
        print(f"\n{name}: {entry['parameters_m']:.0f}M parameters, {entry['output_dim']}-d, ONNX {entry['onnx_fp32_mb']:.0f} MB fp32 / "
              f"{entry['onnx_int8_mb']:.0f} MB int8; feature cache {entry['feature_cache_s_per_10k_captions_ort_fp32']:.0f} s per 10k captions "
              f"(ORT fp32), {entry['feature_cache_s_per_10k_captions_torch']:.0f} s (torch); int8 cosine to fp32 on val titles "
              f"mean {entry['int8_cosine_to_fp32_on_val_titles']['mean']:.3f}, min {entry['int8_cosine_to_fp32_on_val_titles']['min']:.3f}")
        for kind in ("quality_torch_fp32", "quality_ort_int8"):
            if kind not in entry:
                continue
            q = entry[kind]
            parts = [f"{k} {v['mean']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]" for k, v in q.items() if isinstance(v, dict)]
            cos = [f"{k[-2:]} {v:.3f}" for k, v in q.items() if k.startswith("cosine")]
            print(f"  {kind}: " + "; ".join(parts) + f"; cosine to English: {', '.join(cos)} ({q['queries_used']} queries)")
    args.output.parent.mkdir(exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
