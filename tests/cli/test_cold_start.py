"""The CLI's query commands as whole processes: what they import, and that their answers are the PyTorch path's.

Each command runs in a fresh interpreter through a small wrapper that runs the real `modalens` app and then
prints ``sys.modules``. `--help` and `search` must not import torch, transformers, matplotlib, scikit-learn,
scipy, FastAPI or faiss; `search`, `tag` and a read-only `eval` answer with torch made unimportable once the
model's ONNX export exists (`index` makes it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from modalens import models
from modalens.catalog import read_catalog
from modalens.cli import catalog_cmds
from modalens.cli.main import app
from modalens.evaluation.runner import EvalSettings, evaluate
from modalens.export import cache
from modalens.models.factory import DEFAULT_MODEL
from modalens.search import SearchEngine

#: Modules a query command never imports (top-level packages).
HEAVY = {"torch", "transformers", "matplotlib", "sklearn", "scipy", "fastapi", "starlette", "uvicorn", "faiss", "onnx", "onnxscript"}
#: Nor does `eval` (it uses scikit-learn's metrics and, for reports, matplotlib).
EVAL_HEAVY = {"torch", "transformers", "fastapi", "faiss", "onnx", "onnxscript"}

_WRAPPER = """
import json, sys
args, block = json.loads(sys.argv[1]), sys.argv[2] == "block"
if block:  # any `import torch` or `import transformers` now fails, as where they are not installed

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)")

    sys.meta_path.insert(0, Blocker())
sys.argv = ["modalens", *args]
from modalens.cli.main import app
code = 0
try:
    app()
except SystemExit as e:
    code = e.code or 0
sys.stdout.flush()
print("\\nMODULES " + json.dumps([code, sorted(m for m in sys.modules if sys.modules[m] is not None)]))
"""

runner = CliRunner()


def modalens(*args: str | Path, block_torch: bool = False) -> tuple[str, set[str]]:
    """Run `modalens ARGS` in a fresh interpreter: its output, and the top-level packages it imported."""
    run = subprocess.run(
        [sys.executable, "-c", _WRAPPER, json.dumps([str(a) for a in args]), "block" if block_torch else "-"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0 and "\nMODULES " in run.stdout, run.stderr[-3000:]
    output, modules = run.stdout.rsplit("\nMODULES ", 1)
    code, names = json.loads(modules)
    assert code == 0, output + run.stderr[-3000:]
    return output, {name.split(".")[0] for name in names}


@pytest.fixture(scope="module")
def index_dir(mini_catalog, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cold") / "index"
    result = runner.invoke(app, ["index", str(mini_catalog), "--index", str(folder)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert cache.cached_model_export(DEFAULT_MODEL) is not None  # index leaves the export behind (made once)
    return folder


@pytest.fixture(scope="module")
def torch_engine(index_dir):
    engine = SearchEngine(index_dir, models.load(DEFAULT_MODEL), progress=False)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def products(mini_catalog):
    return read_catalog(mini_catalog).products


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["search", "--help"], ["tag", "--help"]], ids=" ".join)
def test_help_and_version_import_nothing_heavy(args):
    output, imported = modalens(*args)
    assert output.strip()
    assert not (HEAVY | {"onnxruntime", "PIL", "tokenizers"}) & imported, sorted(imported)


def test_search_needs_no_torch_and_answers_as_the_torch_path(index_dir, torch_engine, products):
    query = "black analog wrist watch"
    output, imported = modalens("search", query, "--index", index_dir, "-k", "5", "--json", block_torch=True)
    assert [h["id"] for h in json.loads(output)] == [h.id for h in torch_engine.search(query, k=5)]
    expected = [round(h.score, 4) for h in torch_engine.search(query, k=5)]  # --json prints 4 places
    assert np.allclose([h["score"] for h in json.loads(output)], expected, atol=1.1e-4)
    assert not HEAVY & imported, sorted(HEAVY & imported)

    photo = products[4].image
    output, imported = modalens("search", "--image", photo, "--index", index_dir, "-k", "3", "--json", "-f", "gender=Men|Women")
    assert [h["id"] for h in json.loads(output)] == [h.id for h in torch_engine.search(image=photo, k=3, where={"gender": ["Men", "Women"]})]
    assert not HEAVY & imported, sorted(HEAVY & imported)


def test_tag_needs_no_torch_and_ranks_as_the_torch_path(products, monkeypatch):
    photos = [products[0].image, products[11].image]
    labels = "watch,shoes,jeans,dress,handbag,shirt,sunglasses"
    output, imported = modalens("tag", *photos, "--labels", labels, "--json", block_torch=True)
    assert not HEAVY & imported, sorted(HEAVY & imported)
    monkeypatch.setattr(cache, "query_handle", lambda model: models.load(model))  # the PyTorch path, in this process
    expected = runner.invoke(app, ["tag", *photos, "--labels", labels, "--json"], catch_exceptions=False)
    ours, theirs = json.loads(output), json.loads(expected.output)
    for a, b in zip(ours, theirs, strict=True):
        assert [x["label"] for x in a["labels"]] == [x["label"] for x in b["labels"]]
        assert np.allclose([x["score"] for x in a["labels"]], [x["score"] for x in b["labels"]], atol=2e-4)  # printed to 4 places


@pytest.fixture(scope="module")
def scene_photos(products):
    from modalens.scenes import build_scenes, scene_products

    return scene_products(build_scenes(products, 4, seed=2, min_products=2, max_products=3))


def test_scenes_and_the_look_need_no_torch_and_answer_as_the_torch_path(index_dir, torch_engine, products, scene_photos, tmp_path):
    """The decoder inside the export (`modalens export` writes it for a model that has one) stands in for torch's."""
    table = tmp_path / "scenes.csv"
    table.write_text("id,image,title\n" + "".join(f"{p.id},{p.image},scene\n" for p in scene_photos))
    output, _ = modalens("index", table, "--scenes", "--index", index_dir, block_torch=True)  # torch blocked: it would fail
    assert "4 added" in output
    product = products[3]
    output, imported = modalens("search", "--product", product.id, "--scenes", "--index", index_dir, "-k", "4", "--json", block_torch=True)
    assert not HEAVY & imported
    ours = json.loads(output)
    torch_engine.close()  # sees the scenes the subprocess added
    theirs = torch_engine.search_scenes(product_id=product.id, k=4)
    assert [s["id"] for s in ours] == [h.id for h in theirs]
    assert np.allclose([s["score"] for s in ours], [h.score for h in theirs], atol=1.1e-4)
    output, imported = modalens("search", "--look", scene_photos[0].image, "--index", index_dir, "-k", "3", "--json", block_torch=True)
    assert not HEAVY & imported
    looked = torch_engine.look(scene_photos[0].image, k=3)
    assert [[h["id"] for h in item["hits"]] for item in json.loads(output)] == [[h.id for h in item.hits] for item in looked]
    again, _ = modalens("index", table, "--scenes", "--index", index_dir, block_torch=True)
    assert "0 added, 4 unchanged" in again  # the torch path's decoder digest is the export's: same content keys


def test_tag_explain_needs_no_torch_and_draws_one_map_per_label(scene_photos, tmp_path):
    output, imported = modalens("tag", "--explain", scene_photos[0].image, "--labels", "shoes,watch", "-o", tmp_path, "--json", block_torch=True)
    assert not HEAVY & imported, sorted(HEAVY & imported)
    drawn = json.loads(output)
    assert [d["label"] for d in drawn] == ["shoes", "watch"]
    assert all(Path(d["file"]).is_file() and len(d["map"]) == 49 and abs(sum(d["map"]) - 1) < 1e-3 for d in drawn)


def test_eval_reads_through_the_export_without_torch(index_dir, mini_catalog, tmp_path):
    args = ["eval", "--data", mini_catalog, "--tasks", "retrieval,zero-shot", "--resamples", "0", "--no-report", "--no-progress"]
    _, imported = modalens(*args, "-o", tmp_path / "onnx", block_torch=True)
    assert not EVAL_HEAVY & imported, sorted(EVAL_HEAVY & imported)
    ours = json.loads((tmp_path / "onnx" / "results.json").read_text())
    settings = EvalSettings(resamples=0)
    theirs = evaluate(DEFAULT_MODEL, str(mini_catalog), ["retrieval", "zero-shot"], settings, progress=False, onnx=False).results
    # the vectors agree to 1e-7, so the metrics are the same numbers
    assert [(r["metric"], r["value"]) for r in ours["headline"]] == [(r["metric"], r["value"]) for r in theirs["headline"]]


def test_index_makes_the_export_when_the_model_has_none(monkeypatch):
    made = []
    monkeypatch.setattr(cache, "cached_model_export", lambda name: None)
    monkeypatch.setattr(cache, "ensure_model_export", lambda handle, progress=None: made.append(handle.name))
    catalog_cmds._export_for_queries(models.load(DEFAULT_MODEL))
    assert made == [DEFAULT_MODEL]
    monkeypatch.setenv("MODALENS_BACKEND", "torch")  # towers on torch: an export would not give their vectors
    catalog_cmds._export_for_queries(models.load(DEFAULT_MODEL))
    assert made == [DEFAULT_MODEL]
