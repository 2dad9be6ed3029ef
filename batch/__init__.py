"""The Spark job: read photos -> featurize -> fit scaler + PCA -> write features and the artifact bundle."""

from batch.config import JobConfig

__all__ = ["JobConfig", "JobResult", "run_job"]


def __getattr__(name: str):
    # Lazy: `python -m batch.evaluate` must run without importing Spark.
    if name in ("JobResult", "run_job"):
        from batch import job

        return getattr(job, name)
    raise AttributeError(f"module 'batch' has no attribute {name!r}")
