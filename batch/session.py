"""Builds the SparkSession with the settings the job relies on (Arrow, Python env, quiet UI)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pyspark.sql import SparkSession

from batch.config import SparkSettings

# The driver JVM's log settings: warnings and errors, no start-up banner (read when it starts).
LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")


def spark_session(
    master: str | None = None, extra: dict[str, str] | None = None, settings: SparkSettings | None = None
) -> SparkSession:
    settings = settings or SparkSettings()
    # Workers must run this interpreter (the project's venv), not whatever python3 is on PATH;
    # Spark reads these from the environment of the processes it starts.
    os.environ["PYSPARK_PYTHON"] = settings.python
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", settings.python)
    if master is None or master.startswith("local"):
        # A laptop run stays on loopback (Spark would otherwise bind to the LAN address).
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.appName("fruits-featurize")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "256")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", str(settings.ui_enabled).lower())
        .config("spark.driver.memory", settings.driver_memory)
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.python.worker.reuse", "true")
        .config("spark.executorEnv.TF_CPP_MIN_LOG_LEVEL", "2")
        .config("spark.executorEnv.PYSPARK_PYTHON", settings.python)
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()}")
    )
    if master:
        builder = builder.master(master)
    for key, value in (extra or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one INFO line per closed gateway connection
    return spark


def threads_per_task(spark: SparkSession, configured: int | None) -> int:
    """TF threads per Python worker: the cores each concurrent task can use."""
    if configured:
        return configured
    if spark.sparkContext.master.startswith("local"):
        return max(1, (os.cpu_count() or 1) // spark.sparkContext.defaultParallelism)
    return int(spark.conf.get("spark.task.cpus", "1"))
