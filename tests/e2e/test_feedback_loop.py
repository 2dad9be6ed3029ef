"""The feedback loop end to end: a photo answered wrongly, the user's correction with consent, an
incremental refresh with --feedback, and the same photo answered with the corrected label."""

from __future__ import annotations

import httpx
import pytest

from batch.config import JobConfig
from batch.job import run_job
from models.augment import AugmentSpec
from models.featurizer import FeaturizerSpec
from tests.conftest import LABELS
from tests.support import (
    TEST_IMAGE_SIZE,
    TEST_WEIGHTS,
    copy_photos,
    fixture_photos,
    post_photo,
    running_service,
    wait_for_version,
)


@pytest.mark.spark
@pytest.mark.slow
def test_a_correction_teaches_the_next_version(spark, tmp_path):
    photos = copy_photos(tmp_path / "photos", "Training", LABELS, 8)
    root = tmp_path / "artifacts"
    spec = FeaturizerSpec("resnet50", TEST_WEIGHTS, TEST_IMAGE_SIZE)
    options = {"images_per_partition": 16, "augment": AugmentSpec(views=1)}

    def job(**more):
        return run_job(
            JobConfig(input_uri=str(photos), output_uri=str(root), spec=spec, **options, **more), spark
        )

    first = job()
    env = {"ARTIFACTS_URI": str(root), "RELOAD_INTERVAL_S": "1"}
    with running_service(env) as (url, _):
        wrong = None
        for label in LABELS:
            # The Test photos, then the training photos this job did not take: none is in the bundle.
            unseen = fixture_photos("Test", label) + fixture_photos("Training", label)[8:]
            for path in unseen:
                resp = post_photo(url, path.read_bytes())
                if resp.json()["top_k"][0]["label"] != label:
                    wrong = (path, label, resp)
                    break
            if wrong:
                break
        assert wrong is not None, "every unseen photo was answered right: nothing to correct"
        path, truth, answer = wrong

        sent = httpx.post(
            f"{url}/v1/feedback",
            data={"request_id": answer.headers["x-request-id"], "label": truth, "consent": "true"},
            files={"photo": (path.name, path.read_bytes(), "image/jpeg")},
            timeout=30,
        )
        assert sent.status_code == 202 and sent.json()["photo_kept"] is True

        second = job(incremental=True, feedback_uri=str(root / "feedback"))
        assert second.manifest.counts.feedback == 1
        assert second.manifest.counts.featurized == first.manifest.counts.featurized + 1
        assert second.manifest.refresh.featurized == 1  # only the feedback photo was new
        assert second.manifest.class_counts[truth] == first.manifest.class_counts[truth] + 1

        wait_for_version(url, second.version, timeout_s=90)
        again = post_photo(url, path.read_bytes()).json()
        assert again["top_k"][0]["label"] == truth
        assert again["known"] is True and again["label"] == truth
