"""HTTP routes: validate the request, call the inference pipeline, return a schema. Nothing else."""

from __future__ import annotations

from typing import Annotated, Literal

from asgi_correlation_id import correlation_id
from fastapi import APIRouter, Depends, File, Path, Query, Request, Response, Security, UploadFile
from starlette.concurrency import run_in_threadpool

from models.bundle import BundleError
from models.catalog import localize
from models.classifier import Classification, Classifier, ClassMatch
from models.featurizer import public_weights
from models.manifest import RANDOM_WEIGHTS_WARNING
from models.storage import StorageUnavailable
from service import schemas
from service.access import api_key_scheme
from service.errors import ApiError
from service.http_cache import conditional_bytes, conditional_json
from service.language import answer_language
from service.photos import PhotoMissing, load_photo

router = APIRouter()

ERRORS = {
    400: {"model": schemas.ErrorResponse, "description": "not an image, or a damaged one"},
    413: {"model": schemas.ErrorResponse, "description": "upload or image too large"},
    415: {"model": schemas.ErrorResponse, "description": "image format or body type not accepted"},
    422: {"model": schemas.ErrorResponse, "description": "invalid parameters"},
    503: {"model": schemas.ErrorResponse, "description": "no model loaded yet, or overloaded"},
}
# Every /v1 route but the photos, when API keys or a rate limit are configured (service/access.py).
ACCESS = {
    401: {
        "model": schemas.ErrorResponse,
        "description": "API keys are configured: X-API-Key missing or wrong",
    },
    429: {
        "model": schemas.ErrorResponse,
        "description": "this key's (or address's) rate limit is spent; see Retry-After",
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    },
}
ERRORS.update(ACCESS)
# Declares the X-API-Key scheme in the schema (Swagger UI's Authorize); the middleware checks it.
KEYED = [Security(api_key_scheme)]
NOT_MODIFIED = {304: {"description": "If-None-Match names the current ETag: the client's copy is current"}}
# The model may be swapped by a reload at any time: clients keep a copy but revalidate it.
REVALIDATE = "no-cache"

Language = Annotated[str, Depends(answer_language)]


def _model_route(path: str, response_model: type, summary: str):
    """A GET route that answers from the loaded model (503 until one is loaded)."""
    return router.get(path, response_model=response_model, responses={503: ERRORS[503]}, summary=summary)


def current_classifier(request: Request) -> Classifier:
    """The model in service (503 not_ready before the first load); its version goes in the
    X-Model-Version header."""
    try:
        classifier = request.app.state.holder.require()
    except BundleError:
        raise ApiError(503, "not_ready", "The model is not loaded yet.") from None
    request.state.model_version = classifier.version  # for the X-Model-Version header
    return classifier


# A photo may come as the whole body, as phones' upload APIs send it, besides multipart `file`.
RAW_TYPES = ("image/jpeg", "image/png", "image/webp", "image/heic", "image/heif")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded", "")
RAW_BODY = {
    "requestBody": {
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in RAW_TYPES},
        "description": "the photo as multipart `file`, or as the raw body with one of these types",
    }
}


async def _raw_body(request: Request, limit: int) -> bytes:
    """The body, read until it passes `limit` (then 413); the upload middleware bounds it too."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "file_too_large", f"The file is larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def _upload_and_model(request: Request, file: UploadFile | None) -> tuple[bytes, Classifier]:
    """The uploaded bytes (413 past the limit) and the classifier this request will use."""
    limit = request.app.state.settings.max_upload_bytes
    if file is not None:
        data = await file.read(limit + 1)
    else:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media in FORM_TYPES:
            raise ApiError(
                422,
                "invalid_request",
                "file: Field required (or send the photo as the body, Content-Type "
                + ", ".join(RAW_TYPES)
                + ")",
            )
        if media not in RAW_TYPES:
            raise ApiError(
                415, "unsupported_media_type", f"Send multipart/form-data or one of {', '.join(RAW_TYPES)}."
            )
        data = await _raw_body(request, limit)
    if len(data) > limit:
        raise ApiError(413, "file_too_large", f"The file is larger than {limit} bytes.")
    return data, current_classifier(request)


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


def class_info(label: str, info: dict | None, lang: str) -> tuple[schemas.ClassInfo, schemas.Fruit]:
    local = localize(label, info, lang)
    info = info or {}
    return (
        schemas.ClassInfo(
            display_name=local.display_name,
            names=info.get("names") or {"en": local.display_name},
            kind=info.get("kind", "unknown"),
            scientific_name=info.get("scientific_name", ""),
            fact=local.fact,
        ),
        schemas.Fruit(id=local.fruit, name=local.fruit_name),
    )


def class_match(m: ClassMatch, lang: str, attribution: str) -> schemas.ClassMatch:
    info, fruit = class_info(m.label, m.info, lang)
    return schemas.ClassMatch(
        label=m.label,
        fruit=fruit,
        info=info,
        examples=[
            schemas.Example(
                id=e.photo_id, url=f"/v1/photos/{e.photo_id}", attribution=attribution, distance=e.distance
            )
            for e in m.examples
        ],
        score=m.score,
        distance=m.distance,
        threshold=m.threshold,
    )


def classification_response(
    c: Classifier, result: Classification, lang: str, attribution: str, fruits: int | None = None
) -> schemas.ClassifyResponse:
    """`fruits`: how many fruits to list, scored per fruit (group=fruit); None: no list."""
    top_k = [class_match(m, lang, attribution) for m in result.top_k]
    best = top_k[0] if result.known else None
    fruit_list = None
    if fruits is not None:
        names = {m.fruit.id: m.fruit.name for m in top_k}
        fruit_list = []
        for f in c.fruit_scores(result, fruits):
            if f.fruit not in names:
                label = c.fruit_label(f.fruit)
                names[f.fruit] = localize(label, c.bundle.catalog.get(label), lang).fruit_name
            fruit_list.append(schemas.FruitMatch(id=f.fruit, name=names[f.fruit], score=f.score))
    return schemas.ClassifyResponse(
        label=best.label if best else None,
        display_name=best.info.display_name if best else None,
        fruit=best.fruit if best else None,
        known=result.known,
        fruit_confidence=min(1.0, result.fruit_confidence),
        variety_confidence=min(1.0, result.variety_confidence),
        top_k=top_k,
        fruits=fruit_list,
        model=model_ref(c),
        warning=RANDOM_WEIGHTS_WARNING if c.random_weights else None,
    )


# `format: binary` beside OpenAPI 3.1's contentMediaType: code generators then type it as a file.
BINARY = {"format": "binary"}
# Typed UploadFile, not `UploadFile | None`: the schema stays a plain binary string, which Swagger
# UI shows as a file picker (an anyOf with null it shows as a text box). None: a raw-body upload.
PhotoUpload = Annotated[
    UploadFile,
    File(
        description="the photo (or send it as the raw body); format detected from its bytes",
        json_schema_extra=BINARY,
    ),
]


@router.post(
    "/v1/classify",
    response_model=schemas.ClassifyResponse,
    responses=ERRORS,
    dependencies=KEYED,
    summary="Classify a fruit photo",
    openapi_extra=RAW_BODY,
)
async def classify(
    request: Request,
    file: PhotoUpload = None,
    top_k: Annotated[
        int | None,
        Query(ge=1, le=20, description="how many classes to return (default: the DEFAULT_TOP_K setting)"),
    ] = None,
    group: Annotated[
        Literal["variety", "fruit"],
        Query(description="fruit: also list the best fruits, each with its varieties' summed score"),
    ] = "variety",
    lang: Language = "en",
) -> schemas.ClassifyResponse:
    data, c = await _upload_and_model(request, file)
    settings = request.app.state.settings
    k = top_k or settings.default_top_k
    result = await request.app.state.pipeline.classify(c, data, k)
    request.app.state.answers.add(correlation_id.get())  # feedback may now correct this answer
    fruits = k if group == "fruit" else None
    return classification_response(c, result, lang, settings.photo_attribution, fruits)


@router.get(
    "/v1/photos/{photo_id}",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the training photo as JPEG"},
        **NOT_MODIFIED,
        404: {"model": schemas.ErrorResponse, "description": "no photo with this id in the model"},
        422: ERRORS[422],
        503: ERRORS[503],
    },
    summary="A training photo named in an answer's examples",
)
async def photo(
    request: Request,
    photo_id: Annotated[str, Path(max_length=64, description="an example's id")],
    size: Annotated[
        int | None,
        Query(ge=16, le=1024, description="longest side in pixels, for a thumbnail (never enlarged)"),
    ] = None,
) -> Response:
    c = current_classifier(request)
    source = c.photo_source(photo_id)
    if source is None:
        raise ApiError(404, "photo_not_found", "No photo with this id in the model in service.")
    settings = request.app.state.settings
    try:
        data = await run_in_threadpool(load_photo, source, size, settings.max_image_pixels)
    except PhotoMissing:
        raise ApiError(404, "photo_not_found", "This photo is no longer available.") from None
    except StorageUnavailable:
        raise ApiError(503, "storage_unavailable", "The photo store is unavailable; retry later.") from None
    etag = f'"{photo_id}-{size or 0}-{len(data)}"'
    cache = f"public, max-age={settings.photo_max_age_s}"
    return conditional_bytes(request, data, "image/jpeg", etag, cache)


@router.post(
    "/v1/embed",
    response_model=schemas.EmbedResponse,
    responses=ERRORS,
    dependencies=KEYED,
    openapi_extra=RAW_BODY,
    summary="The photo's features and PCA embedding (parity checks, debugging)",
)
async def embed(request: Request, file: PhotoUpload = None) -> schemas.EmbedResponse:
    data, c = await _upload_and_model(request, file)
    features, z = await request.app.state.pipeline.embed(c, data)
    return schemas.EmbedResponse(model=model_ref(c), embedding=z.tolist(), features=features.tolist())


@router.get("/healthz", response_model=schemas.Health, summary="The process is alive")
async def healthz() -> schemas.Health:
    return schemas.Health(status="ok")


@_model_route("/readyz", schemas.Ready, "The bundle and the model are loaded")
async def readyz(request: Request) -> schemas.Ready:
    return schemas.Ready(status="ready", version=current_classifier(request).version)


def _cached_route(path: str, response_model: type, summary: str):
    """A GET route answered from the loaded model, with an ETag tied to its version."""
    return router.get(
        path,
        response_model=response_model,
        responses={**NOT_MODIFIED, 503: ERRORS[503], **ACCESS},
        dependencies=KEYED,
        summary=summary,
    )


@_cached_route("/v1/model", schemas.ModelSummary, "The loaded bundle's manifest, summarised")
async def model_summary(request: Request) -> Response:
    c = current_classifier(request)
    m = c.bundle.manifest
    body = schemas.ModelSummary(
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
        calibration=schemas.CalibrationSummary(**m.calibration.model_dump()),
        search=schemas.SearchSummary(**m.search.model_dump(include=set(schemas.SearchSummary.model_fields))),
        probe=schemas.ProbeSummary(**m.probe.model_dump(include=set(schemas.ProbeSummary.model_fields))),
        libraries=m.libraries,
    )
    etag = f'"model-{c.version}-{c.featurizer.precision}"'
    return conditional_json(request, body, etag, REVALIDATE)


@_cached_route("/v1/classes", schemas.ClassesResponse, "The classes this model knows, with their information")
async def classes(request: Request, lang: Language = "en") -> Response:
    c = current_classifier(request)
    counts = c.bundle.manifest.class_counts
    entries = []
    for label in c.bundle.classes.tolist():
        info, fruit = class_info(label, c.bundle.catalog.get(label), lang)
        entries.append(
            schemas.ClassEntry(label=label, fruit=fruit, training_photos=counts.get(label, 0), info=info)
        )
    body = schemas.ClassesResponse(model=model_ref(c), classes=entries)
    headers = {"Content-Language": lang, "Vary": "Accept-Language"}
    return conditional_json(request, body, f'"classes-{c.version}-{lang}"', REVALIDATE, headers)
