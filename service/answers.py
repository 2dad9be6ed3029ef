"""The request ids of the answers given lately: feedback must correct an answer this service gave."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RecentAnswers:
    """Request ids of classify answers, each remembered for `ttl_s`, at most `max_ids` of them
    (the oldest forgotten first). Used from the event loop only, so it needs no lock."""

    def __init__(self, max_ids: int, ttl_s: float, clock: Callable[[], float] = time.monotonic):
        self.max_ids, self.ttl_s, self._clock = max_ids, ttl_s, clock
        self._given: OrderedDict[str, float] = OrderedDict()  # id -> when, oldest first

    def add(self, request_id: str) -> None:
        now = self._clock()
        self._given[request_id] = now
        self._given.move_to_end(request_id)
        self._forget(now)

    def __contains__(self, request_id: str) -> bool:
        self._forget(self._clock())
        return request_id in self._given

    def __len__(self) -> int:
        return len(self._given)

    def _forget(self, now: float) -> None:
        given = self._given
        while len(given) > self.max_ids:
            given.popitem(last=False)
        while given and now - next(iter(given.values())) > self.ttl_s:
            given.popitem(last=False)
