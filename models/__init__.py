"""Shared core: photo bytes -> feature vector -> class. numpy, Pillow, Keras only: no Spark, no FastAPI."""

from models.bundle import ArtifactBundle, BundleError, read_bundle
from models.classifier import Classification, Classifier, ClassMatch
from models.featurizer import Featurizer, FeaturizerSpec, build_featurizer, featurize_bytes, featurize_photos
from models.preprocess import ImageError, preprocess_photo
from models.storage import storage_for

__all__ = [
    "ArtifactBundle",
    "BundleError",
    "Classification",
    "ClassMatch",
    "Classifier",
    "Featurizer",
    "FeaturizerSpec",
    "ImageError",
    "build_featurizer",
    "featurize_bytes",
    "featurize_photos",
    "preprocess_photo",
    "read_bundle",
    "storage_for",
]
