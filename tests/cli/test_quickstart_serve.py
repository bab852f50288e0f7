"""``modalens quickstart`` ends by serving its index: the serve step gets real option values, not typer's defaults."""

from __future__ import annotations

from types import SimpleNamespace

import uvicorn
from typer.testing import CliRunner

import modalens.quickstart
from modalens.cli.main import app
from modalens.models import DEFAULT_MODEL


def test_quickstart_serves_its_index_with_the_default_options(tmp_path, monkeypatch):
    engine = SimpleNamespace(index_dir=tmp_path / "index", model_name=DEFAULT_MODEL, close=lambda: None)
    monkeypatch.setattr(modalens.quickstart, "run_quickstart", lambda *args, **kwargs: engine)  # the indexing: tested elsewhere
    monkeypatch.delenv("MODALENS_ONNX_DIR", raising=False)
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: served.update(app=application, **kw))
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)

    result = CliRunner().invoke(app, ["quickstart", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert served["port"] == 8123 and served["host"] == "127.0.0.1"
    assert f"serving {engine.index_dir} at http://127.0.0.1:8123/" in result.output
    assert "ONNX" not in result.output  # no export named: queries from the PyTorch model
    assert opened == []
