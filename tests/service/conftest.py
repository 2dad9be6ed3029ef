"""A second live service with a tiny queue and a captured JSON log, for overload and logging tests."""

from __future__ import annotations

import pytest

from tests.support import running_service


@pytest.fixture(scope="session")
def tight_service(job_run, tmp_path_factory):
    """(url, process, log path): batches of 1, at most 2 waiting photos, no batching wait,
    2 classes per answer by default."""
    root, _ = job_run
    log = tmp_path_factory.mktemp("tight") / "service.log"
    env = {
        "ARTIFACTS_URI": str(root),
        "MAX_BATCH_SIZE": "1",
        "MAX_QUEUE_DEPTH": "2",
        "MAX_BATCH_WAIT_MS": "0",
        "TF_THREADS": "1",
        "DEFAULT_TOP_K": "2",
    }
    with running_service(env, log_path=log) as (url, proc):
        yield url, proc, log
