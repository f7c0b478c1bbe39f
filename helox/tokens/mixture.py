"""Mixing sources by weight: each source's share of the train split's tokens.

A source's weight, over the sum of the weights, is its share of the train tokens; the
mixture holds as many train tokens as the sources hold together (`repeat_factors`). A
source above its share is downsampled and one below it upsampled, by whole documents:
`Resampler` gives each train document a number of copies (0, 1, 2, ...) so that the tokens
written follow factor × tokens read to within one document, deterministically (a seeded
hash of the text dithers the rounding). Validation and test documents are never
resampled, so they keep the corpus's natural proportions.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping

log = logging.getLogger(__name__)

# Past about four epochs, repeated tokens are worth much less than new ones (Muennighoff
# et al., "Scaling Data-Constrained Language Models", 2023): a source repeated more is named.
MAX_QUIET_EPOCHS = 4.0


class MixtureError(ValueError):
    """A weight cannot be met: its source has no training tokens left."""


def repeat_factors(
    weights: Mapping[str, float], natural_tokens: Mapping[str, int]
) -> dict[str, float]:
    """Per source, the copies of each train token that give it its weight's share.

    The mixed train split holds as many tokens as all sources together; a factor of 2.0
    means each document twice on average (two epochs of the source), 0.5 half of them.
    """
    total_weight = sum(weights.values())
    total_tokens = sum(natural_tokens.get(name, 0) for name in weights)
    factors = {}
    for name, weight in weights.items():
        tokens = natural_tokens.get(name, 0)
        if tokens <= 0:
            raise MixtureError(
                f"corpus source {name!r} has weight {weight} but no training tokens left "
                "after cleaning and deduplication: check its folder and the clean stats"
            )
        factors[name] = weight / total_weight * total_tokens / tokens
        if factors[name] > MAX_QUIET_EPOCHS:
            log.warning(
                "corpus source %r: weight %s of %s repeats each of its documents about %.1f "
                "times (%d training tokens); past %.0f epochs repeats add little and invite "
                "memorisation: lower its weight in corpus.sources or give it more text",
                name,
                weight,
                total_weight,
                factors[name],
                tokens,
                MAX_QUIET_EPOCHS,
            )
    return factors


def dither(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by the text and the seed (independent of the split's hash)."""
    digest = hashlib.blake2b(
        text.encode("utf-8", "surrogatepass"),
        digest_size=8,
        key=seed.to_bytes(8, "little"),
        person=b"helox-mix",
    )
    return int.from_bytes(digest.digest(), "little") / 2**64


class Resampler:
    """How many copies of each train document to write, per source, carrying the rounding.

    Each source keeps a credit of tokens owed: a document of t tokens adds factor × t, and
    takes floor(credit / t + u) copies (u from `dither`, never fewer than 0), each paying t.
    The credit stays within one document's tokens, so what is written matches the factor.
    """

    def __init__(self, factors: Mapping[str, float], seed: int):
        self.factors = dict(factors)
        self.seed = seed
        self.credit = dict.fromkeys(self.factors, 0.0)

    def copies(self, corpus: str, text: str, tokens: int) -> int:
        factor = self.factors.get(corpus, 1.0)
        if factor == 1.0:
            return 1
        self.credit[corpus] = self.credit.get(corpus, 0.0) + factor * tokens
        count = max(0, math.floor(self.credit[corpus] / tokens + dither(text, self.seed)))
        self.credit[corpus] -= count * tokens
        return count
