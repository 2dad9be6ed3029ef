"""Session fixtures: a small real dataset, one local Spark session, one job run, one live service."""

from __future__ import annotations

import os
import sys

import pytest
from PIL import Image

from tests.support import (
    TEST_IMAGE_SIZE,
    TEST_WEIGHTS,
    copy_photos,
    fixture_photos,
    running_service,
)

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Six real classes; Cherry 1 / Cherry 2 and the apples are look-alikes on purpose.
LABELS = ["Apple Golden 1", "Apple Red 1", "Banana", "Cherry 1", "Cherry 2", "Kiwi"]
TRAIN_PER_CLASS = 16
TEST_PER_CLASS = 6
# A training photo as a phone would take it: the fruit small and off-centre on a white page.
OFF_CENTRE = "Banana/off_centre_on_page.jpg"


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """Training/<label>/*.jpg from tests/data (plus one corrupt photo), Test/<label>/*.jpg."""
    root = tmp_path_factory.mktemp("fruits")
    train = copy_photos(root / "Training", "Training", LABELS, TRAIN_PER_CLASS)
    copy_photos(root / "Test", "Test", LABELS, TEST_PER_CLASS)
    good = fixture_photos("Training", "Kiwi")[-1].read_bytes()
    (train / "Kiwi" / "corrupt_truncated.jpg").write_bytes(good[: len(good) // 3])
    (train / "Kiwi" / "README.txt").write_text("not a photo: ignored by extension")
    banana = Image.open(fixture_photos("Training", "Banana")[-1]).convert("RGB")
    page = Image.new("RGB", (400, 300), (255, 255, 255))
    page.paste(banana.resize((140, 140)), (230, 20))
    page.save(train / OFF_CENTRE, quality=92)
    return root


@pytest.fixture(scope="session")
def spark():
    from batch.session import spark_session

    session = spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def job_run(dataset, spark, tmp_path_factory):
    """The real job, run once on the real photos: (bundle root, JobResult)."""
    from models.featurizer import FeaturizerSpec
    from tests.jobs import run_on_training

    root = tmp_path_factory.mktemp("artifacts")
    spec = FeaturizerSpec("resnet50", TEST_WEIGHTS, TEST_IMAGE_SIZE)
    return root, run_on_training(spark, dataset, root, spec, images_per_partition=24)


@pytest.fixture(scope="session")
def service_url(job_run, tmp_path_factory):
    """The real app under uvicorn, serving the job's bundle, on 127.0.0.1."""
    root, _ = job_run
    log = tmp_path_factory.mktemp("logs") / "service.log"
    with running_service({"ARTIFACTS_URI": str(root)}, log_path=log) as (url, _proc):
        yield url


__all__ = ["LABELS", "OFF_CENTRE"]
