"""Users' corrections: one JSON record each (plus the photo when the user consented), written under
a feedback/ prefix by the service and read back by the job, which learns from the consented photos.

Layout under the feedback root (by default <artifacts>/feedback):

    photos/<label>/<id>.<ext>   a consented photo of a known label: training data for the job
    new-fruits/<id>.<ext>       a consented photo of a fruit no model knows yet (kept, not trained on)
    records/<id>.json           the record: written last, so a record never names a missing photo
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.storage import FileInfo, Storage, StorageError, join, storage_for

FEEDBACK_DIR = "feedback"
PHOTO_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic"}


class FeedbackRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    received_at: str
    request_id: str = Field(description="the X-Request-ID of the answer being corrected")
    model_version: str | None = Field(description="the model in service when the feedback came")
    label: str | None = Field(description="the correct class, one the model knew")
    new_fruit: str | None = Field(description="free text: a fruit no class covers")
    consent: bool = Field(description="the user agreed that the photo is kept and learnt from")
    photo: str | None = Field(description="the photo's path under the feedback root, if kept")


def feedback_root(artifacts_uri: str) -> str:
    return join(artifacts_uri, FEEDBACK_DIR)


def new_record(
    request_id: str,
    model_version: str | None,
    label: str | None,
    new_fruit: str | None,
    consent: bool,
    photo_format: str | None,
) -> FeedbackRecord:
    """A record with a fresh id; `photo` is set when a consented photo of `photo_format` comes."""
    rid = uuid4().hex
    photo = None
    if consent and photo_format:
        ext = PHOTO_EXTENSIONS.get(photo_format, "img")
        photo = f"photos/{label}/{rid}.{ext}" if label else f"new-fruits/{rid}.{ext}"
    return FeedbackRecord(
        id=rid,
        received_at=datetime.now(UTC).isoformat(timespec="seconds"),
        request_id=request_id,
        model_version=model_version,
        label=label,
        new_fruit=new_fruit,
        consent=consent,
        photo=photo,
    )


def write_feedback(
    root: str, record: FeedbackRecord, photo: bytes | None, storage: Storage | None = None
) -> None:
    """Photo first, record last; each write is atomic (rename locally, one PUT on S3)."""
    storage = storage or storage_for(root)
    if record.photo:
        if photo is None:
            raise ValueError("the record names a photo but none was given")
        storage.write_bytes(join(root, record.photo), photo)
    storage.write_bytes(join(root, "records", f"{record.id}.json"), record.model_dump_json().encode())


def read_records(root: str, storage: Storage | None = None) -> list[FeedbackRecord]:
    """Every readable record, oldest first; unreadable ones are skipped (a hand-edited file)."""
    storage = storage or storage_for(root)
    try:
        files = storage.list_files(join(root, "records"))
    except StorageError:
        return []  # no feedback yet
    out = []
    for f in files:
        if not f.uri.endswith(".json"):
            continue
        try:
            out.append(FeedbackRecord.model_validate_json(storage.read_bytes(f.uri)))
        except (ValidationError, ValueError):
            continue
    return sorted(out, key=lambda r: (r.received_at, r.id))


def training_photos(root: str, known_labels: set[str] | None = None) -> list[tuple[FileInfo, str]]:
    """The consented photos of known labels, with their labels: what the job adds to its training
    set. `known_labels`: keep only these labels (None: every label a record names)."""
    storage = storage_for(root)
    wanted = {
        join(root, r.photo): r.label
        for r in read_records(root, storage)
        if r.consent and r.label and r.photo and (known_labels is None or r.label in known_labels)
    }
    if not wanted:
        return []
    stored = {f.uri: f for f in storage.list_files(join(root, "photos"))}
    return [(stored[uri], label) for uri, label in sorted(wanted.items()) if uri in stored]
