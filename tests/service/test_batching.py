"""MicroBatcher on its own (real asyncio, real worker thread) and behind the live service."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

from service.batching import MicroBatcher, Overloaded
from tests.support import fixture_photos, photo_form, post_photo


class RecordingModel:
    """A real batch function: squares its inputs, records each call's size and thread."""

    def __init__(self, delay_s: float = 0.0, gate: threading.Event | None = None):
        self.calls: list[list[int]] = []
        self.threads: set[str] = set()
        self.delay_s, self.gate = delay_s, gate

    def __call__(self, key, items: list[int]) -> list[int]:
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay_s)
        self.calls.append(list(items))
        self.threads.add(threading.current_thread().name)
        if any(i < 0 for i in items):
            raise ValueError("negative input")
        return [i * i for i in items]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_concurrent_items_share_one_call_off_the_event_loop():
    model = RecordingModel()

    async def scenario():
        batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.05, max_queue=100)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        finally:
            await batcher.stop()

    results = run(scenario())
    assert results == [i * i for i in range(20)]
    assert [len(c) for c in model.calls] == [8, 8, 4]
    assert sorted(sum(model.calls, [])) == list(range(20))
    assert len(model.threads) == 1 and next(iter(model.threads)).startswith("model")
    assert threading.main_thread().name not in model.threads


def test_a_lone_item_waits_at_most_max_wait():
    model = RecordingModel()

    async def scenario():
        batcher = MicroBatcher(model, max_batch=32, max_wait_s=0.02, max_queue=10)
        await batcher.start()
        try:
            started = time.perf_counter()
            result = await batcher.submit(3)
            return result, time.perf_counter() - started
        finally:
            await batcher.stop()

    result, took = run(scenario())
    assert result == 9 and model.calls == [[3]]
    assert took < 1.0  # bounded by max_wait (20 ms), not by the batch filling up


def test_a_lone_item_does_not_wait_for_company_that_is_not_coming():
    """With nothing queued and nothing on its way, the batch runs at once: max_wait is a minute,
    and the answer comes back within run()'s 30 s guard."""
    model = RecordingModel()

    async def scenario():
        batcher = MicroBatcher(model, max_batch=32, max_wait_s=60, max_queue=10, coming=lambda: 0)
        await batcher.start()
        try:
            return await batcher.submit(3)
        finally:
            await batcher.stop()

    assert run(scenario()) == 9 and model.calls == [[3]]


def test_a_batch_waits_for_an_item_that_is_on_its_way():
    model = RecordingModel()
    on_the_way = [1]

    async def scenario():
        batcher = MicroBatcher(model, max_batch=32, max_wait_s=60, max_queue=10, coming=lambda: on_the_way[0])
        await batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(2))
            for _ in range(5):  # the worker takes item 2 and waits: one more is coming
                await asyncio.sleep(0)
            assert model.calls == []
            on_the_way[0] = 0
            return await asyncio.gather(first, batcher.submit(3))
        finally:
            await batcher.stop()

    assert run(scenario()) == [4, 9]
    assert model.calls == [[2, 3]]


def test_full_queue_refuses_instead_of_growing():
    gate = threading.Event()
    model = RecordingModel(gate=gate)

    async def scenario():
        batcher = MicroBatcher(model, max_batch=1, max_wait_s=0, max_queue=3)
        await batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(0))
            await asyncio.sleep(0.05)  # the worker took item 0 and is blocked in the model
            waiting = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
            await asyncio.sleep(0)
            assert batcher.depth == 3
            with pytest.raises(Overloaded):
                await batcher.submit(4)
            gate.set()
            return await asyncio.gather(first, *waiting)
        finally:
            gate.set()
            await batcher.stop()

    assert run(scenario()) == [0, 1, 4, 9]


def test_a_failing_batch_fails_its_requests_only():
    model = RecordingModel()

    async def scenario():
        batcher = MicroBatcher(model, max_batch=4, max_wait_s=0.05, max_queue=10)
        await batcher.start()
        try:
            bad = await asyncio.gather(batcher.submit(-1), batcher.submit(2), return_exceptions=True)
            good = await batcher.submit(5)
            return bad, good
        finally:
            await batcher.stop()

    bad, good = run(scenario())
    assert all(isinstance(r, ValueError) for r in bad)
    assert good == 25


def test_items_for_different_models_never_share_a_batch():
    model = RecordingModel()
    old, new = object(), object()

    async def scenario():
        batcher = MicroBatcher(model, max_batch=16, max_wait_s=0.05, max_queue=100)
        await batcher.start()
        try:
            keyed = [(old if i % 2 else new) for i in range(10)]
            await asyncio.gather(*(batcher.submit(i, key=k) for i, k in enumerate(keyed)))
        finally:
            await batcher.stop()

    run(scenario())
    for call in model.calls:
        assert len({i % 2 for i in call}) == 1


def _post_many(url: str, photo: bytes, n: int, path: str = "/v1/classify") -> list[httpx.Response]:
    async def go():
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(client.post(f"{url}{path}", files=photo_form(photo)) for _ in range(n))
            )

    return asyncio.run(go())


def _batch_histogram(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        if line.startswith(("fruit_model_batch_size_count", "fruit_model_batch_size_sum")):
            name, value = line.split()
            values[name] = float(value)
    return values["fruit_model_batch_size_count"], values["fruit_model_batch_size_sum"]


def test_concurrent_http_requests_are_batched_and_embed_stays_exact(service_url):
    photo = fixture_photos("Test", "Cherry 1")[0].read_bytes()
    alone = post_photo(service_url, photo, path="/v1/embed").json()
    calls_before, photos_before = _batch_histogram(service_url)
    responses = _post_many(service_url, photo, 24, path="/v1/embed")
    calls_after, photos_after = _batch_histogram(service_url)
    assert all(r.status_code == 200 for r in responses)
    assert photos_after - photos_before == 24
    assert calls_after - calls_before < 24  # some requests shared a model call
    reference = np.asarray(alone["features"])
    for r in responses:
        got = np.asarray(r.json()["features"])
        assert np.linalg.norm(got - reference) <= 1e-4 * np.linalg.norm(reference)


def test_overloaded_service_answers_503_with_retry_after(tight_service):
    url, _, _ = tight_service
    photo = fixture_photos("Test", "Kiwi")[0].read_bytes()
    responses = _post_many(url, photo, 40)
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    assert 503 in codes and 200 in codes
    for r in responses:
        if r.status_code == 503:
            assert r.headers["Retry-After"] == "1"
            assert r.json()["error"]["code"] == "overloaded"
    # and it recovers once the burst is over
    ok = post_photo(url, photo)
    assert ok.status_code == 200
