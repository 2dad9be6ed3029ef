"""Request and response schemas: the contract the mobile app depends on (see /docs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from models.manifest import Calibration


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. not_an_image")
    message: str = Field(description="human-readable explanation")


class ErrorResponse(BaseModel):
    error: ErrorBody


class ClassInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    display_name: str
    names: dict[str, str] = Field(default_factory=dict, description="common names by language")
    kind: str = Field("unknown", description="fruit, vegetable, nut or unknown")
    scientific_name: str = ""
    fact: str = ""


class Example(BaseModel):
    source: str = Field(description="URI of a training photo close to the upload")
    distance: float = Field(ge=0)


class ClassMatch(BaseModel):
    label: str
    score: float = Field(
        ge=0,
        le=1,
        description="calibrated confidence that this is the photo's class: among answers given "
        "with score c, about c are right (fitted by the job on held-out photos)",
    )
    distance: float = Field(ge=0, description="distance to the class's nearest training photo")
    threshold: float = Field(description="farther than this, the photo is not known as this class")
    info: ClassInfo
    examples: list[Example]


class ModelRef(BaseModel):
    version: str
    weights: str = Field(description="imagenet, random:SEED, or file (a weights file: see weights_sha256)")
    weights_sha256: str
    random_weights: bool = Field(description="true: a demo/test model, NOT trained")
    featurizer: str
    image_size: int
    precision: str = Field(description="the bundle's model arithmetic: fp32 or bf16")
    precision_running: str = Field(
        description="what this process runs: the bundle's, or fp32 on a CPU without bfloat16"
    )


class ClassifyResponse(BaseModel):
    label: str = Field(description="best class")
    display_name: str
    known: bool = Field(
        description="false when the best class is not confident enough (score below the bundle's "
        "min_confidence), the photo is farther than its threshold, or it looks like an empty scene"
    )
    top_k: list[ClassMatch]
    model: ModelRef
    warning: str | None = Field(None, description="set when the model uses random weights")


class EmbedResponse(BaseModel):
    model: ModelRef
    embedding: list[float] = Field(description="the photo's PCA embedding, as the job computes it")
    features: list[float] = Field(description="the model's raw feature vector")


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    version: str


class ClassEntry(BaseModel):
    label: str
    training_photos: int
    info: ClassInfo


class ClassesResponse(BaseModel):
    model: ModelRef
    classes: list[ClassEntry]


class ModelSummary(BaseModel):
    model: ModelRef
    created_at: str
    classes: int
    training_photos: int
    skipped_photos: int
    pca_components: int
    explained_variance_kept: float
    feature_dim: int
    preprocessing: str = Field(description="version of the shared preprocessing the bundle was built with")
    augmented_views_per_photo: int = Field(description="extra seeded views of each training photo")
    reference_rows: int = Field(description="rows searched per request: photos and their views")
    calibration: Calibration
    libraries: dict[str, str]
