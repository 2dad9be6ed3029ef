"""A network's ImageNet head, and the catalog fruits its classes name (models/data/imagenet_fruits.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

IMAGENET_CLASSES = 1000


@dataclass(frozen=True, eq=False)
class ImageNetHead:
    """The 1000-class classifier on a network's pooled features: probabilities = softmax(f W + b).
    Dropout is off at inference, so the head is this one affine map of the features."""

    kernel: np.ndarray  # (dim, 1000)
    bias: np.ndarray  # (1000,)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = np.asarray(features, np.float64) @ self.kernel.astype(np.float64) + self.bias
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)


@dataclass(frozen=True)
class HeadClass:
    index: int
    name: str
    fruits: tuple[str, ...]  # the catalog fruits a photo of this class may show; () for none


@cache
def head_classes() -> tuple[HeadClass, ...]:
    """The ImageNet classes that name produce: catalog fruits first, then produce the catalog
    lacks (fruits ())."""
    data = json.loads(resources.files("models").joinpath("data/imagenet_fruits.json").read_text())
    named = [HeadClass(c["index"], c["name"], tuple(c["fruits"])) for c in data["classes"]]
    other = [HeadClass(c["index"], c["name"], ()) for c in data["produce_not_in_catalog"]]
    return tuple(named + other)
