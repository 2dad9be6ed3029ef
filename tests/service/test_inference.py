"""InferencePipeline with a stand-in classifier: one model call and one scoring call per batch."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from models.classifier import Classification
from service.inference import InferencePipeline
from service.settings import Settings


class StandInClassifier:
    """A real classifier's four steps on tiny arrays: a photo's input is its bytes as numbers,
    its features those plus one, its embedding twice the features; an answer's label is the
    embedding's first value and its scores name the top_k asked. Records calls and threads."""

    def __init__(self) -> None:
        self.model_calls: list[int] = []
        self.classify_calls: list[tuple[int, int]] = []
        self.threads: dict[str, str] = {}

    def preprocess(self, photo: bytes) -> np.ndarray:
        return np.frombuffer(photo, dtype=np.uint8).astype(np.float32)

    def featurize(self, inputs: list[np.ndarray]) -> np.ndarray:  # a list, as Classifier's
        self.model_calls.append(len(inputs))
        self.threads["featurize"] = threading.current_thread().name
        return np.stack(inputs) + 1

    def project(self, features: np.ndarray) -> np.ndarray:
        return features * 2

    def classify(self, embeddings: np.ndarray, top_k: int) -> list[Classification]:
        self.classify_calls.append((len(embeddings), top_k))
        self.threads["classify"] = threading.current_thread().name
        return [Classification(label=str(int(z[0])), known=True, scores=(float(top_k),)) for z in embeddings]


def test_concurrent_photos_share_one_model_call_and_one_scoring_call_per_top_k():
    classifier = StandInClassifier()
    # A long wait: the batch still runs as soon as no photo is decoding, so all 8 share it.
    pipeline = InferencePipeline(Settings(max_batch_wait_ms=1000, max_batch_size=32))
    asks = [3, 5, 3, None, 5, 3, None, 3]  # top_k per photo; None: an embed request

    async def scenario():
        await pipeline.start()
        try:
            return await asyncio.gather(
                *(
                    pipeline.embed(classifier, bytes([i, 7]))
                    if k is None
                    else pipeline.classify(classifier, bytes([i, 7]), k)
                    for i, k in enumerate(asks)
                )
            )
        finally:
            await pipeline.stop()

    answers = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert classifier.model_calls == [8]
    assert sorted(classifier.classify_calls) == [(2, 5), (4, 3)]
    for i, (k, answer) in enumerate(zip(asks, answers, strict=True)):
        if k is None:
            features, embedding = answer
            np.testing.assert_array_equal(features, [i + 1, 8])
            np.testing.assert_array_equal(embedding, [2 * (i + 1), 16])
        else:
            assert answer.label == str(2 * (i + 1)) and answer.scores == (float(k),)
    # The model's thread is free for the next call while a batch is scored; the loop is free too.
    assert classifier.threads["featurize"].startswith("model")
    assert classifier.threads["classify"].startswith("scoring")
