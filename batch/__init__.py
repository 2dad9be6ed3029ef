"""The Spark job: read photos -> featurize -> fit scaler + PCA -> write features and the artifact bundle."""

from batch.config import JobConfig
from batch.job import JobResult, run_job

__all__ = ["JobConfig", "JobResult", "run_job"]
