"""Type-grouped batches: the same products each epoch, but batches that hold few article types."""

import pytest
import torch

from modalens.catalog.schema import Product
from modalens.recipes.data import TrainingData, article_type_ids, epoch_order, grouped_by_type
from modalens.recipes import ConfigError, run_recipe
from recipe_testkit import small_config


def _types_per_batch(order: torch.Tensor, types: torch.Tensor, batch_size: int) -> float:
    whole = len(order) // batch_size
    return sum(len(set(types[order[i * batch_size : (i + 1) * batch_size]].tolist())) for i in range(whole)) / whole


def test_grouped_batches_hold_fewer_types_and_the_same_products():
    types = torch.arange(1000) % 20  # 20 types, evenly mixed
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(1))
    grouped = grouped_by_type(order, types, 1.0, 64, torch.Generator().manual_seed(0))
    assert sorted(grouped.tolist()) == list(range(1000))  # a reordering: nothing dropped or repeated
    assert _types_per_batch(grouped, types, 64) < 0.5 * _types_per_batch(order, types, 64)
    half = grouped_by_type(order, types, 0.5, 64, torch.Generator().manual_seed(0))
    assert _types_per_batch(grouped, types, 64) < _types_per_batch(half, types, 64) < _types_per_batch(order, types, 64)
    assert torch.equal(grouped[-(1000 % 64) :], order[-(1000 % 64) :])  # the last, short batch is left as it was


def test_article_type_ids_mark_products_without_a_type():
    products = [Product("a", attributes={"article_type": "Tshirts"}), Product("b"), Product("c", attributes={"article_type": "Tshirts"})]
    assert article_type_ids(products).tolist() == [0, -1, 0]


def test_grouped_batches_train_end_to_end_and_check_their_share(tmp_path, mini_catalog):
    config = small_config(tmp_path, mini_catalog, grouped_batches=1.0, optim={"batch_size": 4})
    products = [Product(str(i), attributes={"article_type": "Tshirts" if i % 2 else "Watches"}) for i in range(16)]
    data = TrainingData(products, torch.zeros(16, dtype=torch.long), None, [], None, [[0]] * 16, {}, [])
    plain = epoch_order(data, small_config(tmp_path / "plain", mini_catalog, optim={"batch_size": 4}), torch.Generator().manual_seed(0))
    grouped = epoch_order(data, config, torch.Generator().manual_seed(0))
    types = article_type_ids(products)
    assert _types_per_batch(grouped, types, 4) < _types_per_batch(plain, types, 4)  # the config reaches the epoch's order
    result = run_recipe(config, progress=False)
    assert len(result.history) == 2
    with pytest.raises(ConfigError, match="grouped_batches"):
        small_config(tmp_path / "bad", mini_catalog, grouped_batches=1.5)
