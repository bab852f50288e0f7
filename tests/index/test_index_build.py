"""build_index: batching, content-key skipping, failures, pruning."""

from __future__ import annotations

import numpy as np
import pytest
from index_helpers import fake_embed, make_product, make_products, pid

from modalens.index import BuildReport, EmbedResult, build_index, product_content_key


class CountingEmbed:
    """fake_embed that remembers every batch and can fail chosen ids."""

    def __init__(self, fail: set[str] = frozenset(), forget: set[str] = frozenset()) -> None:
        self.batches: list[list[str]] = []
        self.fail, self.forget = set(fail), set(forget)

    def __call__(self, products):
        self.batches.append([p.id for p in products])
        good = [p for p in products if p.id not in self.fail | self.forget]
        vectors = fake_embed(good).vectors if good else np.empty((0, 16))
        failures = [(p.id, "image unreadable") for p in products if p.id in self.fail]
        return EmbedResult(vectors, [p.id for p in good], failures)

    @property
    def embedded(self) -> list[str]:
        return [i for batch in self.batches for i in batch]


def test_build_batches_and_reports(index):
    products = make_products(50)
    embed = CountingEmbed()
    generation = index.meta["generation"]
    report = build_index(index, products, embed, batch_size=8, content_key=product_content_key, progress=False)
    assert isinstance(report, BuildReport)
    assert (report.added, report.skipped_unchanged, report.failed, report.total) == (50, 0, 0, 50)
    assert report.seconds >= 0 and "50 added" in str(report)
    assert [len(b) for b in embed.batches] == [8] * 6 + [2]
    assert index.meta["generation"] - generation == 7  # one transaction per batch
    assert index.ids() == [p.id for p in products]
    assert index.search(fake_embed([products[9]]).vectors[0], k=1)[0][0].id == pid(9)


def test_rebuild_skips_unchanged_and_reembeds_changed(index):
    products = make_products(30)
    build_index(index, products, CountingEmbed(), batch_size=8, content_key=product_content_key, progress=False)
    products[4] = make_product(4, title="New title")
    embed = CountingEmbed()
    report = build_index(index, products, embed, batch_size=8, content_key=product_content_key, progress=False)
    assert embed.embedded == [pid(4)]
    assert (report.added, report.skipped_unchanged) == (1, 29)
    assert index.get(pid(4)).title == "New title"


def test_failures_recorded_and_retried(index):
    products = make_products(20)
    embed = CountingEmbed(fail={pid(3), pid(11)}, forget={pid(7)})
    report = build_index(index, products, embed, batch_size=5, content_key=product_content_key, progress=False)
    assert (report.added, report.failed) == (17, 3)
    assert dict(index.failures()) == {
        pid(3): "image unreadable",
        pid(7): "embedder returned no vector and no reason",
        pid(11): "image unreadable",
    }
    assert pid(3) not in index
    retry = CountingEmbed()
    report = build_index(index, products, retry, batch_size=5, content_key=product_content_key, progress=False)
    assert sorted(retry.embedded) == [pid(3), pid(7), pid(11)]
    assert (report.added, report.skipped_unchanged, report.failed) == (3, 17, 0)
    assert index.failures() == [] and len(index) == 20


def test_prune_only_when_asked(index):
    products = make_products(10)
    build_index(index, products, CountingEmbed(fail={pid(9)}), content_key=product_content_key, progress=False)
    kept = products[:6]
    build_index(index, kept, CountingEmbed(), content_key=product_content_key, progress=False)
    assert len(index) == 9
    report = build_index(index, kept, CountingEmbed(), content_key=product_content_key, progress=False, prune=True)
    assert report.pruned == 3 and index.ids() == [p.id for p in kept]
    assert index.failures() == []


def test_embedder_contract_enforced(index):
    def foreign(products):
        return EmbedResult(np.ones((1, 16)), ["not-in-batch"], [])

    with pytest.raises(ValueError, match="not in the batch"):
        build_index(index, make_products(3), foreign, content_key=product_content_key, progress=False)

    def wrong_shape(products):
        return EmbedResult(np.ones((1, 16)), [p.id for p in products], [])

    with pytest.raises(ValueError, match="shape"):
        build_index(index, make_products(3), wrong_shape, content_key=product_content_key, progress=False)
    assert len(index) == 0


def test_duplicate_catalogue_ids_and_bad_batch_size(index):
    with pytest.raises(ValueError, match="duplicate"):
        build_index(index, [make_product(1), make_product(1)], CountingEmbed(), content_key=product_content_key)
    with pytest.raises(ValueError, match="batch_size"):
        build_index(index, make_products(2), CountingEmbed(), batch_size=0, content_key=product_content_key)


def test_progress_bar_runs(index, capsys):
    build_index(index, make_products(4), CountingEmbed(fail={pid(0)}), batch_size=2, content_key=product_content_key, progress=True)
    assert "failed=1" in capsys.readouterr().err


def test_no_bar_by_default_when_stderr_is_no_terminal(index, capsys):
    """progress=None (the default): bars only on a terminal; pytest's captured stderr is none."""
    build_index(index, make_products(4), CountingEmbed(), batch_size=2, content_key=product_content_key)
    assert capsys.readouterr().err == ""


def test_content_key_is_stable_and_sensitive():
    a, b = make_product(1), make_product(1)
    assert product_content_key(a) == product_content_key(b)
    assert product_content_key(a) != product_content_key(make_product(1, description="other"))
    assert product_content_key(a) != product_content_key(a, salt="model-v2")
