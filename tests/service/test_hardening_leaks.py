"""Public answers carry no file system path, bucket name or library message: those go to the log."""

from __future__ import annotations

import json

import httpx
import pytest
from PIL import Image

from models.bundle import publish, read_bundle, version_uri
from models.classifier import Classifier
from models.featurizer import FeaturizerSpec, build_featurizer, public_weights
from models.storage import join, storage_for
from service.metrics import ServiceMetrics
from tests.artifacts import point_at, republish
from tests.service.test_hardening_reload import pixels_version
from tests.support import encode, fixture_photos, post_photo, running_service

TOKEN = "hardening-leaks-token-0a1b2c3d4e5f6a7b8c9d"
SECRET_WEIGHTS = "s3://secret-weights-bucket/models/resnet50.weights.h5"


def public_text(resp: httpx.Response) -> str:
    """An answer's text, without examples[].source (photo ids replace them in another change)."""
    body = resp.json()
    for match in body.get("top_k", []):
        match.pop("examples", None)
    return json.dumps(body)


@pytest.mark.slow
def test_answers_name_no_path_bucket_or_library_message(job_run, dataset, tmp_path):
    src, _ = job_run
    root = tmp_path / "bundles"

    def weights_from_a_bucket(bundle):
        bundle.manifest.weights.spec = SECRET_WEIGHTS

    served = republish(str(src), str(root), edit=weights_from_a_bucket)
    log = tmp_path / "service.log"
    env = {"ARTIFACTS_URI": str(root), "ADMIN_TOKEN": TOKEN, "RELOAD_INTERVAL_S": "0"}
    with running_service(env, log_path=log) as (url, _):
        photo = fixture_photos("Test", "Kiwi")[0].read_bytes()
        answers = {
            "model": httpx.get(f"{url}/v1/model", timeout=30),
            "classify": post_photo(url, photo),
            "metrics": httpx.get(f"{url}/metrics", timeout=30),
            "truncated jpeg": post_photo(url, photo[: len(photo) // 2]),
            "bad header": post_photo(url, encode(Image.new("RGB", (8, 8)), "PNG")[:40]),
        }
        # A refused version: its message says which file, not where it lives or what errno said.
        broken = republish(str(src), str(root), point=False)
        storage_for(str(root)).delete_prefix(join(version_uri(str(root), broken), "thresholds.npy"))
        point_at(str(root), broken)
        answers["refused"] = httpx.post(
            f"{url}/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        )
    assert answers["model"].status_code == 200 and answers["classify"].status_code == 200
    assert answers["model"].json()["model"]["weights"] == "file"
    assert answers["model"].json()["model"]["version"] == served
    assert answers["truncated jpeg"].json()["error"]["code"] == "corrupt_image"
    assert answers["refused"].status_code == 409
    assert "thresholds.npy" in answers["refused"].json()["error"]["message"]
    secrets = [str(dataset), str(root), str(tmp_path), "secret-weights-bucket", "/tmp/", "Errno"]
    for name, resp in answers.items():
        text = resp.text if name == "metrics" else public_text(resp)
        for secret in secrets:
            assert secret not in text, f"{name} answer shows {secret!r}: {text[:400]}"
    for message in (answers["truncated jpeg"], answers["bad header"]):
        assert message.json()["error"]["message"] in {
            "The image could not be read.",
            "The image data is damaged.",
            "The file is not an image we can read.",
        }
    # The details are not lost: the log has them.
    assert "thresholds.npy" in log.read_text() and str(root) in log.read_text()


def test_metrics_show_no_weights_path(tmp_path):
    root = str(tmp_path)
    publish(root, pixels_version(root))
    # A model whose weights came from a file (the pixels model has no weights to read: cheap).
    featurizer = build_featurizer(FeaturizerSpec("pixels", "/srv/private/weights.h5", 2))
    metrics = ServiceMetrics()
    metrics.model_in_service(Classifier(read_bundle(root), featurizer))
    text = metrics.response(None).body.decode()
    assert "/srv/private" not in text
    assert 'weights="file"' in text


@pytest.mark.parametrize(
    ("weights", "shown"),
    [
        ("imagenet", "imagenet"),
        ("random:7", "random:7"),
        ("none", "none"),
        ("/opt/w/resnet.h5", "file"),
        ("s3://bucket/w.h5", "file"),
        ("weights.h5", "file"),
    ],
)
def test_public_weights(weights, shown):
    assert public_weights(weights) == shown
