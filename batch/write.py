"""Writes the features as Parquet and projects them, in one pass on the executors; indexes the rows."""

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
from models.bundle import FEATURES_DIR, SEARCH_INDEX, ArtifactBundle, version_uri
from models.faults import checkpoint
from models.manifest import Search
from models.scoring import project
from models.search import INDEX_MIN_ROWS, IndexedSearch
from models.storage import join, storage_for

OUTPUT_SCHEMA = "uri string, label string, view int, embedding array<float>, file string"
_FEATURES_ARROW = pa.schema(
    [
        ("uri", pa.string()),
        ("label", pa.string()),
        ("etag", pa.string()),
        ("sha256", pa.string()),
        ("view", pa.int32()),
        ("features", pa.list_(pa.float32())),
    ]
)


def _project_and_write_partition(
    batches: Iterator[pd.DataFrame], p: Projection, target: str
) -> Iterator[pd.DataFrame]:
    frames = [b for b in batches if len(b)]
    if not frames:
        return
    batch = pd.concat(frames, ignore_index=True)
    buf = io.BytesIO()
    table = pa.Table.from_pandas(batch[_FEATURES_ARROW.names], schema=_FEATURES_ARROW, preserve_index=False)
    pq.write_table(table, buf, compression="zstd")
    ctx = TaskContext.get()
    uri = join(target, f"part-{ctx.partitionId() if ctx else 0:05d}.parquet")
    storage_for(uri).write_bytes(uri, buf.getvalue())
    checkpoint("wrote:features")
    z = project(np.stack(batch["features"].to_numpy()), p.mean, p.scale, p.embedding_map)
    yield pd.DataFrame(
        {
            "uri": batch["uri"],
            "label": batch["label"],
            "view": batch["view"],
            "embedding": list(z),
            "file": uri,
        }
    )


def project_and_write(
    features: DataFrame, projection: Projection, root: str, version: str
) -> tuple[pd.DataFrame, list[str]]:
    """One pass on the executors: each partition writes its features as Parquet through the
    storage layer (local or S3, no S3A) and projects them with models.scoring.project, the
    service's own function. Only N x K floats reach the driver, sorted by URI for a
    deterministic bundle. Returns (uri, label, view, embedding) rows and the Parquet files written."""
    target = join(version_uri(root, version), FEATURES_DIR)
    fn = partial(_project_and_write_partition, p=projection, target=target)
    cols = features.select(*_FEATURES_ARROW.names)
    rows = cols.mapInPandas(fn, schema=OUTPUT_SCHEMA).toPandas()
    files = sorted(set(rows.pop("file")))
    return rows.sort_values(["uri", "view"], kind="stable").reset_index(drop=True), files


def wants_index(choice: str, rows: int) -> bool:
    """Whether the job's --index (batch.config.SEARCH_CHOICES) builds an index over `rows` rows."""
    return choice == "ivf" or (choice == "auto" and rows >= INDEX_MIN_ROWS)


def index_rows(bundle: ArtifactBundle, choice: str, seed: int = 0) -> None:
    """Build the search index over the bundle's reference rows (the embeddings the service
    searches) on the driver, and record it in the manifest; write_version stores it."""
    index = IndexedSearch.build(bundle.embeddings, seed=seed)
    info = index.info
    bundle.search_index = index
    bundle.manifest.search = Search(
        kind=info.kind,
        chosen_by=choice,
        min_rows=INDEX_MIN_ROWS,
        file=SEARCH_INDEX,
        lists=info.lists,
        nprobe=info.nprobe,
        seed=info.seed,
        faiss_version=info.faiss_version,
    )


def exact_search(choice: str) -> Search:
    """The manifest's record of a bundle searched exactly."""
    return Search(kind="exact", chosen_by=choice, min_rows=INDEX_MIN_ROWS)
