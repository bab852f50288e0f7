"""``models.load``: one handle per model, built once and shared by search and the server; the default named once.

The torch-free side (a handle on an ONNX export never builds the PyTorch
model) needs an export folder: tests/serving/test_torch_free.py has it.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import modalens
from modalens import models
from modalens.models import DEFAULT_MODEL, ModelHandle, ModelNotFoundError
from modalens.models import handle as handle_module
from modalens.search import SearchEngine
from modalens.serving import ServeSettings
from modalens.serving.service import Service


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """Every model the handles build, by name (the real ``create_model`` still builds it)."""
    built: list[str] = []
    real = handle_module.create_model

    def counting(name):
        built.append(str(name))
        return real(name)

    monkeypatch.setattr(handle_module, "create_model", counting)
    return built


def test_search_engines_the_query_encoder_and_the_server_share_one_model(builds, tmp_path) -> None:
    handle = models.load()
    first = SearchEngine(tmp_path / "a", handle, progress=False)
    second = SearchEngine(tmp_path / "b", handle, progress=False)
    first.ensure_index()  # an empty index needs the identity and the size, not the weights
    assert builds == [] and not handle.loaded
    assert first.model is second.model is handle.model is handle.query_encoder.model
    assert first.query_encoder is second.query_encoder is handle.query_encoder
    service = Service(ServeSettings(tmp_path / "served"), handle)
    try:
        assert service.handle is handle
        assert service.engine.model is handle.model and service._engine().model is handle.model  # query and ingest threads
    finally:
        service.close()
        first.close()
    assert builds == [DEFAULT_MODEL]


def test_a_name_becomes_a_handle_of_its_own(builds, tmp_path) -> None:
    engine = SearchEngine(tmp_path / "index", progress=False)
    assert isinstance(engine.handle, ModelHandle) and engine.model_name == DEFAULT_MODEL
    assert engine.identity == models.model_identity(DEFAULT_MODEL) == engine.handle.identity
    assert SearchEngine(tmp_path / "index", engine.handle).handle is engine.handle
    assert builds == []


def test_two_threads_asking_first_build_the_model_once(monkeypatch) -> None:
    built = []

    def slow_build(name):
        built.append(threading.get_ident())
        time.sleep(0.2)  # long enough for every thread to ask while the first build runs
        return object()

    monkeypatch.setattr(handle_module, "create_model", slow_build)
    handle = models.load()
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda _: handle.model, range(4)))
    assert len(built) == 1 and all(model is got[0] for model in got)


def test_an_unknown_model_fails_when_loaded_not_later() -> None:
    with pytest.raises(ModelNotFoundError, match="unknown model 'no-such-model'"):
        models.load("no-such-model")


def test_a_handle_and_its_identity_and_config_import_no_torch() -> None:
    code = (
        "import sys\n"
        "from modalens import models\n"
        "from modalens.search import SearchEngine\n"
        "from modalens.serving import ServeSettings\n"
        "h = models.load()\n"
        "print(h.identity, h.config.embed_dim, h.query_encoder.embed_dim, 'torch' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [models.model_identity(DEFAULT_MODEL), "512", "512", "False"]


def _string_literals(file: Path) -> list[int]:
    tree = ast.parse(file.read_text(encoding="utf-8"))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value == DEFAULT_MODEL]


def test_the_default_model_is_named_only_in_the_factory(tmp_path) -> None:
    from modalens.cli.common import MODEL_OPTION
    from modalens.export import export_model
    from modalens.recipes.config import TrainConfig
    from modalens.search import index_model

    package = Path(modalens.__file__).parent
    elsewhere = {
        str(f.relative_to(package)): lines
        for f in package.rglob("*.py")
        if f != package / "models" / "factory.py" and (lines := _string_literals(f))
    }
    assert elsewhere == {}, f"write models.DEFAULT_MODEL, not the literal: {elsewhere}"
    assert MODEL_OPTION.default == ServeSettings().model == ServeSettings.from_env(None).model == DEFAULT_MODEL
    assert TrainConfig().model == inspect.signature(export_model).parameters["model"].default == DEFAULT_MODEL
    # an engine unnamed takes its index's own model, and a new index the default
    assert inspect.signature(SearchEngine).parameters["model"].default is None and index_model(tmp_path / "new") == DEFAULT_MODEL
