"""POST /v1/feedback: a user's correction of an answer, stored through the storage layer for the
next refresh of the model (models/feedback.py has the layout; the job reads it with --feedback)."""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from PIL import Image
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from models.feedback import feedback_root, new_record, write_feedback
from models.preprocess import open_image
from models.storage import StorageError
from service import schemas
from service.answers import RecentAnswers
from service.errors import ApiError
from service.logging_setup import valid_request_id
from service.routes import ACCESS, BINARY, ERRORS, KEYED, current_classifier

router = APIRouter()


class FeedbackAccepted(BaseModel):
    id: str = Field(description="the feedback's id", examples=["5f0c2a9e8d7b4c1a9e3f6b2d8c4a1e7f"])
    photo_kept: bool = Field(
        description="true when the photo was stored (the user consented)", examples=[True]
    )


def require_answered(answers: RecentAnswers, request_id: str) -> None:
    """404 unless this service answered `request_id` within the feedback window."""
    if request_id not in answers:
        raise ApiError(
            404, "unknown_request", "request_id: no recent answer of this service has this request id."
        )


def _photo_format(data: bytes, max_pixels: int) -> str:
    """The photo's format, once it decodes like any upload (ImageError otherwise)."""
    open_image(data, max_pixels=max_pixels)
    with Image.open(io.BytesIO(data)) as img:
        return img.format or "JPEG"


@router.post(
    "/v1/feedback",
    status_code=202,
    response_model=FeedbackAccepted,
    responses={
        400: ERRORS[400],
        404: {
            "model": schemas.ErrorResponse,
            "description": "request_id names no answer of this service (or one older than FEEDBACK_WINDOW_S)",
        },
        413: ERRORS[413],
        415: ERRORS[415],
        422: {
            "model": schemas.ErrorResponse,
            "description": "unknown label, or not exactly one of label/new_fruit",
        },
        503: ERRORS[503],
        **ACCESS,
    },
    dependencies=KEYED,
    summary="Say what the photo really showed; with consent, the photo trains the next version",
)
async def feedback(
    request: Request,
    request_id: Annotated[
        str, Form(description="X-Request-ID of the answer being corrected", examples=["3b1f0c2a9e8d4c1a"])
    ],
    consent: Annotated[
        bool, Form(description="the user agrees that the photo is kept and used to train the model")
    ] = False,
    label: Annotated[
        str | None, Form(max_length=200, description="the correct class: one of /v1/classes' labels")
    ] = None,
    new_fruit: Annotated[
        str | None, Form(min_length=1, max_length=100, description="free text, for a fruit no class covers")
    ] = None,
    # Typed UploadFile, like classify's `file`: Swagger UI then shows a file picker.
    photo: Annotated[
        UploadFile, File(description="the photo; stored only with consent", json_schema_extra=BINARY)
    ] = None,
) -> FeedbackAccepted:
    settings = request.app.state.settings
    c = current_classifier(request)
    if not valid_request_id(request_id):
        raise ApiError(422, "invalid_request", "request_id: not a request id this service gives")
    if (label is None) == (new_fruit is None):
        raise ApiError(422, "invalid_request", "Send exactly one of label (a known class) and new_fruit.")
    if label is not None and label not in c.bundle.catalog:
        raise ApiError(422, "unknown_label", "label: not a class of the model in service (see /v1/classes).")
    require_answered(request.app.state.answers, request_id)
    data, photo_format = None, None
    if consent and photo is not None:
        data = await photo.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise ApiError(
                413, "file_too_large", f"The file is larger than {settings.max_upload_bytes} bytes."
            )
        photo_format = await run_in_threadpool(_photo_format, data, settings.max_image_pixels)
    record = new_record(request_id, c.version, label, new_fruit, consent, photo_format)
    try:
        await run_in_threadpool(
            write_feedback, settings.feedback_uri or feedback_root(settings.artifacts_uri), record, data
        )
    except (StorageError, OSError):
        raise ApiError(503, "storage_unavailable", "The feedback could not be stored; retry later.") from None
    return FeedbackAccepted(id=record.id, photo_kept=record.photo is not None)
