"""The README's main job: index a catalogue, answer text and photo queries, tag a photo."""

from __future__ import annotations

from typer.testing import CliRunner

from modalens.cli.main import app
from modalens.quickstart import EXAMPLE_QUERIES


def test_quickstart_indexes_searches_and_tags(mini_catalog, tmp_path):
    result = CliRunner().invoke(app, ["quickstart", "--catalogue", str(mini_catalog), "--index", str(tmp_path / "index"), "--no-serve"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "40 products" in out and "40 added" in out
    for query in EXAMPLE_QUERIES:
        assert f"search {query!r}" in out
    assert "search by photo" in out and "zero-shot tags" in out
    # the photo query's first answer is the photo's own product, with cosine 1
    photo_section = out.split("search by photo")[1].splitlines()
    assert photo_section[1].strip().startswith("1.000")
