"""Loads the bundle and its model once, and holds the classifier every request reads."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

import numpy as np
from starlette.concurrency import run_in_threadpool

from models.bundle import BundleError, read_bundle
from models.classifier import Classification, Classifier, spec_of
from models.featurizer import Featurizer, build_featurizer
from models.preprocess import empty_scene_inputs
from models.scoring import project
from service.batching import MicroBatcher
from service.settings import Settings

log = logging.getLogger("service")


def load_classifier(
    settings: Settings, version: str | None = None, reuse: Featurizer | None = None
) -> Classifier:
    """Read + validate a bundle, build (or reuse) the matching model; raises BundleError."""
    bundle = read_bundle(settings.artifacts_uri, version)
    spec = spec_of(bundle.manifest)
    if settings.weights_file and not spec.random_weights and spec.kind == "resnet50":
        spec = replace(spec, weights=settings.weights_file)
    if reuse is not None and reuse.spec == spec:
        featurizer = reuse
    else:
        featurizer = build_featurizer(spec, threads=settings.tf_threads)
    classifier = Classifier(
        bundle, featurizer, max_pixels=settings.max_image_pixels, n_examples=settings.n_examples
    )
    # Building the classifier ran one batch; a call of another batch size makes Keras trace
    # its batch-size-generic graph now rather than during the first request (~2 s).
    classifier.features(empty_scene_inputs(spec.image_size)[:1])
    return classifier


class ModelHolder:
    """The classifier in service now. A request reads `current` once, so swapping it
    never changes the model under a request in flight."""

    def __init__(self, classifier: Classifier | None = None):
        self.current = classifier
        # One model call at a time: Keras models are not safe to call from many threads.
        self._model_lock = threading.Lock()
        self.batcher: MicroBatcher | None = None  # set by the app's lifespan

    def require(self) -> Classifier:
        if self.current is None:
            raise BundleError("no model loaded")
        return self.current

    # The micro-batched path used by the routes: preprocess in the thread pool (decoding runs
    # in parallel), then one shared model call per batch on the batcher's single thread.
    def batch_features(self, classifier: Classifier, inputs: list[np.ndarray]) -> list[np.ndarray]:
        with self._model_lock:
            return list(classifier.features(np.stack(inputs)))

    async def photo_features(self, classifier: Classifier, photo: bytes) -> np.ndarray:
        """Raises ImageError (bad photo) or service.batching.Overloaded (queue full)."""
        inputs = await run_in_threadpool(classifier.preprocess, photo)
        if self.batcher is None:
            return (await run_in_threadpool(self.batch_features, classifier, [inputs]))[0]
        return await self.batcher.submit(inputs, key=classifier)

    async def classify_photo(self, classifier: Classifier, photo: bytes, top_k: int) -> Classification:
        features = await self.photo_features(classifier, photo)
        z = project(features[None], *_projection(classifier))
        return classifier.classify_embeddings(z, top_k)[0]

    async def embed_photo(self, classifier: Classifier, photo: bytes) -> tuple[np.ndarray, np.ndarray]:
        features = await self.photo_features(classifier, photo)
        return features, project(features[None], *_projection(classifier))[0]


def _projection(classifier: Classifier) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = classifier.bundle
    return b.scaler_mean, b.scaler_scale, b.pca_components
