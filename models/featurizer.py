"""Model input arrays -> feature vectors: ResNet50 (pooled, 2048-d) or the resize-only pixel baseline."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import numpy as np

from models.augment import AugmentSpec, augmented_views
from models.preprocess import ImageError, open_for_model, to_model_input

DEFAULT_IMAGE_SIZE = 224  # the size ResNet50 was trained at
DEFAULT_BATCH_SIZE = 32
# The arithmetic the model runs in. fp32: Keras (TensorFlow), float32 throughout. bf16: the
# same Keras model converted at start-up by OpenVINO and run with bfloat16 inference precision
# (CPUs with AVX512_BF16 or AMX run it natively). Measured here, OpenVINO's bf16 ran 2.3x Keras
# fp32 where Keras' own mixed_bfloat16 policy reached 1.36x and was slower at batch 1 (README).
PRECISIONS = ("fp32", "bf16")
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

log = logging.getLogger("models.featurizer")


@dataclass(frozen=True)
class FeaturizerSpec:
    """What turns a photo into a vector; recorded in the manifest and rebuilt by the service.

    kind:    "resnet50" or "pixels"
    weights: "imagenet", "random:SEED" or a path/URI of a Keras weights file (resnet50 only)
    image_size: side of the square model input, in pixels
    precision: "fp32" or "bf16" (resnet50 only; see PRECISIONS)
    """

    kind: str = "resnet50"
    weights: str = "imagenet"
    image_size: int = DEFAULT_IMAGE_SIZE
    precision: str = "fp32"

    @classmethod
    def parse(
        cls, featurizer: str, weights: str, image_size: int | None, precision: str = "fp32"
    ) -> FeaturizerSpec:
        """Build from CLI-style strings: `resnet50` or `pixels:N` (N is then the image size)."""
        if featurizer.startswith("pixels:"):
            side = int(featurizer.split(":", 1)[1])
            return cls(kind="pixels", weights="none", image_size=side, precision=precision).validated()
        if featurizer != "resnet50":
            raise ValueError(f"unknown featurizer {featurizer!r}: use 'resnet50' or 'pixels:N'")
        return cls("resnet50", weights, image_size or DEFAULT_IMAGE_SIZE, precision).validated()

    def validated(self) -> FeaturizerSpec:
        if self.kind not in ("resnet50", "pixels"):
            raise ValueError(f"unknown featurizer kind {self.kind!r}")
        min_side = 32 if self.kind == "resnet50" else 1
        if not min_side <= self.image_size <= 1024:
            raise ValueError(f"image size must be in {min_side}..1024, got {self.image_size}")
        if self.kind == "resnet50" and self.weights.startswith("random:"):
            int(self.weights.split(":", 1)[1])  # raises on a bad seed
        if self.precision not in PRECISIONS or (self.kind == "pixels" and self.precision != "fp32"):
            raise ValueError(f"precision must be one of {PRECISIONS} (pixels: fp32), got {self.precision!r}")
        return self

    @property
    def random_weights(self) -> bool:
        return self.weights.startswith("random:")

    @property
    def public_weights(self) -> str:
        return public_weights(self.weights)

    @property
    def name(self) -> str:
        return "resnet50" if self.kind == "resnet50" else f"pixels:{self.image_size}"

    def to_dict(self) -> dict:
        return asdict(self)

    def with_weights_file(self, path: str | None) -> FeaturizerSpec:
        """The same model with its weights read from `path` (e.g. ImageNet weights on an
        air-gapped host); random weights and the pixel baseline have no file to swap."""
        if not path or self.kind != "resnet50" or self.random_weights:
            return self
        return replace(self, weights=path)


def public_weights(weights: str) -> str:
    """Weights as a client may see them: imagenet, none and random:SEED as they are; a weights
    file's path or URI (a folder, a bucket) becomes "file", its SHA-256 names it."""
    if weights in ("imagenet", "none") or weights.startswith("random:"):
        return weights
    return "file"


class Featurizer(Protocol):
    """A built model: (n, s, s, 3) float32 RGB in [0, 255] -> (n, dim) float32."""

    spec: FeaturizerSpec
    dim: int
    weights_sha256: str
    precision: str  # what runs: spec.precision, or fp32 where the CPU lacks bfloat16

    def featurize(self, images: np.ndarray) -> np.ndarray: ...


class PixelFeaturizer:
    """The seed study's baseline: the resized photo's pixels, scaled to [0, 1], flattened."""

    def __init__(self, spec: FeaturizerSpec):
        self.spec = spec
        self.dim = spec.image_size * spec.image_size * 3
        self.weights_sha256 = hashlib.sha256(b"pixels").hexdigest()
        self.precision = "fp32"

    def featurize(self, images: np.ndarray) -> np.ndarray:
        return (images.reshape(len(images), -1) / 255.0).astype(np.float32)


class WeightsMismatch(RuntimeError):
    """A model's weights are not the ones expected: a corrupt, truncated or substituted copy."""


class ResNet50Featurizer:
    """Keras ResNet50 without its classifier, global-average pooled: 2048 values per image.

    weights_file: a local copy of spec.weights to load instead of resolving spec.weights (a Spark
    executor's copy of what the driver resolved); expected_sha256: what its tensors must hash to.
    """

    dim = 2048

    def __init__(
        self,
        spec: FeaturizerSpec,
        *,
        threads: int | None = None,
        weights_file: str | None = None,
        expected_sha256: str | None = None,
    ):
        self.spec = spec
        self.precision = spec.precision
        if spec.precision == "bf16" and not cpu_has_bf16():
            log.warning(
                "precision bf16 requested but this CPU has no bfloat16 instructions (%s): "
                "running the model in fp32; its features differ from bf16 ones by about 0.5%%",
                " or ".join(_BF16_CPU_FLAGS),
            )
            self.precision = "fp32"
        _configure_tensorflow(threads)
        import keras

        self._preprocess = keras.applications.resnet50.preprocess_input
        self._model = _resnet50(spec, weights_file or spec.weights)
        # The digest is of the Keras weights whatever runs them: bf16 runs the same model.
        self.weights_sha256 = weights_digest(self._model.get_weights())
        if expected_sha256 is not None and self.weights_sha256 != expected_sha256:
            raise WeightsMismatch(
                f"the weights loaded for {spec.public_weights} have SHA-256 {self.weights_sha256}, "
                f"expected {expected_sha256}: a corrupt or substituted copy, refused"
            )
        self._bf16 = (
            _openvino_bf16(self._model, spec.image_size, threads) if self.precision == "bf16" else None
        )

    def featurize(self, images: np.ndarray) -> np.ndarray:
        x = self._preprocess(np.array(images, dtype=np.float32, copy=True))
        if self._bf16 is not None:
            return np.asarray(self._bf16.infer({0: x})[0], dtype=np.float32)
        return np.asarray(self._model.predict_on_batch(x), dtype=np.float32)


def _resnet50(spec: FeaturizerSpec, weights: str):
    """The bare Keras model of `spec` with `weights` (imagenet, random:SEED, a file path/URI)."""
    import keras

    with _weights_file(weights) as source:
        if weights.startswith("random:"):
            # Same seed -> same weights in every process (checked via weights_sha256).
            keras.utils.set_random_seed(int(weights.split(":", 1)[1]))
        return keras.applications.ResNet50(
            include_top=False,
            weights=source,
            input_shape=(spec.image_size, spec.image_size, 3),
            pooling="avg",
        )


def save_resolved_weights(spec: FeaturizerSpec, dest: str) -> str:
    """Resolve spec's weights in this process (imagenet: Keras' download and cache; a file:
    read through the storage layer), save them as a Keras weights file at `dest` (a name
    ending in .weights.h5) and return their weights_digest. The driver's half of shipping."""
    if spec.kind != "resnet50":
        raise ValueError(f"{spec.name} has no weights to resolve")
    _configure_tensorflow(None)
    model = _resnet50(spec, spec.weights)
    model.save_weights(dest)
    return weights_digest(model.get_weights())


def _openvino_bf16(model, side: int, threads: int | None):
    """The Keras model converted in memory by OpenVINO (nothing written, nothing downloaded),
    compiled for the CPU with bfloat16 inference precision; returns its infer request. Not
    thread-safe, like the Keras model: callers serialise calls (one per Spark worker, the
    service's model lock)."""
    import warnings

    import openvino as ov

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras: input structure of the trace
        converted = ov.convert_model(model)
    converted.reshape([-1, side, side, 3])  # any batch size
    # No CPU pinning: Spark runs one model per Python worker, and pinned workers were all put
    # on the same core (two 1-thread workers: 34 img/s each pinned, 62 unpinned).
    config = {
        "INFERENCE_PRECISION_HINT": "bf16",
        "NUM_STREAMS": "1",
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": "NO",
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return ov.Core().compile_model(converted, "CPU", config).create_infer_request()


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 arithmetic natively (Linux: /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in _BF16_CPU_FLAGS)


def weights_digest(arrays: list[np.ndarray]) -> str:
    """SHA-256 over the weight tensors, in order: identifies the exact model that ran."""
    digest = hashlib.sha256()
    for arr in arrays:
        digest.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    return digest.hexdigest()


def build_featurizer(
    spec: FeaturizerSpec,
    *,
    threads: int | None = None,
    weights_file: str | None = None,
    expected_sha256: str | None = None,
) -> Featurizer:
    """Build the model for `spec`; expensive (seconds): do it once per process.

    weights_file and expected_sha256 (resnet50): load this local copy of spec's weights, and
    raise WeightsMismatch unless its tensors hash to expected_sha256 (see ResNet50Featurizer)."""
    if spec.kind == "pixels":
        return PixelFeaturizer(spec)
    return ResNet50Featurizer(
        spec, threads=threads, weights_file=weights_file, expected_sha256=expected_sha256
    )


def featurize_bytes(
    featurizer: Featurizer, photos: list[bytes], *, batch_size: int = DEFAULT_BATCH_SIZE
) -> tuple[np.ndarray, list[ImageError | None]]:
    """Featurize many photos: (len(photos), dim), NaN rows for the ones that cannot be decoded,
    and one error (or None) per photo."""
    features, errors = featurize_views(featurizer, photos, batch_size=batch_size)
    return features[:, 0], errors


def featurize_views(
    featurizer: Featurizer,
    photos: list[bytes],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    augment: AugmentSpec | None = None,
) -> tuple[np.ndarray, list[ImageError | None]]:
    """Featurize many photos, each as itself then as its `augment.views` extra views.

    Returns (len(photos), 1 + views, dim) features and one error per photo: a photo that
    cannot be decoded gets NaN rows and its error. Every view goes through the same
    `to_model_input` as the photo itself, the function the service runs.
    """
    size = featurizer.spec.image_size
    augment = augment or AugmentSpec()
    per_photo = 1 + augment.views
    out = np.full((len(photos), per_photo, featurizer.dim), np.nan, dtype=np.float32)
    errors: list[ImageError | None] = [None] * len(photos)
    pending: list[np.ndarray] = []
    slots: list[tuple[int, int]] = []

    def flush() -> None:
        if pending:
            rows, views = zip(*slots, strict=True)
            out[list(rows), list(views)] = featurizer.featurize(np.stack(pending))
            pending.clear()
            slots.clear()

    for i, photo in enumerate(photos):
        try:
            img = open_for_model(photo, size)
        except ImageError as exc:
            errors[i] = exc
            continue
        for v, view in enumerate([img, *augmented_views(img, photo, augment)]):
            pending.append(to_model_input(view, size))
            slots.append((i, v))
            if len(pending) >= batch_size:
                flush()
    flush()
    return out, errors


def _configure_tensorflow(threads: int | None) -> None:
    """Quiet TF's C++ logs and cap its thread pools before the runtime starts."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
        except RuntimeError:
            pass  # the runtime already started in this process; keep its pools


@contextlib.contextmanager
def _weights_file(weights: str) -> Iterator[str | None]:
    """What Keras' `weights=` takes for a spec's weights: None (random), "imagenet", or a local
    file. A remote file is fetched into a temporary file, removed once the model is built."""
    from models.storage import is_local, local_path, storage_for

    if weights.startswith("random:") or weights == "imagenet":
        yield None if weights.startswith("random:") else weights
        return
    if is_local(weights):
        yield local_path(weights)
        return
    suffix = ".weights.h5" if weights.endswith(".weights.h5") else os.path.splitext(weights)[1]
    fd, path = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(storage_for(weights).read_bytes(weights))
        yield path
    finally:
        os.unlink(path)
