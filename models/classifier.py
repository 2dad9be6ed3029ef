"""Photo -> ranked classes with scores, "known", information and nearest examples: the serving path."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from models.bundle import ArtifactBundle, BundleError
from models.catalog import fallback_info, localize
from models.featurizer import Featurizer, featurize_photos
from models.manifest import Manifest
from models.preprocess import (
    DEFAULT_MAX_PIXELS,
    PREPROCESSING_VERSION,
    Photo,
    empty_scene_photos,
    preprocess_photo,
)
from models.probe import FruitProbe
from models.scoring import (
    class_members,
    min_per_class,
    pairwise_distances,
    plain_coordinates,
    project,
    row_runs,
    scores_from_distances,
    squared_norms,
    view_scale,
)
from models.search import class_distances_from_neighbours

# Neighbours asked of the index per photo: the nearest classes come out of them, the classes
# shown are then measured over all their own rows.
INDEX_NEIGHBOURS = 256
# Rows projected at a time when the plain coordinates are made in float32 (bounds the float64 block).
_PLAIN_BLOCK = 65536
# A class whose rows lie in more runs than this is measured from one gathered copy.
_MAX_RUNS = 32
# A class this many temperatures farther than the nearest has softmax weight under 1e-6 of it,
# so it is left at its neighbour bound instead of measured (docs/decisions.md, the index).
_NEGLIGIBLE_LOGIT = float(np.log(1e6))


def photo_id(source: str) -> str:
    """A training photo's public id: stable for its URI, and it reveals nothing of the URI."""
    return hashlib.sha256(source.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Example:
    source: str
    distance: float

    @property
    def photo_id(self) -> str:
        return photo_id(self.source)


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
    # Every class's score, in the classifier's class order (for answers by fruit).
    scores: tuple[float, ...] = ()
    fruit_confidence: float = 0.0  # p(the best class's fruit): the probe's and the neighbours' mean
    variety_confidence: float = 0.0  # p(the best class | its fruit), the neighbours'


@dataclass(frozen=True)
class FruitScore:
    fruit: str
    score: float


def check_compatible(manifest: Manifest, featurizer: Featurizer) -> None:
    """Refuse a bundle whose rows came from another model or preprocessing than ours."""
    want, have = manifest.featurizer, featurizer.spec
    if (want.kind, want.image_size, want.precision) != (have.kind, have.image_size, have.precision):
        raise BundleError(
            f"bundle {manifest.version} needs {want.name} at {want.image_size}px in {want.precision}, "
            f"this process runs {have.name} at {have.image_size}px in {have.precision}"
        )
    if featurizer.weights_sha256 != manifest.weights.sha256:
        raise BundleError(
            f"bundle {manifest.version} was built with weights {manifest.weights.sha256[:12]}, "
            f"this process's model has {featurizer.weights_sha256[:12]}"
        )
    if manifest.preprocessing.version != PREPROCESSING_VERSION:
        raise BundleError(
            f"bundle {manifest.version} was built with preprocessing "
            f"{manifest.preprocessing.version}, this process runs {PREPROCESSING_VERSION}"
        )
    if featurizer.dim != manifest.feature_dim:
        raise BundleError(f"bundle {manifest.version}: feature size differs from the model's")


class Classifier:
    """The inference pipeline: a bundle and the model that matches it, built once and shared
    by all requests. photo -> preprocess -> featurize -> project -> classify; each step is a
    method, so a caller may batch the model call (the service's micro-batcher does)."""

    def __init__(
        self,
        bundle: ArtifactBundle,
        featurizer: Featurizer,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        n_examples: int = 3,
        neighbours: int = INDEX_NEIGHBOURS,
    ):
        check_compatible(bundle.manifest, featurizer)
        self.bundle = bundle
        self.featurizer = featurizer
        self.max_pixels = max_pixels
        self.n_examples = n_examples
        if neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {neighbours}")
        self.neighbours = neighbours
        self._classes = bundle.classes.tolist()
        self._members = class_members(bundle.label_idx, len(self._classes))
        self._fruit_of = [localize(c, bundle.catalog.get(c), "en").fruit for c in self._classes]
        self.probe = FruitProbe(bundle.probe_fruits, bundle.probe_coef, bundle.probe_intercept)
        fruits = bundle.probe_fruits.tolist()
        if set(fruits) != set(self._fruit_of):
            raise BundleError(f"bundle {bundle.version}: the fruit probe's fruits differ from the classes'")
        # Each class's fruit, as a column of the probe's output.
        self._class_fruit = np.array([fruits.index(f) for f in self._fruit_of])
        self._fruit_classes = [np.flatnonzero(self._class_fruit == f) for f in range(len(fruits))]
        self._probe_min_confidence = bundle.manifest.probe.min_confidence
        # Public photo id -> URI of the training photos this bundle can show as examples.
        self._photos = {photo_id(s): s for s in dict.fromkeys(bundle.sources.tolist())}
        calibration = bundle.manifest.calibration
        self._temperature = calibration.temperature
        self._row_scale = view_scale(bundle.views, calibration.view_distance_factor)
        self._label_idx = bundle.label_idx
        self._plain_map = np.asarray(bundle.plain_map, dtype=np.float64)
        # With an index (loaded and checked with the bundle) a request measures only the rows of
        # the classes it shows, so the rows stay float32; exact search measures every row per
        # request, from float64 copies made once with their squared norms.
        self._index = bundle.search_index
        # The plain PCA coordinates: the weighted ones rank the classes (light and contrast do
        # not outweigh the rest); whether the photo is one of them at all is also asked in
        # plain coordinates, where a text page's overall activation, unlike any fruit's, counts.
        if self._index is None:
            self._rows = np.asarray(bundle.embeddings, dtype=np.float64)
            self._rows_squared = (self._rows * self._rows).sum(1)
            self._plain_rows = plain_coordinates(self._rows, self._plain_map)
            self._plain_rows_squared = (self._plain_rows * self._plain_rows).sum(1)
        else:
            self._rows = np.asarray(bundle.embeddings, dtype=np.float32)
            self._plain_rows = np.empty_like(self._rows)
            for start in range(0, len(self._rows), _PLAIN_BLOCK):
                block = self._rows[start : start + _PLAIN_BLOCK]
                self._plain_rows[start : start + _PLAIN_BLOCK] = plain_coordinates(block, self._plain_map)
            # Squared norms in float64 (8 bytes a row), as the exact path's: measuring a class
            # then reads only its rows, through slices where they lie together (the job writes
            # them sorted by URI, so a class is one or a few runs), never a gathered copy.
            self._rows_squared = squared_norms(self._rows, _PLAIN_BLOCK)
            self._plain_rows_squared = squared_norms(self._plain_rows, _PLAIN_BLOCK)
            self._runs = [row_runs(m) for m in self._members]
        # Where the model puts photos of a bare backdrop (white, black, ...): a photo nearer to
        # one of them than to every class shows no fruit (a blank page, a covered lens). Derived
        # from the model alone, so the bundle needs no field for it.
        self.empty_scenes = self.project(self.featurize(empty_scene_photos(featurizer.spec.image_size)))
        self._plain_empty_scenes = plain_coordinates(self.empty_scenes, self._plain_map)

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def search_kind(self) -> str:
        """How the reference rows are searched: exact, or the index's kind."""
        return "exact" if self._index is None else self._index.info.kind

    @property
    def random_weights(self) -> bool:
        return self.featurizer.spec.random_weights

    def photo_source(self, public_id: str) -> str | None:
        """The URI of the training photo with this public id, if this bundle has it."""
        return self._photos.get(public_id)

    def fruit_label(self, fruit: str) -> str:
        """A class of this fruit (whose catalog entry names the fruit)."""
        return self._classes[self._fruit_of.index(fruit)]

    def fruit_scores(self, result: Classification, n: int) -> list[FruitScore]:
        """The `n` best fruits, each scored by the sum of its varieties' scores."""
        sums: dict[str, float] = {}
        for fruit, score in zip(self._fruit_of, result.scores, strict=True):
            sums[fruit] = sums.get(fruit, 0.0) + score
        ranked = sorted(sums.items(), key=lambda kv: -kv[1])[:n]
        return [FruitScore(fruit, score) for fruit, score in ranked]

    def preprocess(self, photo: bytes) -> Photo:
        """Bytes -> the decoded photo and its model input (models.preprocess.preprocess_photo);
        raises models.preprocess.ImageError."""
        return preprocess_photo(photo, self.featurizer.spec.image_size, max_pixels=self.max_pixels)

    def featurize(self, inputs: Sequence[Photo]) -> np.ndarray:
        """Photos -> features (n, D): the model calls, the expensive step (a second call for the
        photos whose fruit is small in the frame)."""
        return featurize_photos(self.featurizer, inputs)

    def project(self, features: np.ndarray) -> np.ndarray:
        """Features (n, D) -> PCA embeddings (n, K), exactly as the job computes them."""
        b = self.bundle
        return project(features, b.scaler_mean, b.scaler_scale, b.pca_components)

    def class_scores(self, embeddings: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, C) class scores and (n, F) fruit probabilities. A fruit's probability is the mean of
        the probe's and the neighbours' (their softmax summed over its varieties); its varieties
        share it as the neighbours rank them, so a fruit's varieties sum to its probability."""
        neighbours = scores_from_distances(dist, self._temperature)
        per_fruit = np.zeros((len(neighbours), len(self.probe.fruits)))
        np.add.at(per_fruit.T, self._class_fruit, neighbours.T)
        fruit_p = (self.probe.probabilities(embeddings) + per_fruit) / 2
        # Each fruit's own softmax over its varieties: defined even where the overall one
        # underflows to 0 for all of them.
        share = np.zeros_like(neighbours)
        for members in self._fruit_classes:
            share[:, members] = scores_from_distances(dist[:, members], self._temperature)
        return fruit_p[:, self._class_fruit] * share, fruit_p

    def classify(self, embeddings: np.ndarray, top_k: int) -> list[Classification]:
        """Embeddings (n, K) -> one answer each: ranked classes, scores, known, examples."""
        top_k = min(top_k, len(self._classes))
        if self._index is None:
            d = pairwise_distances(embeddings, self._rows, self._rows_squared) * self._row_scale[None, :]
            dist, _ = min_per_class(d, self._members)
            measured: list[Callable[[int], np.ndarray]] = [
                lambda c, row=row: row[self._members[c]] for row in d
            ]
        else:
            dist, measured = self._indexed_distances(embeddings, top_k)
        scores, fruit_p = self.class_scores(embeddings, dist)
        to_empty = pairwise_distances(embeddings, self.empty_scenes).min(1)
        plain = plain_coordinates(embeddings, self._plain_map)
        plain_to_empty = pairwise_distances(plain, self._plain_empty_scenes).min(1)
        return [
            self._answer(
                measured[i],
                dist[i],
                scores[i],
                top_k,
                float(to_empty[i]),
                plain[i],
                float(plain_to_empty[i]),
                fruit_p[i],
            )
            for i in range(len(embeddings))
        ]

    def _indexed_distances(
        self, embeddings: np.ndarray, top_k: int
    ) -> tuple[np.ndarray, list[Callable[[int], np.ndarray]]]:
        """(n, C) class distances from the index's nearest rows, completed by measuring classes
        over all their rows; per photo, a class -> its row distances (as class_members orders them).

        A class absent from the neighbours gets their farthest distance, a bound none of its rows
        beats. Measured until settled: every class whose softmax weight under its bound is not
        negligible, and every variety of each fruit as likely as the top_k-th score (only those
        can be shown). The shown classes, their scores and the best (which decides known) are
        then exact's."""
        k = min(self.neighbours, self._index.n_rows)
        near_d, near_i = self._index.search(embeddings, k)
        dist, _, certain = class_distances_from_neighbours(
            near_d, near_i, self._label_idx, len(self._classes), self._row_scale
        )
        certain &= np.isfinite(near_d[:, -1:])  # fewer than k found: nothing is bounded
        farthest = np.where(np.isfinite(near_d), near_d, -np.inf).max(1, keepdims=True)
        dist = np.where(np.isfinite(dist), dist, np.maximum(farthest, 0.0))
        margin = self._temperature * _NEGLIGIBLE_LOGIT
        measured = []
        for i, query in enumerate(embeddings):
            settled, rows = certain[i].copy(), {}
            while True:
                scores, fruit_p = self.class_scores(query[None], dist[i : i + 1])
                kth = np.partition(scores[0], -top_k)[-top_k]
                likely = (fruit_p[0] >= kth * (1 - 1e-9))[self._class_fruit]
                todo = np.flatnonzero(~settled & (likely | (dist[i] <= dist[i].min() + margin)))
                if not len(todo):
                    break
                for c in todo.tolist():
                    rows[c] = self._member_distances(query, c)
                    dist[i, c] = rows[c].min() if len(rows[c]) else np.inf
                settled[todo] = True
            measured.append(partial(self._cached_member_distances, rows, query))
        return dist, measured

    def _cached_member_distances(self, rows: dict[int, np.ndarray], query: np.ndarray, c: int) -> np.ndarray:
        if c not in rows:
            rows[c] = self._member_distances(query, c)
        return rows[c]

    def _member_distances(self, query: np.ndarray, c: int) -> np.ndarray:
        """A photo's distances to class c's rows (indexed path), views counted times their factor."""
        return self._class_distances(query, c, self._rows, self._rows_squared)

    def _class_distances(
        self, query: np.ndarray, c: int, rows: np.ndarray, squared: np.ndarray
    ) -> np.ndarray:
        """Distances to class c's rows of `rows`, in class_members order, times the views' factor."""
        runs = self._runs[c]
        if len(runs) > _MAX_RUNS:  # scattered rows: one gathered copy costs less than many calls
            m = self._members[c]
            return pairwise_distances(query[None], rows[m], squared[m])[0] * self._row_scale[m]
        scale = self._row_scale
        parts = [pairwise_distances(query[None], rows[a:b], squared[a:b])[0] * scale[a:b] for a, b in runs]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros(0)  # a class without rows: none

    def _plain_distance(self, plain: np.ndarray, c: int) -> float:
        """A photo's distance, in plain PCA coordinates, to class c's nearest training row."""
        if self._index is not None:
            return float(self._class_distances(plain, c, self._plain_rows, self._plain_rows_squared).min())
        rows = self._members[c]
        d = pairwise_distances(plain[None], self._plain_rows[rows], self._plain_rows_squared[rows])[0]
        return float((d * self._row_scale[rows]).min())

    def _answer(
        self,
        measured: Callable[[int], np.ndarray],
        dist: np.ndarray,
        scores: np.ndarray,
        top_k: int,
        to_empty: float,
        plain: np.ndarray,
        plain_to_empty: float,
        fruit_p: np.ndarray,
    ) -> Classification:
        order = np.argsort(-scores, kind="stable")[:top_k]
        matches = []
        for c in order:
            drow = measured(int(c))
            ranked = np.argsort(drow, kind="stable")
            matches.append(
                ClassMatch(
                    label=self._classes[c],
                    score=float(scores[c]),
                    distance=float(dist[c]),
                    threshold=float(self.bundle.thresholds[c]),
                    info=self.bundle.catalog.get(self._classes[c]) or fallback_info(self._classes[c]),
                    examples=self._examples(self._members[c][ranked], drow[ranked]),
                )
            )
        best = matches[0]
        # Sure enough of the fruit, and the photo nearer to that variety than to a bare backdrop,
        # with the weighted distances and again in plain coordinates.
        fruit_confidence = float(fruit_p[self._class_fruit[order[0]]])
        known = (
            fruit_confidence >= self._probe_min_confidence
            and best.distance < to_empty
            and self._plain_distance(plain, order[0]) < plain_to_empty
        )
        return Classification(
            label=best.label,
            known=bool(known),
            top_k=matches,
            scores=tuple(scores.tolist()),
            fruit_confidence=fruit_confidence,
            variety_confidence=best.score / max(fruit_confidence, 1e-300),
        )

    def _examples(self, ranked: np.ndarray, ranked_dist: np.ndarray) -> list[Example]:
        """The nearest distinct training photos (rows nearest first, with their distances): a
        photo's augmented views point to it once."""
        out: list[Example] = []
        seen: set[str] = set()
        for j, distance in zip(ranked, ranked_dist, strict=True):
            source = str(self.bundle.sources[j])
            if source not in seen:
                seen.add(source)
                out.append(Example(source, float(distance)))
                if len(out) == self.n_examples:
                    break
        return out
