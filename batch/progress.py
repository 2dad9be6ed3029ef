"""Console progress of a long Spark stage (images done / total, images/s, ETA), and each stage's time.

On a terminal the stage is one updating bar (rich); in a log or a pipe it is a line every few
seconds. Rich's TTY_INTERACTIVE=0 keeps the lines on a terminal, TTY_COMPATIBLE=1 forces the bar."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from uuid import uuid4

from pyspark import SparkContext
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from models.manifest import Stage

log = logging.getLogger("batch.progress")
stage_log = logging.getLogger("batch.stages")

DEFAULT_INTERVAL_S = 5.0
BAR_INTERVAL_S = 1.0  # a bar is redrawn in place, so it can follow Spark more closely than a log
T = TypeVar("T")


def format_progress(stage: str, done: int, total: int, elapsed_s: float) -> str:
    """One console line: 'featurize  1536/6000 images  25.6%  93.4 img/s  ETA 48 s'."""
    return f"{stage:<9} {_counts(done, total, elapsed_s)}"


def _counts(done: int, total: int, elapsed_s: float) -> str:
    """The line less the stage's name: the text beside the bar."""
    share = done / total if total else 1.0
    rate = done / elapsed_s if done and elapsed_s > 0 else None
    if done >= total:
        eta = "done"
    elif rate:
        eta = f"ETA {_duration((total - done) / rate)}"
    else:
        eta = "ETA ?"
    rate_text = f"{rate:.1f} img/s" if rate else "- img/s"
    return (
        f"{done:>{len(str(total))}}/{total} images  {share:6.1%}  "
        f"{rate_text}  {eta}  (elapsed {_duration(elapsed_s)})"
    )


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class StageProgress:
    """Context manager around one stage's Spark actions.

    Its jobs run in their own job group; a thread polls the status tracker for the group's
    last stage (the one doing the per-photo work) and turns finished tasks into photos, each
    task being one partition of about total / tasks photos. `console` (default: stderr) decides
    between a bar and log lines; the closing line, with the stage's time, is logged either way.
    """

    def __init__(
        self,
        sc: SparkContext,
        stage: str,
        total_images: int,
        interval_s: float = DEFAULT_INTERVAL_S,
        console: Console | None = None,
    ):
        self.sc = sc
        self.stage = stage
        self.total = total_images
        self.console = console or Console(stderr=True)
        self.draws_bar = self.console.is_interactive
        self.interval_s = min(interval_s, BAR_INTERVAL_S) if self.draws_bar else interval_s
        self.group = f"{stage}-{uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=f"progress-{stage}", daemon=True)
        self._start = 0.0
        self._done = 0
        self._bar: tuple[Progress, TaskID] | None = None  # while a bar is shown
        self._moved: list[tuple[logging.StreamHandler, object]] = []

    def images_done(self) -> int:
        """Photos in finished tasks of the group's widest stage, never less than last time.

        The per-photo stage is the one with a task per partition of photos; the other stages
        of the group (AQE's shuffle of the listing, the collect) have fewer tasks.
        """
        tracker = self.sc.statusTracker()
        widest = None
        for job_id in tracker.getJobIdsForGroup(self.group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job is not None else []:
                info = tracker.getStageInfo(stage_id)
                if info is not None and (widest is None or info.numTasks >= widest.numTasks):
                    widest = info
        if widest is not None and widest.numTasks > 0:
            done = round(self.total * widest.numCompletedTasks / widest.numTasks)
            self._done = max(self._done, min(self.total, done))
        return self._done

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                done = self.images_done()
            except Exception as exc:  # noqa: BLE001 - progress must never fail the job
                log.debug("progress poll failed: %s", exc)
                continue
            elapsed = time.perf_counter() - self._start
            if self._bar is not None:
                progress, task = self._bar
                progress.update(task, completed=done, counts=_counts(done, self.total, elapsed))
            elif done < self.total:  # the closing line, with the stage's full time, comes from __exit__
                log.info("%s", format_progress(self.stage, done, self.total, elapsed))

    def __enter__(self) -> StageProgress:
        self.sc.setJobGroup(self.group, f"{self.stage}: {self.total} images")
        self._start = time.perf_counter()
        if self.draws_bar:
            progress = Progress(
                TextColumn("{task.description:<9}"),
                BarColumn(bar_width=30),
                TextColumn("{task.fields[counts]}", markup=False),
                console=self.console,
                refresh_per_second=2,
                transient=True,  # the closing log line takes its place
            )
            task = progress.add_task(self.stage, total=self.total, counts=_counts(0, self.total, 0.0))
            terminal = self.console.file
            progress.start()
            self._bar = (progress, task)
            # Log lines meant for the bar's terminal go through rich's proxy (sys.stderr while the
            # bar runs), above the bar, instead of being written over it.
            if sys.stderr is not terminal:
                self._moved = [
                    (h, h.setStream(sys.stderr))
                    for h in logging.getLogger().handlers
                    if isinstance(h, logging.StreamHandler) and h.stream is terminal
                ]
        else:
            log.info("%s", format_progress(self.stage, 0, self.total, 0.0))
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 10)
        for handler, stream in self._moved:
            handler.setStream(stream)  # type: ignore[arg-type]
        self._moved = []
        if self._bar is not None:
            self._bar[0].stop()
            self._bar = None
        # Later jobs of this thread must not be counted in this group.
        self.sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        self.sc.setLocalProperty("spark.job.description", None)  # type: ignore[arg-type]
        if exc_type is None:
            log.info(
                "%s", format_progress(self.stage, self.total, self.total, time.perf_counter() - self._start)
            )


class StageClock:
    """Wall time and images/s of each stage, for the manifest and the closing summary."""

    def __init__(self) -> None:
        self.stages: dict[str, Stage] = {}

    def run(
        self, name: str, images: int | Callable[[T], int], fn: Callable[[], T], *, rate: bool = True
    ) -> T:
        """Time `fn()`; `images` is a count, or a function of the result that counts them;
        `rate=False` for a stage whose time does not depend on the images (no images/s)."""
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        count = images(result) if callable(images) else images
        per_s = round(count / seconds, 2) if rate and seconds > 0 else None
        self.stages[name] = Stage(seconds=round(seconds, 3), images=count, images_per_s=per_s)
        stage_log.info("stage %-9s %7.1f s  %6d images", name, seconds, count)
        return result
