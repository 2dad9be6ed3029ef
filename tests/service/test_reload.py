"""Hot reload in the real service: admin endpoint, polling, bad bundles refused, versions."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import numpy as np
import pytest

from models.bundle import version_uri
from models.storage import join, storage_for
from tests.artifacts import npy, point_at, replace_file, republish
from tests.support import fixture_photos, post_photo, running_service

TOKEN = "reload-test-token-0c1d-5e6f7a8b9c0d1e2f"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def classify(url: str, photo: bytes) -> httpx.Response:
    resp = post_photo(url, photo, params={"top_k": 3})
    assert resp.status_code == 200, resp.text
    return resp


def answer(resp: httpx.Response) -> dict:
    """The classification without the model reference (which names the version)."""
    body = resp.json()
    body.pop("model")
    return body


def admin_reload(url: str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{url}/v1/admin/reload", headers=headers or {}, timeout=120)


def ready_version(url: str) -> str:
    return httpx.get(f"{url}/readyz", timeout=10).json()["version"]


def wait_for_version(url: str, version: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while ready_version(url) != version:
        assert time.monotonic() < deadline, f"{version} not served after {timeout_s} s"
        time.sleep(0.3)


def _break_missing_file(root, v):
    storage_for(root).delete_prefix(join(version_uri(root, v), "thresholds.npy"))


def _break_checksum(root, v):
    data = bytearray(storage_for(root).read_bytes(join(version_uri(root, v), "embeddings.npy")))
    data[-1] ^= 0xFF
    replace_file(root, v, "embeddings.npy", bytes(data), fix_checksum=False)


def _break_shapes(root, v):
    data = storage_for(root).read_bytes(join(version_uri(root, v), "embeddings.npy"))
    emb = np.load(io.BytesIO(data), allow_pickle=False)
    replace_file(root, v, "embeddings.npy", npy(emb[:, :-1]), fix_checksum=True)


def _other_weights(bundle):
    bundle.manifest.weights.sha256 = "0" * 64


def _other_precision(bundle):
    bundle.manifest.featurizer = replace(bundle.manifest.featurizer, precision="bf16")


def _other_image_size(bundle):
    bundle.manifest.featurizer = replace(bundle.manifest.featurizer, image_size=96)


BAD_BUNDLES = {
    "missing file": (None, _break_missing_file, "thresholds.npy"),
    "checksum mismatch": (None, _break_checksum, "checksum mismatch"),
    "wrong array shapes": (None, _break_shapes, "embeddings must be"),
    "other weights than the model": (_other_weights, None, "weights"),
    "other image size than the model": (_other_image_size, None, "needs resnet50 at 96px"),
    "other precision than the model": (_other_precision, None, "at 64px in bf16"),
}


@pytest.mark.slow
def test_hot_reload_swaps_good_versions_and_refuses_bad_ones(job_run, tmp_path):
    src, _ = job_run
    root = str(tmp_path / "bundles")
    v1 = republish(str(src), root)
    photo = fixture_photos("Test", "Banana")[0].read_bytes()
    log = tmp_path / "service.log"
    env = {"ARTIFACTS_URI": root, "RELOAD_INTERVAL_S": "1", "ADMIN_TOKEN": TOKEN}
    with running_service(env, log_path=log) as (url, _proc):
        first = classify(url, photo)
        assert first.headers["x-model-version"] == v1 == first.json()["model"]["version"]
        assert httpx.get(f"{url}/healthz", timeout=10).headers["x-model-version"] == v1

        # The token is checked before anything is loaded.
        no_auth = admin_reload(url)
        assert no_auth.status_code == 401 and no_auth.json()["error"]["code"] == "unauthorized"
        assert no_auth.headers["www-authenticate"] == "Bearer"
        wrong = admin_reload(url, {"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
        same = admin_reload(url, AUTH)
        assert same.status_code == 200 and same.json() == {
            "status": "unchanged",
            "serving": v1,
            "current": v1,
        }

        # Each broken version is refused with a clear reason; v1 keeps answering exactly as before.
        for case, (edit, damage, reason) in BAD_BUNDLES.items():
            bad = republish(str(src), root, point=False, edit=edit)
            if damage:
                damage(root, bad)
            point_at(root, bad)
            resp = admin_reload(url, AUTH)
            assert resp.status_code == 409, (case, resp.text)
            message = resp.json()["error"]["message"]
            assert bad in message and reason in message and v1 in message, (case, message)
            assert ready_version(url) == v1, case
            again = classify(url, photo)
            assert again.headers["x-model-version"] == v1 and answer(again) == answer(first), case
        text = log.read_text()
        assert text.count("refused bundle") >= len(BAD_BUNDLES)
        # The poller saw the last bad version too, but only logged it once.
        time.sleep(2.5)
        assert log.read_text().count(f"refused bundle {bad}") == 1

        # A good version is picked up by the poller alone; answers carry it, in header and body.
        v2 = republish(str(src), root)
        with ThreadPoolExecutor(4) as pool:  # requests in flight during the swap stay consistent
            during = list(pool.map(lambda _: classify(url, photo), range(12)))
            wait_for_version(url, v2)
        for resp in during:
            assert resp.headers["x-model-version"] == resp.json()["model"]["version"]
            assert resp.json()["model"]["version"] in (v1, v2)
        after = classify(url, photo)
        assert after.headers["x-model-version"] == v2 == after.json()["model"]["version"]
        assert answer(after) == answer(first)  # same arrays under a new version id
        assert f"now serving bundle {v2}" in log.read_text()


def test_admin_endpoint_is_absent_without_a_token(service_url):
    resp = admin_reload(service_url, AUTH)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
    ready = httpx.get(f"{service_url}/readyz", timeout=10)
    assert ready.headers["x-model-version"] == ready.json()["version"]
