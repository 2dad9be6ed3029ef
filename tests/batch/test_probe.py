"""The fruit probe as the service applies it (numpy) against scikit-learn's own answers."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from batch.probe import train_probe


@pytest.mark.parametrize("n_fruits", [2, 4])
def test_the_folded_probe_gives_scikit_learns_probabilities(n_fruits):
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=6.0, size=(n_fruits, 6))
    fruit = rng.integers(0, n_fruits, 300)
    x = centres[fruit] + rng.normal(size=(300, 6)) * 2.0
    names = np.array([f"fruit{i}" for i in range(n_fruits)])[fruit]
    probe = train_probe(x, names, c=0.5)
    # Independently: the same model fitted by scikit-learn on the rows over their overall spread.
    spread = x.std()
    theirs = LogisticRegression(C=0.5, max_iter=1000, class_weight="balanced").fit(x / spread, names)
    queries = rng.normal(scale=3.0, size=(50, 6))
    np.testing.assert_allclose(
        probe.probabilities(queries), theirs.predict_proba(queries / spread), atol=1e-9
    )
    assert probe.fruits.tolist() == sorted(set(names.tolist()))
    assert (probe.fruits[probe.probabilities(x).argmax(1)] == names).mean() > 0.9


def test_one_fruit_is_refused():
    with pytest.raises(ValueError, match="two fruits"):
        train_probe(np.zeros((4, 2)), np.array(["apple"] * 4))
