"""The job's typed configuration, built once from the command line and passed to every step."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.augment import AugmentSpec
from models.featurizer import DEFAULT_BATCH_SIZE, FeaturizerSpec

# Default K: the fewest components keeping this share of the standardised features' variance.
DEFAULT_VARIANCE = 0.93
# ...but never more than this many: bounds the bundle (N x K floats) and per-request search cost.
MAX_COMPONENTS = 256
# Components whose variance exceeds the SPREAD_CEILING_RANK-th's are shrunk to it in the
# embedding (batch.fit.component_weights), so that no single direction (overall activation,
# which contrast moves) dominates the distances (docs/decisions.md).
SPREAD_CEILING_RANK = 4
# Distances are measured under the training photos' within-class metric: a direction along
# which photos of one fruit spread as much as the median direction counts 1/sqrt(1 + this) as
# much (batch.fit.within_class_metric); 1, 3 and 10 scored alike, 3 is the middle.
WITHIN_CLASS_SHRINK = 3.0
# Augmented views per training photo in the reference set; each costs one more featurize pass.
# With Lite0's ImageNet weights one view gained the real-photo dev set 2-6 points and a second
# lost 0.5-2 (docs/decisions.md, 2026-12-02).
DEFAULT_AUGMENT_VIEWS = 1
# The reference rows' search (models/search.py). Exact by default: with an index, classify
# still measures most classes exactly at 1M rows (docs/decisions.md); auto = ivf from INDEX_MIN_ROWS.
SEARCH_CHOICES = ("auto", "exact", "ivf")


class SparkSettings(BaseSettings):
    """The Spark session's settings from the environment (SPARK_*, PYSPARK_PYTHON), read once
    when the session is built; a cluster's own spark-submit options still win."""

    model_config = SettingsConfigDict(env_prefix="SPARK_", extra="ignore")

    driver_memory: str = Field("4g", description="spark.driver.memory (local mode: the whole job)")
    ui_enabled: bool = Field(False, description="Spark's web UI (port 4040)")
    python: str = Field(
        default_factory=lambda: sys.executable,
        validation_alias=AliasChoices("PYSPARK_PYTHON"),
        description="the interpreter of the Python workers: this venv's by default",
    )


@dataclass(frozen=True)
class JobConfig:
    input_uri: str
    output_uri: str
    spec: FeaturizerSpec = field(default_factory=lambda: FeaturizerSpec(weights="imagenet"))
    components: int | None = None  # None: chosen by explained variance
    variance: float = DEFAULT_VARIANCE
    max_components: int = MAX_COMPONENTS
    spread_ceiling_rank: int = SPREAD_CEILING_RANK  # 0: plain PCA coordinates
    within_class_shrink: float = WITHIN_CLASS_SHRINK  # 0: Euclidean distances in the embedding
    master: str | None = None  # None: spark-submit's --master, else local[*]
    catalog_uri: str | None = None
    # Users' feedback (models/feedback.py): its consented photos of known labels join the training set.
    feedback_uri: str | None = None
    # Real photos of fruit in scenes, in folders named by fruit (apple/, banana/): they train the
    # fruit probe (models/probe.py) and the PCA, and are never reference rows.
    real_photos_uri: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    images_per_partition: int = 128
    tf_threads: int | None = None  # None: cores per concurrent task
    keep_versions: int = 5
    progress_interval_s: float = 5.0  # seconds between console progress lines
    incremental: bool = False  # reuse the current version's features of unchanged photos
    augment: AugmentSpec = field(default_factory=lambda: AugmentSpec(views=DEFAULT_AUGMENT_VIEWS))
    search_index: str = "auto"  # one of SEARCH_CHOICES
    spark_conf: dict[str, str] = field(default_factory=dict)
    spark_settings: SparkSettings = field(default_factory=SparkSettings)

    def __post_init__(self):
        if self.components is not None and self.components < 1:
            raise ValueError("--components must be >= 1")
        if not 0 < self.variance <= 1:
            raise ValueError("--variance must be in (0, 1]")
        if self.spread_ceiling_rank < 0:
            raise ValueError("--spread-ceiling must be >= 0")
        if not self.within_class_shrink >= 0:
            raise ValueError("--within-class-shrink must be >= 0")
        if self.keep_versions < 1:
            raise ValueError("--keep-versions must be >= 1: the new version is always kept")
        if self.search_index not in SEARCH_CHOICES:
            raise ValueError(f"--index must be one of {', '.join(SEARCH_CHOICES)}, got {self.search_index!r}")
        if self.batch_size < 1 or self.images_per_partition < 1:
            raise ValueError("batch size and images per partition must be >= 1")
