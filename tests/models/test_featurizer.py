"""The featurizer: ResNet50 pooled to 2048 values, deterministic random weights, spec parsing."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from models.featurizer import (
    FeaturizerSpec,
    WeightsMismatch,
    build_featurizer,
    cpu_has_bf16,
    featurize_bytes,
    save_resolved_weights,
)
from models.preprocess import preprocess_image
from tests.support import TEST_IMAGE_SIZE, fixture_photos


@pytest.fixture(scope="module")
def resnet():
    return build_featurizer(FeaturizerSpec("resnet50", "random:0", TEST_IMAGE_SIZE))


def test_pooled_2048_values_per_image_not_flattened_maps(resnet):
    photos = [p.read_bytes() for p in fixture_photos("Training", "Banana")[:3]]
    features, errors = featurize_bytes(resnet, photos)
    assert errors == [None, None, None]
    assert features.shape == (3, 2048)
    assert np.isfinite(features).all()
    # Global average pooling of ReLU outputs: non-negative, and photos differ.
    assert features.min() >= 0
    assert np.abs(features[0] - features[1]).max() > 0


def test_batch_size_does_not_change_the_features(resnet):
    photos = [p.read_bytes() for p in fixture_photos("Training", "Kiwi")[:5]]
    together, _ = featurize_bytes(resnet, photos, batch_size=32)
    one_by_one, _ = featurize_bytes(resnet, photos, batch_size=1)
    assert np.abs(together - one_by_one).max() <= 1e-4


def test_bad_photo_gets_nan_row_and_error_others_unaffected(resnet):
    good = fixture_photos("Training", "Kiwi")[0].read_bytes()
    features, errors = featurize_bytes(resnet, [good, b"garbage", good])
    assert errors[0] is None and errors[2] is None
    assert errors[1].code == "not_an_image"
    assert np.isnan(features[1]).all()
    np.testing.assert_allclose(features[0], features[2], atol=1e-5)


def test_random_weights_are_identical_across_processes(resnet):
    code = (
        "from models.featurizer import *; "
        f"print(build_featurizer(FeaturizerSpec('resnet50','random:0',{TEST_IMAGE_SIZE}))"
        ".weights_sha256)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip().splitlines()[-1] == resnet.weights_sha256
    other = build_featurizer(FeaturizerSpec("resnet50", "random:1", TEST_IMAGE_SIZE))
    assert other.weights_sha256 != resnet.weights_sha256


def test_weights_file_loads_the_same_model(resnet, tmp_path):
    path = tmp_path / "resnet.weights.h5"
    resnet._model.save_weights(path)
    from_file = build_featurizer(FeaturizerSpec("resnet50", str(path), TEST_IMAGE_SIZE))
    assert from_file.weights_sha256 == resnet.weights_sha256
    x = preprocess_image(fixture_photos("Training", "Lemon")[0].read_bytes(), TEST_IMAGE_SIZE)
    np.testing.assert_allclose(from_file.featurize(x[None]), resnet.featurize(x[None]), atol=1e-5)


def test_resolved_weights_are_saved_with_their_digest_and_the_copy_alone_builds_the_model(resnet, tmp_path):
    """The driver's half of shipping (save_resolved_weights) and the executor's (build from the
    copy, checked against the digest), with the original gone in between."""
    original = tmp_path / "store" / "resnet.weights.h5"
    original.parent.mkdir()
    resnet._model.save_weights(original)
    spec = FeaturizerSpec("resnet50", str(original), TEST_IMAGE_SIZE)
    copy = tmp_path / "copy.weights.h5"
    assert save_resolved_weights(spec, str(copy)) == resnet.weights_sha256
    original.unlink()
    from_copy = build_featurizer(spec, weights_file=str(copy), expected_sha256=resnet.weights_sha256)
    assert from_copy.spec == spec and from_copy.weights_sha256 == resnet.weights_sha256
    x = preprocess_image(fixture_photos("Training", "Kiwi")[0].read_bytes(), TEST_IMAGE_SIZE)
    np.testing.assert_allclose(from_copy.featurize(x[None]), resnet.featurize(x[None]), atol=1e-5)


def test_a_weights_copy_whose_tensors_do_not_hash_to_the_expected_digest_is_refused(resnet, tmp_path):
    other = build_featurizer(FeaturizerSpec("resnet50", "random:1", TEST_IMAGE_SIZE))
    path = tmp_path / "substituted.weights.h5"
    other._model.save_weights(path)
    spec = FeaturizerSpec("resnet50", "imagenet", TEST_IMAGE_SIZE)
    with pytest.raises(
        WeightsMismatch, match=f"SHA-256 {other.weights_sha256}, expected {resnet.weights_sha256}"
    ):
        build_featurizer(spec, weights_file=str(path), expected_sha256=resnet.weights_sha256)


def test_pixels_baseline_is_resized_flattened_pixels():
    f = build_featurizer(FeaturizerSpec.parse("pixels:20", "ignored", None))
    assert f.dim == 1200 and f.spec.image_size == 20
    photo = fixture_photos("Training", "Banana")[0].read_bytes()
    features, _ = featurize_bytes(f, [photo])
    expected = preprocess_image(photo, 20).reshape(-1) / 255.0
    np.testing.assert_allclose(features[0], expected, atol=1e-6)


@pytest.mark.parametrize(
    "featurizer,weights,size",
    [
        ("vgg16", "imagenet", None),
        ("resnet50", "random:abc", None),
        ("resnet50", "imagenet", 16),
        ("pixels:0", "", None),
        ("efficientnet-lite0", "random:0", None),
    ],
)
def test_bad_specs_are_refused(featurizer, weights, size):
    with pytest.raises(ValueError):
        FeaturizerSpec.parse(featurizer, weights, size)


def test_default_spec_is_imagenet_at_224():
    spec = FeaturizerSpec.parse("resnet50", "imagenet", None)
    assert (spec.kind, spec.weights, spec.image_size) == ("resnet50", "imagenet", 224)
    assert not spec.random_weights


@pytest.mark.parametrize(("has_bf16", "expected"), [(True, "bf16"), (False, "fp32")])
def test_no_precision_asked_means_bf16_where_the_cpu_has_it_else_fp32(has_bf16, expected, monkeypatch):
    monkeypatch.setattr("models.featurizer.cpu_has_bf16", lambda: has_bf16)
    assert FeaturizerSpec.parse("efficientnet-lite0", "imagenet", None, None).precision == expected
    assert FeaturizerSpec.parse("pixels:8", "none", None, None).precision == "fp32"
    assert FeaturizerSpec.parse("resnet50", "imagenet", None, "fp32").precision == "fp32"
    assert FeaturizerSpec.parse("resnet50", "imagenet", None).precision == "fp32"  # a spec's own default


# bf16 rounds every product to 8 significant bits: its unit roundoff is 2**-8.
BF16_UNIT = 2.0**-8


def _relative_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bfloat16 instructions")
def test_bf16_runs_the_same_weights_in_narrower_arithmetic(resnet):
    bf16 = build_featurizer(FeaturizerSpec("resnet50", "random:0", TEST_IMAGE_SIZE, "bf16"))
    assert bf16.precision == "bf16"
    assert bf16.weights_sha256 == resnet.weights_sha256  # the same Keras weights, run by OpenVINO
    photos = [p.read_bytes() for p in fixture_photos("Training", "Banana")[:6]]
    wide, _ = featurize_bytes(resnet, photos)
    narrow, _ = featurize_bytes(bf16, photos)
    error = _relative_l2(narrow, wide)
    # Different arithmetic (not fp32 again), yet close: a few rounding units over ~50 layers.
    assert error.min() > 1e-4
    assert error.max() < 4 * BF16_UNIT
    # Batch-size invariant like fp32: the job (batches of 32) and the service (micro-batches)
    # compute the same bf16 features.
    one_by_one, _ = featurize_bytes(bf16, photos, batch_size=1)
    assert _relative_l2(one_by_one, narrow).max() <= BF16_UNIT


def test_bf16_on_a_cpu_without_it_falls_back_to_fp32_and_says_so(resnet, monkeypatch, caplog):
    monkeypatch.setattr("models.featurizer.cpu_has_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="models.featurizer"):
        fallback = build_featurizer(FeaturizerSpec("resnet50", "random:0", TEST_IMAGE_SIZE, "bf16"))
    assert fallback.precision == "fp32" and fallback.spec.precision == "bf16"
    assert any(
        "no bfloat16 instructions" in r.getMessage() and "fp32" in r.getMessage() for r in caplog.records
    )
    photos = [p.read_bytes() for p in fixture_photos("Training", "Kiwi")[:3]]
    np.testing.assert_allclose(
        featurize_bytes(fallback, photos)[0], featurize_bytes(resnet, photos)[0], atol=1e-5
    )


@pytest.mark.parametrize(
    ("kind", "precision"), [("resnet50", "fp16"), ("resnet50", "int4"), ("pixels", "bf16")]
)
def test_unknown_or_unsupported_precision_is_refused(kind, precision):
    with pytest.raises(ValueError, match="precision"):
        FeaturizerSpec(kind, "random:0", 64, precision).validated()


def test_a_remote_weights_file_is_fetched_to_a_temp_file_and_removed(tmp_path, monkeypatch):
    """The weights of an s3:// (or any remote) URI reach Keras as a local file that does not
    outlive the model build."""
    from models import featurizer as fz

    payload = b"weights bytes"

    class Remote:
        def read_bytes(self, uri: str) -> bytes:
            assert uri == "s3://bucket/resnet.weights.h5"
            return payload

    monkeypatch.setattr("models.storage.storage_for", lambda uri: Remote())
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with fz._weights_file("s3://bucket/resnet.weights.h5") as path:
        assert path.endswith(".weights.h5") and Path(path).read_bytes() == payload
    assert not os.path.exists(path)
    assert list(tmp_path.iterdir()) == []
    with fz._weights_file("random:3") as none, fz._weights_file("imagenet") as imagenet:
        assert none is None and imagenet == "imagenet"
    local = tmp_path / "w.weights.h5"
    with fz._weights_file(str(local)) as same:
        assert same == str(local)  # a local file is used where it is, never copied or removed
