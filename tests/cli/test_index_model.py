"""Commands on an index use the model it was built with unless told otherwise: an upgrade that changes the default
model leaves older indexes searchable."""

from typer.testing import CliRunner

from modalens.cli.main import app
from modalens.models import DEFAULT_MODEL
from modalens.search import index_model

OLDER = "modalens-photo"  # any shipped model other than the default


def test_an_index_of_another_model_is_searched_with_its_own(tmp_path, mini_catalog):
    assert OLDER != DEFAULT_MODEL
    folder = tmp_path / "index"
    assert index_model(folder) == DEFAULT_MODEL  # nothing there yet: a new index gets the default
    runner = CliRunner()
    built = runner.invoke(app, ["index", str(mini_catalog), "--index", str(folder), "--model", OLDER, "--limit", "8"])
    assert built.exit_code == 0, built.output
    assert index_model(folder) == OLDER

    found = runner.invoke(app, ["search", "shirt", "--index", str(folder), "--json", "-k", "3"])
    assert found.exit_code == 0 and '"id"' in found.output, found.output
    again = runner.invoke(app, ["index", str(mini_catalog), "--index", str(folder), "--limit", "8"])
    assert again.exit_code == 0 and "8 unchanged" in again.output, again.output  # resumed with the index's model

    wrong = runner.invoke(app, ["search", "shirt", "--index", str(folder), "--model", DEFAULT_MODEL])
    assert wrong.exit_code != 0 and f"use --model {OLDER} " in wrong.output and "Traceback" not in wrong.output
