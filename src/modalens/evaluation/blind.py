"""Text-only (blind) baselines: how far the captions alone give a benchmark's answer away.

A compositional benchmark is only a test of the image if a model that never
sees it scores near chance: otherwise the negatives are detectable from
grammar or plausibility alone (SugarCrepe's finding for the earlier ARO and
CREPE sets). The baseline here is a word bigram language model with
interpolated absolute discounting, fitted on training captions: it prefers
the caption it finds more probable.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from typing import Iterable

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def tokens(text: str) -> list[str]:
    """Lower-case words and punctuation marks, with sentence start and end marks."""
    return ["<s>", *_TOKEN.findall(text.lower()), "</s>"]


class BigramLM:
    """A bigram language model, interpolated with its unigrams (absolute discount ``discount``), add-one unigrams."""

    def __init__(self, discount: float = 0.75) -> None:
        self.discount = discount
        self.unigrams: Counter[str] = Counter()
        self.bigrams: dict[str, Counter[str]] = defaultdict(Counter)
        self._total = 0
        self._following: dict[str, int] = {}

    def fit(self, texts: Iterable[str]) -> "BigramLM":
        for text in texts:
            words = tokens(text)
            self.unigrams.update(words[1:])
            for a, b in zip(words, words[1:]):
                self.bigrams[a][b] += 1
        self._total = sum(self.unigrams.values())
        self._following = {a: sum(following.values()) for a, following in self.bigrams.items()}
        return self

    def _unigram(self, word: str) -> float:
        vocabulary = len(self.unigrams) + 1  # one slot for every unseen word
        return (self.unigrams.get(word, 0) + 1) / (self._total + vocabulary)

    def logprob(self, text: str) -> float:
        """The caption's log probability (natural log), summed over its words."""
        total = 0.0
        words = tokens(text)
        for a, b in zip(words, words[1:]):
            following = self.bigrams.get(a)
            if not following:
                total += math.log(self._unigram(b))
                continue
            count = self._following[a]
            backoff = self.discount * len(following) / count
            p = max(following.get(b, 0) - self.discount, 0) / count + backoff * self._unigram(b)
            total += math.log(p)
        return total
