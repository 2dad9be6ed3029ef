"""The fruit probe: a linear map from a photo's embedding to the probability of each fruit.

The job trains it (batch/probe.py) on the reference photos and on real photos of fruit in
scenes; the service applies it with numpy. The fruit comes first: the probe says which fruit,
the nearest reference photos of that fruit say which variety."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A listing label that starts with this marks a real photo of fruit `label[len(REAL_PREFIX):]`:
# it trains the probe (and the PCA) but is never a reference row nor a class.
REAL_PREFIX = "real:"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


@dataclass(frozen=True)
class FruitProbe:
    fruits: np.ndarray  # (F,) sorted fruit ids
    coef: np.ndarray  # (F, K): on the bundle's embeddings, the training standardisation folded in
    intercept: np.ndarray  # (F,)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Embeddings (n, K) -> (n, F) fruit probabilities, each row summing to 1 (float64)."""
        e = np.asarray(embeddings, dtype=np.float64)
        return softmax(e @ np.asarray(self.coef, dtype=np.float64).T + self.intercept)
