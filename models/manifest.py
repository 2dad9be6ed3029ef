"""The bundle's manifest as types: what the job records and every consumer reads.

The job builds a `Manifest`; `models.bundle` writes it as JSON and validates it when a bundle
is read, so a missing or renamed field fails at load time (the reloader refuses the version)
instead of at request time. Consumers read attributes, never string keys.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.augment import AugmentSpec
from models.featurizer import FeaturizerSpec

RANDOM_WEIGHTS_WARNING = (
    "This model uses RANDOM weights (a demo/test build, not trained on ImageNet): "
    "its answers only reflect pixel statistics of the training photos."
)


class _Record(BaseModel):
    # A field the code does not know is an error: the writer and the readers share this file.
    model_config = ConfigDict(extra="forbid")


class Weights(_Record):
    spec: str = Field(description="imagenet, random:SEED, or the weights file's URI")
    sha256: str = Field(description="SHA-256 over the weight tensors: the exact model that ran")
    random: bool = Field(description="random weights: a demo/test build, not a trained model")


class Preprocessing(_Record):
    function: str = Field(description="the one function the job and the service both run")
    version: str = Field(description="models.preprocess.PREPROCESSING_VERSION at build time")


class Scaler(_Record):
    with_mean: bool = True
    with_std: bool = True
    fitted_with: str


class Pca(_Record):
    k: int = Field(ge=1)
    chosen_by: str
    variance_target: float | None = None
    explained_variance_ratio: list[float]
    explained_variance_kept: float
    fitted_with: str
    spread_ceiling_rank: int = Field(
        ge=0, description="components with more variance than this one are shrunk to it (0: none)"
    )
    component_weights: list[float] = Field(
        description="each component's factor in the embedding (pca_components holds them applied)"
    )
    within_class_shrink: float = Field(
        ge=0,
        description="the search's within-class metric (batch.fit.within_class_metric), folded into "
        "pca_components; 0: none",
    )


class Calibration(_Record):
    rule: str
    percentile: float
    margin: float
    temperature: float = Field(gt=0)
    temperature_fitted_on: str
    held_out_ece: float
    min_confidence: float = Field(ge=0, le=1)
    view_distance_factor: float = Field(ge=1)
    training_photos_ece: float | None = Field(None, description="set by the run report")


class Counts(_Record):
    listed: int = Field(ge=0)
    featurized: int = Field(ge=0)
    skipped: int = Field(ge=0)
    classes: int = Field(ge=0)
    rows: int = Field(ge=0, description="reference rows: photos and their augmented views")
    augmented_rows: int = Field(ge=0)
    feedback: int = Field(0, ge=0, description="training photos that came from users' feedback")


class SkippedPhoto(_Record):
    uri: str
    code: str
    error: str


class FeatureFiles(_Record):
    uri: str = "features/"
    files: list[str]
    rows: int
    format: str = "parquet"


class Stage(_Record):
    seconds: float
    images: int
    images_per_s: float | None = None


class SparkRun(_Record):
    master: str
    parallelism: int
    version: str


class Refresh(_Record):
    """What a run reused from the previous version (`--incremental`)."""

    incremental: bool
    previous_version: str | None = None
    reused: int = Field(0, description="photos whose features came from the previous version")
    featurized: int = Field(0, description="photos sent to the model: new, changed or unreadable before")
    dropped: int = Field(0, description="photos of the previous version gone from the input")
    note: str = ""


class Probe(_Record):
    """The fruit probe (models/probe.py) and what it was trained on."""

    fruits: int = Field(ge=2)
    reference_rows: int = Field(
        ge=0, description="reference photos and views, labelled by their class's fruit"
    )
    real_photos: int = Field(0, ge=0, description="real photos of fruit in scenes (--real-photos)")
    real_photos_unused: int = Field(0, ge=0, description="real photos of a fruit that no class shows")
    c: float = Field(gt=0, description="inverse L2 strength (batch.probe.PROBE_C)")
    trained_with: str
    min_confidence: float = Field(ge=0, le=1, description="below this fruit probability: unknown")


class Search(_Record):
    """How the service finds a photo's nearest reference rows (models/search.py)."""

    kind: Literal["exact", "faiss-ivf-flat"] = Field(
        "exact", description="exact: every row measured; faiss-ivf-flat: an index chooses the rows"
    )
    chosen_by: str = Field(
        "default", description="the job's --index: auto (an index from min_rows rows on), exact or ivf"
    )
    min_rows: int | None = Field(None, ge=1, description="auto's threshold when the job ran")
    file: str | None = Field(None, description="the index's file in the version (listed in files)")
    lists: int | None = Field(None, ge=1, description="inverted lists (k-means cells) of the index")
    nprobe: int | None = Field(None, ge=1, description="lists searched per query")
    seed: int | None = Field(None, description="seed of the index's k-means")
    faiss_version: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Search:
        indexed = [self.file, self.lists, self.nprobe, self.seed, self.faiss_version]
        if self.kind == "exact" and any(v is not None for v in indexed):
            raise ValueError("an exact search has no index parameters")
        if self.kind != "exact" and any(v is None for v in indexed):
            raise ValueError(f"a {self.kind} search needs file, lists, nprobe, seed and faiss_version")
        return self


class FileEntry(_Record):
    sha256: str
    bytes: int


class Manifest(_Record):
    version: str
    created_at: str
    input_uri: str
    featurizer: FeaturizerSpec
    weights: Weights
    preprocessing: Preprocessing
    augment: AugmentSpec
    feature_dim: int = Field(ge=1)
    scaler: Scaler
    pca: Pca
    calibration: Calibration
    counts: Counts
    class_counts: dict[str, int]
    skipped: list[SkippedPhoto] = []
    features: FeatureFiles
    stages: dict[str, Stage]
    spark: SparkRun
    libraries: dict[str, str]
    refresh: Refresh = Refresh(incremental=False)
    probe: Probe
    report: str | None = Field(None, description="the run report's page, relative to the version")
    # Bundles written before the index existed have no such field: they search exactly.
    search: Search = Search()
    # Set by models.bundle.write_version.
    files: dict[str, FileEntry] = {}
    format_version: int | None = None

    @field_validator("featurizer")
    @classmethod
    def _known_featurizer(cls, spec: FeaturizerSpec) -> FeaturizerSpec:
        return spec.validated()

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.pca.k > self.feature_dim:
            raise ValueError(f"pca.k {self.pca.k} exceeds feature_dim {self.feature_dim}")
        if self.counts.skipped != len(self.skipped):
            raise ValueError("counts.skipped disagrees with the skipped list")
        return self

    @property
    def image_size(self) -> int:
        return self.featurizer.image_size
