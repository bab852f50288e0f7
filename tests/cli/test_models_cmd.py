"""`modalens models`: what this install can create, the default marked."""

from typer.testing import CliRunner

from modalens.cli.main import app
from modalens.models import DEFAULT_MODEL, list_models


def test_models_lists_every_model_and_marks_the_default_once():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.count("(default)") == 1 and f"{DEFAULT_MODEL} (default)" in first
    assert all(name in first for name in list_models()) and "efficientnet-lite0" in result.output
