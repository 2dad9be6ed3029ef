"""Lists the input photos (local folder or S3 prefix) into a DataFrame: uri, label, size, etag."""

from __future__ import annotations

import math

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from batch.config import JobConfig
from models.faults import checkpoint
from models.feedback import training_photos
from models.probe import REAL_PREFIX
from models.storage import list_photos

LISTING_SCHEMA = "uri string, label string, size long, etag string"


def list_images(config: JobConfig) -> pd.DataFrame:
    """Every .jpg/.jpeg/.png under the input, recursively; label = the photo's parent folder.

    Listing happens on the driver through the storage layer, so s3:// works on a Spark
    without the Hadoop S3A connector; the bytes are then fetched by the executors.
    """
    photos = list_photos(config.input_uri)
    if config.feedback_uri:
        # Users' corrections of classes the input has: more photos of those classes.
        photos += training_photos(config.feedback_uri, known_labels={label for _, label in photos})
    if config.real_photos_uri:
        photos += [(f, REAL_PREFIX + fruit) for f, fruit in list_photos(config.real_photos_uri)]
    checkpoint("listing")
    rows = [(f.uri, label, f.size, f.etag) for f, label in photos]
    return pd.DataFrame(rows, columns=["uri", "label", "size", "etag"])


def images_frame(spark: SparkSession, listing: pd.DataFrame, config: JobConfig) -> DataFrame:
    """The listing as a DataFrame spread over enough partitions to keep every core busy."""
    parallelism = spark.sparkContext.defaultParallelism
    # A whole number of waves of `parallelism` tasks, so no core idles while the last few
    # photos of an unlucky partition are featurized alone (matters for small refreshes).
    waves = max(1, math.ceil(len(listing) / (config.images_per_partition * parallelism)))
    partitions = max(1, parallelism * waves)
    frame = (
        spark.createDataFrame(listing, schema=LISTING_SCHEMA)
        if len(listing)
        else (spark.createDataFrame([], schema=LISTING_SCHEMA))
    )
    return frame.repartition(partitions)
