"""Token states: a cache of rows of any length, and text_states computing each text once."""

from __future__ import annotations

import numpy as np

from modalens.encoders.features import FeatureStore, TokenStore, text_key, text_states


class CountingStatesTower:
    """Token states = one row per word (its length and position), pooled = their mean; counts the texts it encodes."""

    name = "fake-states"
    max_length = 16
    output_dim = 2

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode_states(self, texts):
        self.encoded += list(texts)
        longest = max(len(t.split()) for t in texts)
        states = np.zeros((len(texts), longest, 2), np.float32)
        mask = np.zeros((len(texts), longest), np.int64)
        for i, t in enumerate(texts):
            for j, word in enumerate(t.split()):
                states[i, j] = (len(word), j)
                mask[i, j] = 1
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled, states, mask


def test_token_states_are_each_texts_own_tokens_cached_once(tmp_path):
    texts = ["red shirt", "blue jeans above red shirt", "red shirt", "a"]
    tower = CountingStatesTower()
    store, pooled = TokenStore(tmp_path, "t"), FeatureStore(tmp_path, "p")
    states = text_states(tower, texts, store=store, pooled_store=pooled)
    assert sorted(tower.encoded) == sorted(set(texts))  # the repeated text is encoded once
    assert [len(states.row(i)) for i in range(len(texts))] == [2, 5, 2, 1]  # padding dropped
    batch, mask = states.batch([1, 3])
    assert batch.shape == (2, 5, 2) and mask.tolist() == [[1] * 5, [1, 0, 0, 0, 0]]
    assert batch[1, 0].tolist() == [1, 0] and not batch[1, 1:].any()
    assert np.allclose(pooled.get(text_key("blue jeans above red shirt")), [(4 + 5 + 5 + 3 + 5) / 5, 2])
    store.flush()

    again = CountingStatesTower()
    reread = text_states(again, texts, store=TokenStore(tmp_path, "t"))
    assert again.encoded == []  # all from disk
    assert all(np.array_equal(reread.row(i), states.row(i)) for i in range(len(texts)))
