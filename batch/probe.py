"""Trains the fruit probe (models/probe.py): scikit-learn's multinomial logistic regression on
the embeddings of the reference photos, their views and the real photos, labelled by fruit."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from models.probe import FruitProbe

# Inverse L2 strength, on the embeddings over their overall spread. Chosen on the real-photo
# development set and the grocery-store validation split (docs/decisions.md); never on a holdout.
PROBE_C = 0.3
PROBE_MAX_ITER = 1000
# Below this probability of its fruit (models.classifier: the probe's and the neighbours' mean)
# an answer is "unknown" (docs/decisions.md: known-but-wrong 0.2% of Test, 0% of grocery val).
PROBE_MIN_CONFIDENCE = 0.6


def train_probe(embeddings: np.ndarray, fruits: np.ndarray, *, c: float = PROBE_C) -> FruitProbe:
    """Fit on the embeddings over their overall spread (one scale: the PCA's tail stays small),
    every fruit weighted alike (a fruit with 15 varieties does not outvote one with one); the
    scale is folded into the returned coefficients."""
    x = np.asarray(embeddings, dtype=np.float64)
    mean, spread = np.zeros(x.shape[1]), float(x.std()) or 1.0
    std = np.full(x.shape[1], spread)
    names = np.asarray(fruits).astype(str)
    if len(set(names.tolist())) < 2:
        raise ValueError("the fruit probe needs photos of at least two fruits")
    model = LogisticRegression(C=c, max_iter=PROBE_MAX_ITER, class_weight="balanced")
    model.fit((x - mean) / std, names)
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # scikit-learn's binary form: p(second) = sigmoid(w x + b)
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    coef = coef / std[None, :]
    intercept = intercept - coef @ mean
    return FruitProbe(fruits=model.classes_.astype(str), coef=coef, intercept=intercept)
