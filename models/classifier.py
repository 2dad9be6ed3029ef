"""Photo -> ranked classes with scores, "known", information and nearest examples: the serving path."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.bundle import ArtifactBundle, BundleError
from models.catalog import fallback_info
from models.featurizer import Featurizer, FeaturizerSpec
from models.preprocess import (
    DEFAULT_MAX_PIXELS,
    PREPROCESSING_VERSION,
    empty_scene_inputs,
    preprocess_image,
)
from models.scoring import (
    class_members,
    min_per_class,
    pairwise_distances,
    project,
    scores_from_distances,
    view_scale,
)

RANDOM_WEIGHTS_WARNING = (
    "This model uses RANDOM weights (a demo/test build, not trained on ImageNet): "
    "its answers only reflect pixel statistics of the training photos."
)


@dataclass(frozen=True)
class Example:
    source: str
    distance: float


@dataclass(frozen=True)
class ClassMatch:
    label: str
    score: float
    distance: float
    threshold: float
    info: dict
    examples: list[Example]


@dataclass(frozen=True)
class Classification:
    label: str
    known: bool
    top_k: list[ClassMatch] = field(default_factory=list)


def spec_of(manifest: dict) -> FeaturizerSpec:
    """The featurizer a bundle was built with, as recorded in its manifest."""
    return FeaturizerSpec(**manifest["featurizer"]).validated()


def check_compatible(bundle: ArtifactBundle, featurizer: Featurizer) -> None:
    """Refuse a bundle whose embeddings came from another model than the one we run."""
    want = spec_of(bundle.manifest)
    if featurizer.spec.kind != want.kind or featurizer.spec.image_size != want.image_size:
        raise BundleError(
            f"bundle {bundle.version} needs {want.name} at {want.image_size}px, "
            f"the service runs {featurizer.spec.name} at {featurizer.spec.image_size}px"
        )
    if featurizer.weights_sha256 != bundle.manifest["weights"]["sha256"]:
        raise BundleError(
            f"bundle {bundle.version} was built with weights {bundle.manifest['weights']['sha256'][:12]}, "
            f"the service's model has {featurizer.weights_sha256[:12]}"
        )
    made_by = bundle.manifest.get("preprocessing", {}).get("version")
    if made_by != PREPROCESSING_VERSION:
        raise BundleError(
            f"bundle {bundle.version} was built with preprocessing {made_by}, "
            f"the service runs {PREPROCESSING_VERSION}"
        )
    if featurizer.dim != bundle.pca_components.shape[1]:
        raise BundleError(f"bundle {bundle.version}: feature size differs from the model's")


class Classifier:
    """A bundle and the model that matches it; built once, then shared by all requests."""

    def __init__(
        self,
        bundle: ArtifactBundle,
        featurizer: Featurizer,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        n_examples: int = 3,
    ):
        check_compatible(bundle, featurizer)
        self.bundle = bundle
        self.featurizer = featurizer
        self.max_pixels = max_pixels
        self.n_examples = n_examples
        self._classes = bundle.classes.tolist()
        self._members = class_members(bundle.label_idx, len(self._classes))
        self._temperature = float(bundle.manifest["calibration"]["temperature"])
        self._min_confidence = float(bundle.manifest["calibration"]["min_confidence"])
        factor = float(bundle.manifest["calibration"]["view_distance_factor"])
        self._row_scale = view_scale(bundle.views, factor)
        # Where the model puts photos of a bare backdrop (white as in Fruits-360, black, ...): a
        # photo nearer to one of them than to every class shows no fruit (a blank page, text on
        # paper, a covered lens), however wide a class's threshold. Derived from the model
        # alone, so old bundles need no new field.
        self.empty_scenes = self.embed(empty_scene_inputs(featurizer.spec.image_size))

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def random_weights(self) -> bool:
        return self.featurizer.spec.random_weights

    def preprocess(self, photo: bytes) -> np.ndarray:
        """Bytes -> model input; raises models.preprocess.ImageError."""
        return preprocess_image(photo, self.featurizer.spec.image_size, max_pixels=self.max_pixels)

    def features(self, inputs: np.ndarray) -> np.ndarray:
        return self.featurizer.embed(inputs)

    def embed(self, inputs: np.ndarray) -> np.ndarray:
        """Model inputs (n, s, s, 3) -> PCA embeddings (n, K), exactly as the job computes them."""
        b = self.bundle
        return project(self.features(inputs), b.scaler_mean, b.scaler_scale, b.pca_components)

    def classify_embeddings(self, z: np.ndarray, top_k: int) -> list[Classification]:
        d = pairwise_distances(z, self.bundle.embeddings) * self._row_scale[None, :]
        dist, _ = min_per_class(d, self._members)
        scores = scores_from_distances(dist, self._temperature)
        top_k = min(top_k, len(self._classes))
        to_empty = pairwise_distances(z, self.empty_scenes).min(1)
        return [self._answer(d[i], dist[i], scores[i], top_k, float(to_empty[i])) for i in range(len(z))]

    def _answer(
        self, drow: np.ndarray, dist: np.ndarray, scores: np.ndarray, top_k: int, to_empty: float = np.inf
    ) -> Classification:
        order = np.argsort(dist, kind="stable")[:top_k]
        matches = []
        for c in order:
            members = self._members[c]
            matches.append(
                ClassMatch(
                    label=self._classes[c],
                    score=float(scores[c]),
                    distance=float(dist[c]),
                    threshold=float(self.bundle.thresholds[c]),
                    info=self.bundle.catalog.get(self._classes[c]) or fallback_info(self._classes[c]),
                    examples=self._examples(members[np.argsort(drow[members], kind="stable")], drow),
                )
            )
        best = matches[0]
        known = (
            best.distance <= best.threshold
            and best.distance < to_empty
            and best.score >= self._min_confidence
        )
        return Classification(label=best.label, known=known, top_k=matches)

    def _examples(self, ranked: np.ndarray, drow: np.ndarray) -> list[Example]:
        """The nearest distinct training photos: a photo's augmented views point to it once."""
        out: list[Example] = []
        seen: set[str] = set()
        for j in ranked:
            source = str(self.bundle.sources[j])
            if source not in seen:
                seen.add(source)
                out.append(Example(source, float(drow[j])))
                if len(out) == self.n_examples:
                    break
        return out
