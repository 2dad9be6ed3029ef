"""Model inputs -> feature vectors: ResNet50 (2048-d), EfficientNet-Lite0 (1280-d) or the pixel baseline."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import numpy as np

from models.augment import AugmentSpec, augmented_views
from models.efficientnet_lite import FEATURE_DIM as LITE0_FEATURE_DIM
from models.framing import object_box
from models.imagenet import ImageNetHead
from models.preprocess import ImageError, Photo, crop_input, model_inputs, open_for_model, photo_of

DEFAULT_IMAGE_SIZE = 224  # the size ResNet50 and EfficientNet-Lite0 were trained at
# Networks with learnt weights; "pixels:N" is the resize-only baseline.
NETWORKS = ("resnet50", "efficientnet-lite0")
DEFAULT_BATCH_SIZE = 32
# The arithmetic the model runs in. fp32: Keras (TensorFlow), float32 throughout. bf16: the
# same Keras model converted by OpenVINO and run in bfloat16 (native with AVX512_BF16 or AMX);
# it beat Keras' own mixed_bfloat16 policy (docs/decisions.md).
PRECISIONS = ("fp32", "bf16")
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

log = logging.getLogger("models.featurizer")


@dataclass(frozen=True)
class FeaturizerSpec:
    """What turns a photo into a vector; recorded in the manifest and rebuilt by the service.

    kind:    "resnet50", "efficientnet-lite0" or "pixels"
    weights: "imagenet", "random:SEED" or a path/URI of a weights file (networks only):
             a Keras weights file for resnet50, a PyTorch state dict for efficientnet-lite0,
             whose "imagenet" weights ship with the install (models.efficientnet_lite)
    image_size: side of the square model input, in pixels
    precision: "fp32" or "bf16" (networks only; see PRECISIONS)
    """

    kind: str = "resnet50"
    weights: str = "imagenet"
    image_size: int = DEFAULT_IMAGE_SIZE
    precision: str = "fp32"

    @classmethod
    def parse(
        cls, featurizer: str, weights: str, image_size: int | None, precision: str | None = "fp32"
    ) -> FeaturizerSpec:
        """Build from CLI-style strings: `resnet50` or `pixels:N` (N is then the image size).
        precision None: a network's default_precision() (pixels: fp32)."""
        if featurizer.startswith("pixels:"):
            side = int(featurizer.split(":", 1)[1])
            return cls("pixels", "none", side, precision or "fp32").validated()
        if featurizer not in NETWORKS:
            raise ValueError(f"unknown featurizer {featurizer!r}: use {', '.join(NETWORKS)} or 'pixels:N'")
        precision = precision or default_precision()
        return cls(featurizer, weights, image_size or DEFAULT_IMAGE_SIZE, precision).validated()

    def validated(self) -> FeaturizerSpec:
        if self.kind not in (*NETWORKS, "pixels"):
            raise ValueError(f"unknown featurizer kind {self.kind!r}")
        min_side = 32 if self.is_network else 1
        if not min_side <= self.image_size <= 1024:
            raise ValueError(f"image size must be in {min_side}..1024, got {self.image_size}")
        if self.is_network and self.weights.startswith("random:"):
            int(self.weights.split(":", 1)[1])  # raises on a bad seed
            if self.kind == "efficientnet-lite0":
                raise ValueError("efficientnet-lite0 has no random weights: use imagenet or a weights file")
        if self.precision not in PRECISIONS or (self.kind == "pixels" and self.precision != "fp32"):
            raise ValueError(f"precision must be one of {PRECISIONS} (pixels: fp32), got {self.precision!r}")
        return self

    @property
    def is_network(self) -> bool:
        return self.kind in NETWORKS

    @property
    def random_weights(self) -> bool:
        return self.weights.startswith("random:")

    @property
    def public_weights(self) -> str:
        return public_weights(self.weights)

    @property
    def name(self) -> str:
        return self.kind if self.is_network else f"pixels:{self.image_size}"

    def to_dict(self) -> dict:
        return asdict(self)

    def with_weights_file(self, path: str | None) -> FeaturizerSpec:
        """The same model with its weights read from `path` (e.g. ImageNet weights on an
        air-gapped host); random weights and the pixel baseline have no file to swap."""
        if not path or not self.is_network or self.random_weights:
            return self
        return replace(self, weights=path)


def feature_dim(spec: FeaturizerSpec) -> int:
    """The length of spec's feature vectors, without building the model."""
    if spec.kind == "pixels":
        return spec.image_size * spec.image_size * 3
    return EfficientNetLite0Featurizer.dim if spec.kind == "efficientnet-lite0" else ResNet50Featurizer.dim


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
    head: ImageNetHead | None  # the network's own 1000-class top, where its weights have one

    def featurize(self, images: np.ndarray) -> np.ndarray: ...


class PixelFeaturizer:
    """The seed study's baseline: the resized photo's pixels, scaled to [0, 1], flattened."""

    def __init__(self, spec: FeaturizerSpec):
        self.spec = spec
        self.dim = spec.image_size * spec.image_size * 3
        self.weights_sha256 = hashlib.sha256(b"pixels").hexdigest()
        self.precision = "fp32"
        self.head = None

    def featurize(self, images: np.ndarray) -> np.ndarray:
        return (images.reshape(len(images), -1) / 255.0).astype(np.float32)


class WeightsMismatch(RuntimeError):
    """A model's weights are not the ones expected: a corrupt, truncated or substituted copy."""


class _KerasFeaturizer:
    """A Keras network cut before its pooling and classifier, optionally run in bf16 through
    OpenVINO: its feature maps, and their global average as the features; subclasses build the
    network (`_build`) and say how inputs are scaled.

    weights_file: a local copy of spec.weights to load instead of resolving spec.weights (a Spark
    executor's copy of what the driver resolved); expected_sha256: what its tensors must hash to.
    """

    dim: int

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
        self._model, self.head = self._build(weights_file or spec.weights)
        # The digest is of the Keras weights whatever runs them (bf16 runs the same model).
        self.weights_sha256 = weights_digest(self._digested())
        if expected_sha256 is not None and self.weights_sha256 != expected_sha256:
            raise WeightsMismatch(
                f"the weights loaded for {spec.public_weights} have SHA-256 {self.weights_sha256}, "
                f"expected {expected_sha256}: a corrupt or substituted copy, refused"
            )
        self._bf16 = (
            _openvino_bf16(self._model, spec.image_size, threads) if self.precision == "bf16" else None
        )

    def _build(self, weights: str):
        raise NotImplementedError

    def _digested(self) -> list[np.ndarray]:
        """The tensors weights_sha256 covers: the network's, and the head's where it comes
        from the same file."""
        head = [] if self.head is None else [self.head.kernel, self.head.bias]
        return [*self._model.get_weights(), *head]

    def _scale(self, images: np.ndarray) -> np.ndarray:
        return np.array(images, dtype=np.float32, copy=True)

    def feature_maps(self, images: np.ndarray) -> np.ndarray:
        """(n, s, s, 3) -> (n, h, w, dim): the last feature map, before pooling."""
        x = self._scale(images)
        if self._bf16 is not None:
            return np.asarray(self._bf16.infer({0: x})[0], dtype=np.float32)
        return np.asarray(self._model.predict_on_batch(x), dtype=np.float32)

    def featurize(self, images: np.ndarray) -> np.ndarray:
        return pooled(self.feature_maps(images))


def pooled(feature_maps: np.ndarray) -> np.ndarray:
    """(n, h, w, dim) feature maps -> (n, dim) features: their global average."""
    return feature_maps.mean(axis=(1, 2), dtype=np.float32)


class ResNet50Featurizer(_KerasFeaturizer):
    """Keras ResNet50 without its classifier, global-average pooled: 2048 values per image.
    With the ImageNet weights, its 1000-class top (a second download) is the head."""

    dim = 2048

    def _build(self, weights: str):
        return _resnet50(self.spec, weights), _resnet50_head(weights)

    def _digested(self) -> list[np.ndarray]:
        # The top is a second file that a Spark executor, which only featurizes, never loads.
        return self._model.get_weights()

    def _scale(self, images: np.ndarray) -> np.ndarray:
        import keras

        return keras.applications.resnet50.preprocess_input(super()._scale(images))


class EfficientNetLite0Featurizer(_KerasFeaturizer):
    """EfficientNet-Lite0 without its classifier, global-average pooled: 1280 values per image;
    its ImageNet top is the head. The model scales its own inputs ((x - 127) / 128)."""

    dim = LITE0_FEATURE_DIM

    def _build(self, weights: str):
        from models.efficientnet_lite import PACKAGE_SHA256, build_lite0

        # The package's file, or an executor's copy of it, must be the pinned file.
        pinned = PACKAGE_SHA256 if self.spec.weights == "imagenet" else None
        model, kernel, bias = build_lite0(self.spec.image_size, _lite0_state(weights, pinned))
        return model, ImageNetHead(kernel, bias)


def _lite0_state(weights: str, pinned: str | None):
    """The tensors of Lite0's weights (see _lite0_file), refused unless the file's SHA-256 is
    `pinned` (when given)."""
    from models.efficientnet_lite import read_weights

    return read_weights(_lite0_file(weights), pinned)


def _lite0_file(weights: str) -> bytes:
    """Lite0's weights file: the installed package's (`imagenet`) or a PyTorch state dict at a
    path/URI."""
    from models.efficientnet_lite import packaged_weights_path
    from models.storage import storage_for

    if weights == "imagenet":
        with open(packaged_weights_path(), "rb") as fh:
            return fh.read()
    return storage_for(weights).read_bytes(weights)


class WeightsUnavailable(RuntimeError):
    """The weights cannot be had here (no internet for Keras' download): says what to use instead."""


@contextlib.contextmanager
def _imagenet_download(what: str) -> Iterator[None]:
    """Keras' download of the ImageNet weights, with a one-line error naming the ways on."""
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, OSError) and "URL fetch failure" not in str(exc):
            raise
        reason = str(exc).splitlines()[0].rsplit(" -- ", 1)[-1][:120]
        raise WeightsUnavailable(
            f"the ResNet50 ImageNet weights ({what}) could not be downloaded ({reason}); use "
            "--featurizer efficientnet-lite0, whose ImageNet weights ship with the install, or "
            "--weights PATH with a Keras ResNet50 weights file"
        ) from None


def _resnet50_head(weights: str) -> ImageNetHead | None:
    """ResNet50's 1000-class top: only the ImageNet weights have one (the file with the top)."""
    if weights != "imagenet":
        return None
    import keras

    try:
        with _imagenet_download("the file with the top"):
            full = keras.applications.ResNet50(include_top=True, weights="imagenet")
    except WeightsUnavailable as exc:
        log.warning("no ImageNet head: the neighbours alone decide (%s)", exc)
        return None
    kernel, bias = full.get_layer("predictions").get_weights()
    return ImageNetHead(np.asarray(kernel, np.float32), np.asarray(bias, np.float32))


def _resnet50(spec: FeaturizerSpec, weights: str):
    """The bare Keras model of `spec` with `weights` (imagenet, random:SEED, a file path/URI)."""
    import keras

    with _weights_file(weights) as source, _imagenet_download("without the top"):
        if weights.startswith("random:"):
            # Same seed -> same weights in every process (checked via weights_sha256).
            keras.utils.set_random_seed(int(weights.split(":", 1)[1]))
        return keras.applications.ResNet50(
            include_top=False,
            weights=source,
            input_shape=(spec.image_size, spec.image_size, 3),
            pooling=None,  # the feature maps: _KerasFeaturizer pools them
        )


def weights_file_suffix(spec: FeaturizerSpec) -> str:
    """The file name ending of spec's resolved weights, as shipped to the executors."""
    return ".pth" if spec.kind == "efficientnet-lite0" else ".weights.h5"


def save_resolved_weights(spec: FeaturizerSpec, dest: str) -> str:
    """Resolve spec's weights in this process (resnet50 imagenet: Keras' download and cache;
    efficientnet-lite0 imagenet: the installed package's file; a file: read through the storage
    layer), write them at `dest` (ending in weights_file_suffix) and return the weights_digest
    the model built from them has. The driver's half of shipping."""
    if not spec.is_network:
        raise ValueError(f"{spec.name} has no weights to resolve")
    if spec.kind == "efficientnet-lite0":
        with open(dest, "wb") as fh:
            fh.write(_lite0_file(spec.weights))
        return EfficientNetLite0Featurizer(spec, weights_file=dest).weights_sha256
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


def default_precision() -> str:
    """A network's precision when none is asked for: bf16 where this CPU runs bfloat16
    natively, else fp32; says which, and why, in one log line."""
    flags = " or ".join(_BF16_CPU_FLAGS)
    if cpu_has_bf16():
        log.info("precision bf16 (the default: this CPU has bfloat16 instructions, %s)", flags)
        return "bf16"
    log.info("precision fp32 (the default falls back to it: this CPU has no %s)", flags)
    return "fp32"


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

    weights_file and expected_sha256 (networks): load this local copy of spec's weights, and
    raise WeightsMismatch unless its tensors hash to expected_sha256 (see _KerasFeaturizer)."""
    if spec.kind == "pixels":
        return PixelFeaturizer(spec)
    network = EfficientNetLite0Featurizer if spec.kind == "efficientnet-lite0" else ResNet50Featurizer
    return network(spec, threads=threads, weights_file=weights_file, expected_sha256=expected_sha256)


def featurize_photos(featurizer: Featurizer, photos: Sequence[Photo]) -> np.ndarray:
    """Photos (models.preprocess.preprocess_photo) -> (n, dim) features, as the job and the
    service compute them: the whole photo's, or, where the network's feature map shows the
    object in a small part of the frame (models.framing), the features of the crop around it."""
    size = featurizer.spec.image_size
    inputs = model_inputs(photos)
    maps = getattr(featurizer, "feature_maps", None)
    if maps is None:  # the pixel baseline has no feature map
        return featurizer.featurize(inputs)
    feature_maps = maps(inputs)
    features = pooled(feature_maps)
    boxes = {i: box for i, fm in enumerate(feature_maps) if (box := object_box(fm)) is not None}
    if boxes:
        crops = np.stack([crop_input(photos[i], box, size) for i, box in boxes.items()])
        features[list(boxes)] = featurizer.featurize(crops)
    return features


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
    `photo_of` and `featurize_photos` as the photo itself, the functions the service runs.
    """
    size = featurizer.spec.image_size
    augment = augment or AugmentSpec()
    per_photo = 1 + augment.views
    out = np.full((len(photos), per_photo, featurizer.dim), np.nan, dtype=np.float32)
    errors: list[ImageError | None] = [None] * len(photos)
    pending: list[Photo] = []
    slots: list[tuple[int, int]] = []

    def flush() -> None:
        if pending:
            rows, views = zip(*slots, strict=True)
            out[list(rows), list(views)] = featurize_photos(featurizer, pending)
            pending.clear()
            slots.clear()

    for i, photo in enumerate(photos):
        try:
            img = open_for_model(photo, size)
        except ImageError as exc:
            errors[i] = exc
            continue
        for v, view in enumerate([img, *augmented_views(img, photo, augment)]):
            pending.append(photo_of(view, size))
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
