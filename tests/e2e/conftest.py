"""End-to-end fixtures: one real S3 endpoint (moto server on 127.0.0.1) for the session."""

from __future__ import annotations

import pytest

from tests.s3 import S3Endpoint, moto_server


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> S3Endpoint:
    with moto_server(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint
