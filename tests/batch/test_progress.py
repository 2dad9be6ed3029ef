"""StageProgress: periodic log lines when stderr is a log or a pipe, one updating bar on a terminal;
driven by a stand-in SparkContext whose status tracker reports the tasks the test finishes."""

from __future__ import annotations

import io
import logging
import re
import time
from dataclasses import dataclass

import pytest
from rich.console import Console

from batch.progress import StageProgress
from tests.support import LogLines

TOTAL = 48
LINE = re.compile(
    r"^featurize +(\d+)/48 images +[0-9.]+%  (?:[0-9.]+|-) img/s  (?:ETA .+|done)  \(elapsed .+\)$"
)


@dataclass
class _Stage:
    numTasks: int  # noqa: N815 - the names of pyspark's SparkStageInfo
    numCompletedTasks: int  # noqa: N815


@dataclass
class _Job:
    stageIds: list[int]  # noqa: N815 - pyspark's SparkJobInfo


class _Tracker:
    """One job of one 4-task stage in whichever job group the progress set."""

    def __init__(self, sc: _SparkContext):
        self.sc = sc

    def getJobIdsForGroup(self, group):  # noqa: N802 - pyspark's names
        return [0] if group == self.sc.group else []

    def getJobInfo(self, job_id):  # noqa: N802
        return _Job(stageIds=[7])

    def getStageInfo(self, stage_id):  # noqa: N802
        return _Stage(numTasks=4, numCompletedTasks=self.sc.tasks_done)


class _SparkContext:
    def __init__(self):
        self.group: str | None = None
        self.tasks_done = 0
        self.properties: dict[str, str | None] = {}

    def setJobGroup(self, group, description):  # noqa: N802
        self.group = group

    def setLocalProperty(self, key, value):  # noqa: N802
        self.properties[key] = value

    def statusTracker(self):  # noqa: N802
        return _Tracker(self)


@pytest.fixture
def progress_lines():
    logger, handler = logging.getLogger("batch.progress"), LogLines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def run_stage(progress: StageProgress, sc: _SparkContext, seen) -> None:
    """Half the tasks, then all: `seen(done)` says when the progress has shown `done` photos."""
    with progress:
        sc.tasks_done = 2
        wait_for(lambda: seen(24))
        sc.tasks_done = 4


def test_a_log_or_a_pipe_gets_periodic_lines_and_no_bar(progress_lines):
    out = io.StringIO()
    console = Console(file=out)  # a StringIO is no terminal, as a log file or a pipe is not
    sc = _SparkContext()
    progress = StageProgress(sc, "featurize", TOTAL, interval_s=0.05, console=console)
    assert not progress.draws_bar

    run_stage(progress, sc, lambda done: any(f" {done}/48 images" in line for line in progress_lines))

    parsed = [LINE.match(line) for line in progress_lines]
    assert all(parsed), progress_lines
    done = [int(m.group(1)) for m in parsed]
    assert done[0] == 0 and 24 in done and done[-1] == TOTAL and done == sorted(done)
    assert progress_lines[-1].split("  ")[-2] == "done"
    assert len(progress_lines) >= 3  # the start, at least one while it runs, the closing line
    assert out.getvalue() == ""  # nothing drawn
    assert sc.properties == {"spark.jobGroup.id": None, "spark.job.description": None}


def test_a_terminal_gets_one_updating_bar_and_only_the_closing_line(progress_lines):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, force_interactive=True, width=120)
    sc = _SparkContext()
    progress = StageProgress(sc, "featurize", TOTAL, interval_s=5.0, console=console)
    assert progress.draws_bar and progress.interval_s <= 1.0  # a bar follows Spark every second

    run_stage(progress, sc, lambda done: f"{done}/48 images" in out.getvalue())

    drawn = out.getvalue()
    assert "featurize" in drawn and "━" in drawn  # rich's bar
    assert "24/48 images" in drawn and " 50.0%" in drawn
    assert "\x1b[" in drawn  # redrawn in place (cursor control), not one line per update
    # No periodic lines: the bar stood in for them; the stage's time is still logged once.
    assert len(progress_lines) == 1 and LINE.match(progress_lines[0]), progress_lines
    assert progress_lines[0].startswith("featurize 48/48 images")


def test_a_failed_stage_removes_its_bar_and_logs_no_closing_line(progress_lines):
    console = Console(file=io.StringIO(), force_terminal=True, force_interactive=True)
    sc = _SparkContext()
    with pytest.raises(RuntimeError), StageProgress(sc, "featurize", TOTAL, console=console):
        raise RuntimeError("executor lost")
    assert progress_lines == []
    assert sc.properties["spark.jobGroup.id"] is None


def test_log_lines_for_the_bars_terminal_are_printed_above_the_bar():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, force_interactive=True, width=120)
    root, handler = logging.getLogger(), logging.StreamHandler(out)  # as the job's basicConfig
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    sc = _SparkContext()
    try:
        with StageProgress(sc, "featurize", TOTAL, console=console):
            wait_for(lambda: "0/48 images" in out.getvalue())
            logging.getLogger("batch.stages").info("stage featurize done")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert handler.stream is out  # given back
    drawn = out.getvalue()
    before = drawn[: drawn.index("stage featurize done")]
    assert before.endswith(("\n", "\x1b[2K")), repr(before[-80:])  # on its own line, not after the bar
