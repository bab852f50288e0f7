"""One filter vocabulary for the CLI, the REST API, the page and the Python API (``serving.validation.where_clause``)."""

from __future__ import annotations

import pytest

from modalens.serving.validation import FilterError, filter_field, where_clause


@pytest.mark.parametrize(
    "name, field",
    [
        ("articleType", "article_type"), ("article_type", "article_type"), ("Article Type", "article_type"),
        ("baseColour", "colour"), ("color", "colour"), ("colour", "colour"), ("masterCategory", "master_category"),
        ("subCategory", "sub_category"), ("brand", "brand"), ("Brand", "brand"), ("split", "split"), ("Season", "season"),
    ],
)
def test_catalogue_column_names_map_to_the_fields_the_readers_fill(name, field):
    assert filter_field(name) == field


@pytest.mark.parametrize("name", ["colr", "title", "price", "id", "", "fit"])
def test_an_unknown_field_is_an_error_listing_the_allowed_ones(name):
    with pytest.raises(FilterError) as caught:
        where_clause({name: "x"})
    message = str(caught.value)
    assert "allowed: " in message and "article_type (articleType" in message and "price_min, price_max" in message


def test_two_names_of_one_field_pool_their_values_and_prices_ride_along():
    where = where_clause({"baseColour": "Blue", "colour": ["Navy Blue", "Blue"], "price_min": 10}, price_max=50)
    assert where == {"colour": ["Blue", "Navy Blue"], "price_min": 10.0, "price_max": 50.0}
    assert where_clause({}) is None
    with pytest.raises(ValueError, match="above price_max"):
        where_clause({}, price_min=60, price_max=50)
