"""POST /v1/feedback over HTTP: one record per correction, the photo only with consent, both
written under the feedback root through the storage layer."""

from __future__ import annotations

import json
from uuid import uuid4

import httpx
import pytest

from models.feedback import training_photos
from tests.support import fixture_photos, post_photo, running_service


@pytest.fixture(scope="module")
def feedback_service(job_run, tmp_path_factory):
    """(url, feedback root): a service writing its feedback to a folder of its own."""
    root, _ = job_run
    feedback = tmp_path_factory.mktemp("feedback") / "fb"
    with running_service({"ARTIFACTS_URI": str(root), "FEEDBACK_URI": str(feedback)}) as (url, _):
        yield url, feedback


def send(url: str, photo: bytes | None = None, **fields) -> httpx.Response:
    files = {"photo": ("IMG_1.jpg", photo, "image/jpeg")} if photo is not None else None
    data = {k: str(v).lower() if isinstance(v, bool) else v for k, v in fields.items()}
    return httpx.post(f"{url}/v1/feedback", data=data, files=files, timeout=30)


def answered(url: str, photo: bytes) -> str:
    """The request id of a real classify answer: what a feedback must name."""
    answer = post_photo(url, photo)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-request-id"]


def test_a_consented_correction_keeps_record_and_photo(feedback_service):
    url, root = feedback_service
    photo = fixture_photos("Test", "Kiwi")[1].read_bytes()
    answer = post_photo(url, photo)
    request_id = answer.headers["x-request-id"]
    resp = send(url, photo, request_id=request_id, label="Kiwi", consent=True)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["photo_kept"] is True
    record = json.loads((root / "records" / f"{body['id']}.json").read_text())
    assert (record["request_id"], record["label"], record["consent"]) == (request_id, "Kiwi", True)
    assert record["model_version"] == answer.json()["model"]["version"]
    assert (root / record["photo"]).read_bytes() == photo
    assert record["photo"].startswith("photos/Kiwi/")
    assert str(root / record["photo"]) in {
        f.uri for f, label in training_photos(str(root)) if label == "Kiwi"
    }


def test_without_consent_the_photo_is_not_kept(feedback_service):
    url, root = feedback_service
    photo = fixture_photos("Test", "Banana")[1].read_bytes()
    resp = send(url, photo, request_id=answered(url, photo), label="Banana", consent=False)
    assert resp.status_code == 202 and resp.json()["photo_kept"] is False
    record = json.loads((root / "records" / f"{resp.json()['id']}.json").read_text())
    assert record["photo"] is None and record["consent"] is False
    stored = [p.read_bytes() for p in root.rglob("*") if p.is_file() and p.suffix != ".json"]
    assert photo not in stored


def test_a_new_fruit_is_kept_apart_from_training_data(feedback_service):
    url, root = feedback_service
    photo = fixture_photos("Test", "Cherry 1")[1].read_bytes()
    resp = send(url, photo, request_id=answered(url, photo), new_fruit="Acerola", consent=True)
    assert resp.status_code == 202, resp.text
    record = json.loads((root / "records" / f"{resp.json()['id']}.json").read_text())
    assert record["new_fruit"] == "Acerola" and record["label"] is None
    assert record["photo"].startswith("new-fruits/")
    assert all(label != "Acerola" for _, label in training_photos(str(root)))


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"request_id": "r", "label": "Durian", "consent": True}, "unknown_label"),
        ({"request_id": "r", "consent": True}, "invalid_request"),
        ({"request_id": "r", "label": "Kiwi", "new_fruit": "Kiwi", "consent": True}, "invalid_request"),
        ({"request_id": "not a request id!", "label": "Kiwi"}, "invalid_request"),
    ],
)
def test_bad_feedback_is_422_and_stores_nothing(feedback_service, fields, code):
    url, root = feedback_service
    before = sorted(root.rglob("*")) if root.exists() else []
    resp = send(url, fixture_photos("Test", "Kiwi")[2].read_bytes(), **fields)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == code
    assert (sorted(root.rglob("*")) if root.exists() else []) == before


def test_feedback_for_an_answer_never_given_is_404_and_stores_nothing(feedback_service):
    url, root = feedback_service
    photo = fixture_photos("Test", "Kiwi")[2].read_bytes()
    before = sorted(root.rglob("*")) if root.exists() else []
    made_up = uuid4().hex  # well-formed, like the ids the service gives, but never given
    resp = send(url, photo, request_id=made_up, label="Kiwi", consent=True)
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"]["code"] == "unknown_request"
    assert (sorted(root.rglob("*")) if root.exists() else []) == before
    # The id of a real answer is accepted.
    assert send(url, photo, request_id=answered(url, photo), label="Kiwi").status_code == 202


def test_a_consented_non_image_is_400(feedback_service):
    url, _ = feedback_service
    request_id = answered(url, fixture_photos("Test", "Kiwi")[0].read_bytes())
    resp = send(url, b"not a photo at all", request_id=request_id, label="Kiwi", consent=True)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "not_an_image"
