"""The request path of a photo: decode and preprocess in the thread pool, the model call
micro-batched on one thread, then projection and classification batched on another, with the
classifier's own methods."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from models.classifier import Classification, Classifier
from models.preprocess import Photo
from service.batching import MicroBatcher, Overloaded
from service.settings import Settings


@dataclass(frozen=True)
class _Scoring:
    """A photo's features on their way to projection and classification."""

    features: np.ndarray
    top_k: int | None  # None: the features and embedding only (/v1/embed)


@dataclass(frozen=True)
class _Answer:
    features: np.ndarray
    embedding: np.ndarray
    classification: Classification | None


class InferencePipeline:
    """One object runs every photo a route receives; `start` and `stop` bracket the app's life."""

    def __init__(self, settings: Settings, on_batch: Callable[[int, float], None] | None = None):
        # One model call at a time: Keras models are not safe to call from many threads. A
        # reload that reuses the model warms it up under this lock too.
        self.model_lock = threading.Lock()
        self._batcher = MicroBatcher(
            self._featurize_batch,
            max_batch=settings.max_batch_size,
            max_wait_s=settings.max_batch_wait_ms / 1000,
            max_queue=settings.max_queue_depth,
            on_batch=on_batch,
            coming=lambda: self._decoding,
        )
        # A model call's photos are scored together on a thread of their own, while the next
        # call runs: one product with the reference rows for all, off the event loop. Every
        # request holds a connection, so the queue (max_connections) never refuses one.
        self._scorer = MicroBatcher(
            self._score_batch,
            max_batch=settings.max_batch_size,
            max_wait_s=0,
            max_queue=settings.max_connections,
            thread_name="scoring",
        )
        # Decoding runs in the thread pool (40 threads): without a bound, 40 uploads of a
        # 64 Mpx canvas decode at once, ~0.5 GB each. Photos beyond the limit wait their turn;
        # beyond max_queue_depth waiting, they are refused (503) rather than queued unbounded.
        self._decodes = asyncio.Semaphore(settings.max_concurrent_decodes)
        self._max_decode_waiting = settings.max_queue_depth
        self._decode_waiting = 0
        self._decoding = 0  # photos between arrival and the batcher: waiting, decoding

    @property
    def queue_depth(self) -> int:
        return self._batcher.depth

    async def start(self) -> None:
        await self._batcher.start()
        await self._scorer.start()

    async def stop(self) -> None:
        await self._batcher.stop()
        await self._scorer.stop()

    def _featurize_batch(self, classifier: Classifier, inputs: list[Photo]) -> list[np.ndarray]:
        with self.model_lock:
            return list(classifier.featurize(inputs))

    @staticmethod
    def _score_batch(classifier: Classifier, photos: list[_Scoring]) -> list[_Answer]:
        features = np.stack([p.features for p in photos])
        embeddings = classifier.project(features)
        results: list[Classification | None] = [None] * len(photos)
        for k in {p.top_k for p in photos} - {None}:
            rows = [i for i, p in enumerate(photos) if p.top_k == k]
            for i, result in zip(rows, classifier.classify(embeddings[rows], k), strict=True):
                results[i] = result
        return [_Answer(f, z, r) for f, z, r in zip(features, embeddings, results, strict=True)]

    async def _answer(self, classifier: Classifier, photo: bytes, top_k: int | None) -> _Answer:
        """Raises ImageError (bad photo) or service.batching.Overloaded (queue full)."""
        inputs = await self._decode(classifier, photo)
        features = await self._batcher.submit(inputs, key=classifier)
        return await self._scorer.submit(_Scoring(features, top_k), key=classifier)

    async def _decode(self, classifier: Classifier, photo: bytes) -> Photo:
        if self._decodes.locked() and self._decode_waiting >= self._max_decode_waiting:
            raise Overloaded(f"{self._decode_waiting} photos are already waiting to be decoded")
        self._decoding += 1
        try:
            self._decode_waiting += 1
            try:
                await self._decodes.acquire()
            finally:
                self._decode_waiting -= 1
            try:
                return await run_in_threadpool(classifier.preprocess, photo)
            finally:
                self._decodes.release()
        finally:
            self._decoding -= 1

    async def classify(self, classifier: Classifier, photo: bytes, top_k: int) -> Classification:
        answer = await self._answer(classifier, photo, top_k)
        assert answer.classification is not None
        return answer.classification

    async def embed(self, classifier: Classifier, photo: bytes) -> tuple[np.ndarray, np.ndarray]:
        """The photo's features and its PCA embedding."""
        answer = await self._answer(classifier, photo, None)
        return answer.features, answer.embedding
