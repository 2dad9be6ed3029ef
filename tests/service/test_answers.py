"""The record of recent answers that feedback is checked against: bounded, and forgetting with
time (a fake clock, no waiting)."""

from __future__ import annotations

import pytest

from service.answers import RecentAnswers
from service.errors import ApiError
from service.feedback import require_answered
from service.settings import Settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_past_the_feedback_window_gets_404():
    clock = FakeClock()
    answers = RecentAnswers(max_ids=10, ttl_s=60, clock=clock)
    answers.add("a1")
    clock.now += 60  # at the window's end: still accepted
    require_answered(answers, "a1")
    clock.now += 0.5
    with pytest.raises(ApiError) as refused:
        require_answered(answers, "a1")
    assert (refused.value.status, refused.value.code) == (404, "unknown_request")
    assert len(answers) == 0  # forgotten, not just refused


def test_the_record_never_holds_more_than_its_bound_and_forgets_the_oldest_first():
    clock = FakeClock()
    answers = RecentAnswers(max_ids=3, ttl_s=3600, clock=clock)
    sizes = []
    for i in range(10):
        answers.add(f"id{i}")
        clock.now += 1
        sizes.append(len(answers))
    assert max(sizes) == 3
    assert [f"id{i}" in answers for i in range(10)] == [False] * 7 + [True] * 3
    # Answered again, an old id becomes the newest: the next one pushes out another.
    answers.add("id7")
    answers.add("id10")
    assert ("id8" in answers, "id7" in answers, "id10" in answers) == (False, True, True)


def test_the_feedback_window_defaults_to_a_day_and_100k_answers():
    settings = Settings()
    assert (settings.feedback_window_s, settings.feedback_max_answers) == (86400, 100_000)
