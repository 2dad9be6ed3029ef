"""HTTP routes: validate the request, call the inference pipeline, return a schema. Nothing else."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile

from models.bundle import BundleError
from models.classifier import Classification, Classifier
from models.featurizer import public_weights
from models.manifest import RANDOM_WEIGHTS_WARNING
from service import schemas
from service.errors import ApiError

router = APIRouter()

ERRORS = {
    400: {"model": schemas.ErrorResponse, "description": "not an image, or a damaged one"},
    413: {"model": schemas.ErrorResponse, "description": "upload or image too large"},
    415: {"model": schemas.ErrorResponse, "description": "image format not accepted"},
    422: {"model": schemas.ErrorResponse, "description": "invalid parameters"},
    503: {"model": schemas.ErrorResponse, "description": "no model loaded yet, or overloaded"},
}


def _model_route(path: str, response_model: type, summary: str):
    """A GET route that answers from the loaded model (503 until one is loaded)."""
    return router.get(path, response_model=response_model, responses={503: ERRORS[503]}, summary=summary)


def _classifier(request: Request) -> Classifier:
    try:
        classifier = request.app.state.holder.require()
    except BundleError:
        raise ApiError(503, "not_ready", "The model is not loaded yet.") from None
    request.state.model_version = classifier.version  # for the X-Model-Version header
    return classifier


async def _upload_and_model(request: Request, file: UploadFile) -> tuple[bytes, Classifier]:
    """The uploaded bytes (413 past the limit) and the classifier this request will use."""
    limit = request.app.state.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "file_too_large", f"The file is larger than {limit} bytes.")
    return data, _classifier(request)


def model_ref(c: Classifier) -> schemas.ModelRef:
    m = c.bundle.manifest
    return schemas.ModelRef(
        version=c.version,
        weights=public_weights(m.weights.spec),
        weights_sha256=m.weights.sha256,
        random_weights=c.random_weights,
        featurizer=c.featurizer.spec.name,
        image_size=c.featurizer.spec.image_size,
        precision=c.featurizer.spec.precision,
        precision_running=c.featurizer.precision,
    )


def classification_response(c: Classifier, result: Classification) -> schemas.ClassifyResponse:
    return schemas.ClassifyResponse(
        label=result.label,
        display_name=result.top_k[0].info.get("display_name", result.label),
        known=result.known,
        top_k=[
            schemas.ClassMatch(
                label=m.label,
                score=m.score,
                distance=m.distance,
                threshold=m.threshold,
                info=schemas.ClassInfo(**m.info),
                examples=[schemas.Example(source=e.source, distance=e.distance) for e in m.examples],
            )
            for m in result.top_k
        ],
        model=model_ref(c),
        warning=RANDOM_WEIGHTS_WARNING if c.random_weights else None,
    )


PhotoUpload = Annotated[UploadFile, File(description="the photo; format detected from its bytes")]


@router.post(
    "/v1/classify",
    response_model=schemas.ClassifyResponse,
    responses=ERRORS,
    summary="Classify a fruit photo",
)
async def classify(
    request: Request,
    file: PhotoUpload,
    top_k: Annotated[
        int | None,
        Query(ge=1, le=20, description="how many classes to return (default: the DEFAULT_TOP_K setting)"),
    ] = None,
) -> schemas.ClassifyResponse:
    data, c = await _upload_and_model(request, file)
    k = top_k or request.app.state.settings.default_top_k
    result = await request.app.state.pipeline.classify(c, data, k)
    return classification_response(c, result)


@router.post(
    "/v1/embed",
    response_model=schemas.EmbedResponse,
    responses=ERRORS,
    summary="The photo's features and PCA embedding (parity checks, debugging)",
)
async def embed(request: Request, file: PhotoUpload) -> schemas.EmbedResponse:
    data, c = await _upload_and_model(request, file)
    features, z = await request.app.state.pipeline.embed(c, data)
    return schemas.EmbedResponse(model=model_ref(c), embedding=z.tolist(), features=features.tolist())


@router.get("/healthz", response_model=schemas.Health, summary="The process is alive")
async def healthz() -> schemas.Health:
    return schemas.Health(status="ok")


@_model_route("/readyz", schemas.Ready, "The bundle and the model are loaded")
async def readyz(request: Request) -> schemas.Ready:
    return schemas.Ready(status="ready", version=_classifier(request).version)


@_model_route("/v1/model", schemas.ModelSummary, "The loaded bundle's manifest, summarised")
async def model_summary(request: Request) -> schemas.ModelSummary:
    c = _classifier(request)
    m = c.bundle.manifest
    return schemas.ModelSummary(
        model=model_ref(c),
        created_at=m.created_at,
        classes=m.counts.classes,
        training_photos=m.counts.featurized,
        skipped_photos=m.counts.skipped,
        pca_components=m.pca.k,
        explained_variance_kept=m.pca.explained_variance_kept,
        feature_dim=m.feature_dim,
        preprocessing=m.preprocessing.version,
        augmented_views_per_photo=m.augment.views,
        reference_rows=m.counts.rows,
        calibration=m.calibration,
        libraries=m.libraries,
    )


@_model_route("/v1/classes", schemas.ClassesResponse, "The classes this model knows, with their information")
async def classes(request: Request) -> schemas.ClassesResponse:
    c = _classifier(request)
    counts = c.bundle.manifest.class_counts
    return schemas.ClassesResponse(
        model=model_ref(c),
        classes=[
            schemas.ClassEntry(
                label=label,
                training_photos=counts.get(label, 0),
                info=schemas.ClassInfo(**c.bundle.catalog[label]),
            )
            for label in c.bundle.classes.tolist()
        ],
    )
