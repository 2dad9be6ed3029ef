"""Request and response schemas: the contract the mobile app depends on (see /docs)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


def probability(description: str, example: float):
    """A field holding a probability in [0, 1]."""
    return Field(ge=0, le=1, description=description, examples=[example])


class ErrorCode(StrEnum):
    """Every code an error answer can carry; clients switch on these, never on messages."""

    not_an_image = "not_an_image"
    corrupt_image = "corrupt_image"
    empty_file = "empty_file"
    file_too_large = "file_too_large"
    image_too_large = "image_too_large"
    too_large = "too_large"
    request_timeout = "request_timeout"
    unsupported_format = "unsupported_format"
    unsupported_media_type = "unsupported_media_type"
    invalid_request = "invalid_request"
    unknown_label = "unknown_label"
    unknown_request = "unknown_request"
    unauthorized = "unauthorized"
    forbidden = "forbidden"
    not_found = "not_found"
    photo_not_found = "photo_not_found"
    method_not_allowed = "method_not_allowed"
    rate_limited = "rate_limited"
    bundle_refused = "bundle_refused"
    not_ready = "not_ready"
    overloaded = "overloaded"
    storage_unavailable = "storage_unavailable"
    http_error = "http_error"
    internal_error = "internal_error"


class ErrorBody(BaseModel):
    code: ErrorCode = Field(description="stable machine-readable code", examples=["not_an_image"])
    message: str = Field(
        description="human-readable explanation (English)", examples=["The file is not an image we can read."]
    )


class ErrorResponse(BaseModel):
    error: ErrorBody = Field(description="what went wrong")


class ClassInfo(BaseModel):
    display_name: str = Field(
        description="the class's common name in the answer's language (Content-Language)",
        examples=["Pomme Golden"],
    )
    names: dict[str, str] = Field(
        default_factory=dict,
        description="common names by language",
        examples=[{"en": "Golden apple", "fr": "Pomme Golden"}],
    )
    kind: str = Field("unknown", description="fruit, vegetable, nut or unknown", examples=["fruit"])
    scientific_name: str = Field(
        "", description="Latin binomial; empty if unknown", examples=["Malus domestica"]
    )
    fact: str = Field(
        "",
        description="one short fact, in the answer's language",
        examples=["Les pommes flottent sur l'eau car environ un quart de leur volume est de l'air."],
    )


class Fruit(BaseModel):
    id: str = Field(description="stable fruit id, shared by all its varieties", examples=["apple"])
    name: str = Field(description="the fruit's name in the answer's language", examples=["Pomme"])


class FruitMatch(Fruit):
    score: float = probability("the sum of the scores of all the fruit's varieties", 0.91)


class Example(BaseModel):
    id: str = Field(
        description="public id of a training photo close to the upload", examples=["3f9a0c1e5b7d2a4c6e8f0a1b"]
    )
    url: str = Field(
        description="where this service serves the photo as JPEG (add ?size=N for a thumbnail)",
        examples=["/v1/photos/3f9a0c1e5b7d2a4c6e8f0a1b"],
    )
    attribution: str = Field(
        description="credit and licence to show with the photo",
        examples=["Fruits-360 (Mihai Oltean, Horea Muresan), CC BY-SA 4.0"],
    )
    distance: float = Field(ge=0, description="the photo's distance to the upload", examples=[3.2])


class ClassMatch(BaseModel):
    label: str = Field(description="the variety: a class the model knows", examples=["Apple Golden 1"])
    fruit: Fruit = Field(description="the variety's fruit")
    score: float = probability(
        "calibrated confidence that this is the photo's class: among answers given "
        "with score c, about c are right (fitted by the job on held-out photos)",
        0.87,
    )
    distance: float = Field(
        ge=0, description="distance to the class's nearest training photo", examples=[2.9]
    )
    threshold: float = Field(
        description="farther than this, the photo is not known as this class", examples=[6.4]
    )
    info: ClassInfo = Field(description="names and a fact, in the answer's language")
    examples: list[Example] = Field(description="the nearest distinct training photos of this class")


class ModelRef(BaseModel):
    version: str = Field(description="the bundle version", examples=["20261125T043000Z-1a2b3c"])
    weights: str = Field(
        description="imagenet, random:SEED, or file (a weights file: see weights_sha256)",
        examples=["imagenet"],
    )
    weights_sha256: str = Field(description="SHA-256 over the weight tensors", examples=["9f2c" + "0" * 60])
    random_weights: bool = Field(description="true: a demo/test model, NOT trained", examples=[False])
    featurizer: str = Field(
        description="the model that makes features: resnet50, efficientnet-lite0 or pixels:N",
        examples=["efficientnet-lite0"],
    )
    image_size: int = Field(description="the model's input side in pixels", examples=[224])
    precision: str = Field(description="the bundle's model arithmetic: fp32 or bf16", examples=["fp32"])
    precision_running: str = Field(
        description="what this process runs: the bundle's, or fp32 on a CPU without bfloat16",
        examples=["fp32"],
    )


class ClassifyResponse(BaseModel):
    label: str | None = Field(
        description="the best variety; null when known is false", examples=["Apple Golden 1"]
    )
    display_name: str | None = Field(
        description="its name in the answer's language; null when known is false", examples=["Pomme Golden"]
    )
    fruit: Fruit | None = Field(
        description="the best variety's fruit; null when known is false",
        examples=[{"id": "apple", "name": "Pomme"}],
    )
    known: bool = Field(
        description="false when the model is not sure enough of the fruit (fruit_confidence "
        "below the bundle's min_confidence) or the photo looks like an empty scene; top_k still "
        "lists the best classes as suggestions",
        examples=[True],
    )
    fruit_confidence: float = probability(
        "probability of the best class's fruit (the mean of the fruit probe's and the "
        "nearest training photos')",
        0.97,
    )
    variety_confidence: float = probability(
        "probability of the best class among its fruit's varieties (the nearest "
        "training photos'); a variety is often a guess when the fruit is sure",
        0.62,
    )
    top_k: list[ClassMatch] = Field(
        description="the best varieties, best first: score = fruit probability x variety share", min_length=1
    )
    fruits: list[FruitMatch] | None = Field(
        None,
        description="with group=fruit: the best fruits, each scored by the sum of its varieties' "
        "scores (as many as top_k); otherwise null",
        examples=[[{"id": "apple", "name": "Pomme", "score": 0.93}]],
    )
    model: ModelRef = Field(description="the model that answered")
    warning: str | None = Field(
        None,
        description="set when the model uses random weights (a demo/test build)",
        examples=[None],
    )


class EmbedResponse(BaseModel):
    model: ModelRef = Field(description="the model that answered")
    embedding: list[float] = Field(
        description="the photo's PCA embedding, as the job computes it", examples=[[1.52, -0.31, 0.07]]
    )
    features: list[float] = Field(description="the model's raw feature vector", examples=[[0.0, 0.84, 0.12]])


class Health(BaseModel):
    status: str = Field(description="always ok: the process answers", examples=["ok"])


class Ready(BaseModel):
    status: str = Field(description="ready once a bundle and its model are loaded", examples=["ready"])
    version: str = Field(description="the bundle version in service", examples=["20261125T043000Z-1a2b3c"])


class ClassEntry(BaseModel):
    label: str = Field(description="the variety, as answers name it", examples=["Apple Golden 1"])
    fruit: Fruit = Field(description="the variety's fruit")
    training_photos: int = Field(ge=0, description="training photos of this class", examples=[492])
    info: ClassInfo = Field(description="names and a fact, in the answer's language")


class ClassesResponse(BaseModel):
    model: ModelRef = Field(description="the model whose classes these are")
    classes: list[ClassEntry] = Field(description="every class the model knows, sorted by label")


class CalibrationSummary(BaseModel):
    rule: str = Field(description="how per-class thresholds were set", examples=["percentile x margin"])
    percentile: float = Field(description="percentile of leave-one-out distances", examples=[99.0])
    margin: float = Field(description="factor on that percentile", examples=[1.5])
    temperature: float = Field(gt=0, description="softmax temperature of the scores", examples=[0.8])
    temperature_fitted_on: str = Field(
        description="what the temperature was fitted on", examples=["held-out"]
    )
    held_out_ece: float = Field(description="expected calibration error on held-out answers", examples=[0.03])
    min_confidence: float = probability("score under which an answer is unknown", 0.75)
    view_distance_factor: float = Field(
        ge=1, description="distance factor of augmented views", examples=[1.1]
    )
    training_photos_ece: float | None = Field(
        None, description="ECE over the training photos, set by the run report", examples=[0.04]
    )


class SearchSummary(BaseModel):
    kind: str = Field(
        description="exact: every reference row measured; faiss-ivf-flat: an index picks the rows, "
        "the classes shown are then measured over all their rows",
        examples=["faiss-ivf-flat"],
    )
    chosen_by: str = Field(description="the job's --index: auto, exact or ivf", examples=["auto"])
    min_rows: int | None = Field(None, description="rows from which auto builds an index", examples=[30000])
    lists: int | None = Field(None, description="the index's inverted lists", examples=[4096])
    nprobe: int | None = Field(None, description="lists searched per query", examples=[32])
    faiss_version: str | None = Field(None, description="faiss that built the index", examples=["1.15.1"])


class ProbeSummary(BaseModel):
    fruits: int = Field(ge=2, description="fruits the probe tells apart", examples=[63])
    reference_rows: int = Field(ge=0, description="reference rows it was trained on", examples=[10493])
    real_photos: int = Field(
        ge=0, description="real photos of fruit in scenes it was also trained on", examples=[1507]
    )


class ModelSummary(BaseModel):
    model: ModelRef = Field(description="the model in service")
    created_at: str = Field(
        description="when the job built the bundle (UTC)", examples=["2026-11-25T04:30:00Z"]
    )
    classes: int = Field(ge=0, description="classes the model knows", examples=[131])
    training_photos: int = Field(ge=0, description="photos the job featurized", examples=[67692])
    skipped_photos: int = Field(ge=0, description="photos the job could not read", examples=[0])
    pca_components: int = Field(ge=1, description="PCA dimensions searched", examples=[128])
    explained_variance_kept: float = Field(description="share of variance the PCA keeps", examples=[0.91])
    feature_dim: int = Field(description="the model's feature size", examples=[2048])
    preprocessing: str = Field(
        description="version of the shared preprocessing the bundle was built with",
        examples=["object-centred-2"],
    )
    augmented_views_per_photo: int = Field(
        description="extra seeded views of each training photo", examples=[2]
    )
    reference_rows: int = Field(
        description="rows searched per request: photos and their views", examples=[203076]
    )
    calibration: CalibrationSummary = Field(description="how scores and known were calibrated")
    search: SearchSummary = Field(description="how a photo's nearest reference rows are found")
    probe: ProbeSummary = Field(description="the fruit probe: a logistic regression on the features")
    libraries: dict[str, str] = Field(
        description="library versions the job ran", examples=[{"tensorflow": "2.21.0", "pyspark": "4.3.0"}]
    )
