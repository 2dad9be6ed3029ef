"""Writes the job's outputs: projected embeddings, full features as Parquet, and the bundle."""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark import TaskContext
from pyspark.sql import DataFrame

from batch.fit import Projection
from models.bundle import FEATURES_DIR, version_uri
from models.scoring import project
from models.storage import join, storage_for

EMBEDDINGS_SCHEMA = "uri string, label string, embedding array<float>"
WRITTEN_SCHEMA = "file string, rows long"
_FEATURES_ARROW = pa.schema([
    ("uri", pa.string()), ("label", pa.string()), ("etag", pa.string()), ("sha256", pa.string()),
    ("features", pa.list_(pa.float32())),
])


def _project_partition(batches: Iterator[pd.DataFrame], p: Projection) -> Iterator[pd.DataFrame]:
    for batch in batches:
        if len(batch) == 0:
            continue
        x = np.stack(batch["features"].to_numpy())
        z = project(x, p.mean, p.scale, p.components)
        yield pd.DataFrame({"uri": batch["uri"], "label": batch["label"], "embedding": list(z)})


def project_features(features: DataFrame, projection: Projection) -> pd.DataFrame:
    """Project on the executors with models.scoring.project (the service's function), collect.

    Only N x K floats reach the driver; rows are sorted by URI for a deterministic bundle.
    """
    fn = partial(_project_partition, p=projection)
    rows = features.select("uri", "label", "features").mapInPandas(fn, schema=EMBEDDINGS_SCHEMA)
    return rows.toPandas().sort_values("uri", kind="stable").reset_index(drop=True)


def _write_partition(batches: Iterator[pd.DataFrame], target: str) -> Iterator[pd.DataFrame]:
    tables = [pa.Table.from_pandas(b, schema=_FEATURES_ARROW, preserve_index=False)
              for b in batches if len(b)]
    if not tables:
        return
    buf = io.BytesIO()
    pq.write_table(pa.concat_tables(tables), buf, compression="zstd")
    ctx = TaskContext.get()
    uri = join(target, f"part-{ctx.partitionId() if ctx else 0:05d}.parquet")
    storage_for(uri).write_bytes(uri, buf.getvalue())
    yield pd.DataFrame({"file": [uri], "rows": [sum(t.num_rows for t in tables)]})


def write_features(features: DataFrame, root: str, version: str) -> pd.DataFrame:
    """Each executor writes its partition through the storage layer (local or S3, no S3A)."""
    target = join(version_uri(root, version), FEATURES_DIR)
    fn = partial(_write_partition, target=target)
    cols = features.select("uri", "label", "etag", "sha256", "features")
    return cols.mapInPandas(fn, schema=WRITTEN_SCHEMA).toPandas()
