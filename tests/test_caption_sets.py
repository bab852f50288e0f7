"""Caption sets: templates and wordings as data files, one caption per template and product."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modalens.catalog.schema import Product
from modalens.prompts import CAPTION_TEMPLATES, CaptionSetError, caption_set_names, load_caption_set
from modalens.recipes.data import caption_table


def _shirt(pid: str = "p1", **extra: str) -> Product:
    attributes = {"colour": "Navy Blue", "article_type": "Tshirts", "gender": "Men", "sub_category": "Topwear",
                  "master_category": "Apparel", "usage": "Casual", "season": "Summer", "year": "2012", **extra}  # fmt: skip
    return Product(id=pid, title="Nike Dri-FIT Tee", attributes=attributes)


def test_shipped_sets_load_and_basic_is_the_default_models_captions():
    assert {"basic", "rich"} <= set(caption_set_names())
    basic = load_caption_set("basic")
    assert basic.templates == CAPTION_TEMPLATES
    assert len(load_caption_set("rich").templates) > len(basic.templates)


def test_one_caption_per_template_with_colour_next_to_the_garment():
    rich = load_caption_set("rich")
    built = rich.captions(_shirt())
    assert set(built) == set(rich.templates)
    assert built["title"] == "Nike Dri-FIT Tee"
    colour_words = ("navy blue", "navy", "dark blue")
    type_words = rich.synonyms["article_type"]["t-shirt"]
    colour_type = built["colour_type"]
    assert any(colour_type == f"{c} {t}" for c in colour_words for t in type_words), colour_type


def test_wordings_are_fixed_per_product_and_vary_across_products():
    rich = load_caption_set("rich")
    assert rich.captions(_shirt("p1")) == rich.captions(_shirt("p1"))
    said = {rich.captions(_shirt(f"p{i}"))["a_type"] for i in range(60)}
    assert said == {f"a photo of a {w}" for w in rich.synonyms["article_type"]["t-shirt"]}


def test_select_keeps_named_templates_and_refuses_unknown_ones():
    rich = load_caption_set("rich")
    assert set(rich.select(["title", "colour_type"]).captions(_shirt())) == {"title", "colour_type"}
    assert rich.select([]).templates == rich.templates
    with pytest.raises(CaptionSetError, match="nosuch"):
        rich.select(["nosuch"])


def test_a_users_caption_file_and_bad_files(tmp_path: Path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("templates:\n  plain: '{colour} {article_type}'\nsynonyms:\n  colour:\n    navy blue: [navy]\n")
    assert load_caption_set(str(mine)).captions(_shirt()) == {"plain": "navy t-shirt"}
    broken = tmp_path / "broken.yaml"
    broken.write_text("templates: [not, a, mapping]\n")
    with pytest.raises(CaptionSetError, match="templates"):
        load_caption_set(str(broken))
    with pytest.raises(CaptionSetError, match="no such file"):
        load_caption_set("no-such-set")


def test_caption_table_shares_texts_between_products():
    rich = load_caption_set("rich").select(["colour_type", "title"])
    texts, choices = caption_table([_shirt("a"), _shirt("a")], rich)
    assert choices[0] == choices[1] and len(texts) == 2
    texts, choices = caption_table([_shirt("a")], ["colour_type"])  # names in the basic set, as before
    assert texts == ["navy blue t-shirt"]


def test_training_config_names_a_caption_set(tmp_path: Path):
    from modalens.recipes.config import ConfigError, load_train_config

    good = tmp_path / "good.yaml"
    good.write_text("caption_set: rich\ncaptions: [title, sentence]\n")
    config = load_train_config(good)
    assert config.caption_set == "rich" and config.captions == ["title", "sentence"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("caption_set: rich\ncaptions: [nosuch]\n")
    with pytest.raises(ConfigError, match="nosuch"):
        load_train_config(bad)
    missing = tmp_path / "missing.yaml"
    missing.write_text("caption_set: nowhere\n")
    with pytest.raises(ConfigError, match="nowhere"):
        load_train_config(missing)


def test_template_weights_repeat_a_templates_caption_in_the_draw(tmp_path: Path):
    weighted = tmp_path / "weighted.yaml"
    weighted.write_text("templates:\n  title: {template: '{title}', weight: 3}\n  plain: '{colour} {article_type}'\n")
    texts, choices = caption_table([_shirt()], load_caption_set(str(weighted)))
    assert sorted(texts[i] for i in choices[0]) == ["Nike Dri-FIT Tee"] * 3 + ["navy blue t-shirt"]
    bad = tmp_path / "bad-weight.yaml"
    bad.write_text("templates:\n  title: {template: '{title}', weight: 0}\n")
    with pytest.raises(CaptionSetError, match="weight"):
        load_caption_set(str(bad))


@pytest.mark.parametrize("template", ["{}", "{title", "{title!r}", "{title:>{width}}", "{title.upper}", "{0}"])
def test_templates_that_could_only_fail_mid_training_are_refused_when_loaded(tmp_path: Path, template: str):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"templates": {"a": template}}))
    with pytest.raises(CaptionSetError, match="template 'a'"):
        load_caption_set(str(bad))


def test_synonyms_must_be_a_mapping(tmp_path: Path):
    bad = tmp_path / "bad-synonyms.yaml"
    bad.write_text("templates:\n  a: '{colour}'\nsynonyms: [1, 2]\n")
    with pytest.raises(CaptionSetError, match="synonyms"):
        load_caption_set(str(bad))
