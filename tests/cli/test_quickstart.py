"""The README's main job: index a catalogue, answer text and photo queries, tag a photo."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from modalens.catalog import read_catalog
from modalens.cli.main import app
from modalens.quickstart import EXAMPLE_QUERIES

#: What each example query must find first on the mini catalogue's real photos: (field, value, how many top hits).
#: The catalogue has no navy check shirt: a top (the model's first answer is a T-shirt) is the right kind of answer.
EXPECTED = {
    "navy blue check shirt": ("sub_category", "Topwear", 1),
    "black leather handbag for women": ("article_type", "Handbags", 1),
    "white sports shoes": ("article_type", "Sports Shoes", 2),
}

LINE = re.compile(r"^  (-?\d\.\d{3})  (.+)$")


def _sections(out: str) -> dict[str, list[tuple[float, str]]]:
    """Each printed search's hits as (score, title), keyed by the search's header line."""
    sections: dict[str, list[tuple[float, str]]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("search "):
            current = sections.setdefault(line, [])
        elif current is not None and (m := LINE.match(line)):
            current.append((float(m.group(1)), m.group(2)))
        else:
            current = None
    return sections


def test_quickstart_indexes_searches_and_tags(mini_catalog, tmp_path):
    result = CliRunner().invoke(app, ["quickstart", "--catalogue", str(mini_catalog), "--index", str(tmp_path / "index"), "--no-serve"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "40 products" in out and "40 added" in out
    assert "search by photo" in out and "zero-shot tags" in out
    products = read_catalog(mini_catalog).products
    by_title = {p.title[:70]: p for p in products}
    assert len(by_title) == len(products)  # titles name products uniquely here
    sections = _sections(out)

    # text searches: five hits each, best first, and the first ones are the kind of product asked for
    tops = []
    for query in EXAMPLE_QUERIES:
        hits = sections[f"search {query!r}"]
        assert len(hits) == 5
        scores = [s for s, _ in hits]
        assert scores == sorted(scores, reverse=True), (query, hits)
        field, value, n = EXPECTED[query]
        found = [by_title[title].get(field) for _, title in hits[:n]]
        assert found == [value] * n, (query, hits)
        tops.append(hits[0][1])
    assert len(set(tops)) == len(tops)  # a search that ignored the query would answer the same every time

    # the photo query's first answer is the photo's own product, with cosine 1, then the most similar ones
    (photo_header,) = [h for h in sections if h.startswith("search by photo")]
    photo_hits = sections[photo_header]
    probe = next(p for p in products if p.image)
    assert photo_hits[0] == (1.0, probe.title[:70])
    assert [s for s, _ in photo_hits] == sorted((s for s, _ in photo_hits), reverse=True)
    assert by_title[photo_hits[1][1]].get("article_type") == probe.get("article_type")  # the other T-shirt

    # zero-shot tags: the photo's own article type first, probabilities in decreasing order, the first confident
    tags_line = next(line for line in out.splitlines() if line.startswith("zero-shot tags"))
    tags = [(label.strip(), float(p)) for label, p in re.findall(r"([^,:]+?) \((\d\.\d\d)\)", tags_line.split(": ", 1)[1])]
    assert len(tags) == 3, tags_line
    assert tags[0][0] == probe.get("article_type") and tags[0][1] > 0.5, tags_line
    assert [p for _, p in tags] == sorted((p for _, p in tags), reverse=True), tags_line
    labels = {p.get("article_type") for p in products}
    assert {label for label, _ in tags} <= labels and len({label for label, _ in tags}) == 3
