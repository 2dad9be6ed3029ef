"""Holds the classifier in service, and loads one from the bundle store."""

from __future__ import annotations

import contextlib
import logging
import threading

from models.bundle import BundleError, read_bundle
from models.classifier import Classifier
from models.featurizer import Featurizer, build_featurizer
from models.preprocess import EMPTY_SCENE_COLOURS, empty_scene_photos
from models.storage import Storage
from service.settings import Settings

log = logging.getLogger("service")


def load_classifier(
    settings: Settings,
    version: str | None = None,
    reuse: Featurizer | None = None,
    model_lock: threading.Lock | None = None,
    storage: Storage | None = None,
) -> Classifier:
    """Read + validate a bundle, build (or reuse) the matching model; raises BundleError.

    A reused model is also serving requests: its calls here run under `model_lock`."""
    bundle = read_bundle(settings.artifacts_uri, version, storage=storage)
    spec = bundle.manifest.featurizer.with_weights_file(settings.weights_file)
    shared = reuse is not None and reuse.spec == spec
    featurizer = reuse if shared else build_featurizer(spec, threads=settings.tf_threads)
    lock = model_lock if shared and model_lock is not None else contextlib.nullcontext()
    with lock:
        classifier = Classifier(
            bundle, featurizer, max_pixels=settings.max_image_pixels, n_examples=settings.n_examples
        )
        # Building the classifier ran one batch; a call of another batch size makes Keras
        # trace its batch-size-generic graph now rather than during the first request (~2 s).
        classifier.featurize(empty_scene_photos(spec.image_size, EMPTY_SCENE_COLOURS[:1]))
    return classifier


class ModelHolder:
    """The classifier in service now. A request reads `current` once, so swapping it never
    changes the model under a request in flight."""

    def __init__(self, classifier: Classifier | None = None):
        self.current = classifier

    def require(self) -> Classifier:
        if self.current is None:
            raise BundleError("no model loaded")
        return self.current
