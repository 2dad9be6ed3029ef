"""Named pause points of the job for the fault suite: a process announces one and waits to be killed.

Off unless FRUITS_FAULT_PAUSE_AT names a point (tests/batch/test_faults.py sets it on a job it
then kills with SIGKILL from outside, as an operator or a scheduler would). The setting is
read once per process, the way models.storage.S3Settings is: the driver reads it at start-up
(batch.cli), a local-mode executor inherits it with the driver's environment.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where a job can be told to pause, in the order a run passes them. "wrote:<file>" follows the
# write of that file of the version; "rename:CURRENT" is publish's last step before the rename.
POINTS = (
    "listing",  # driver: the input listed, nothing featurized
    "featurize",  # executor: its first batch of photos featurized, the stage under way
    "featurized",  # driver: every photo featurized, the projection not fitted
    "wrote:features",  # executor: one features Parquet part written, the stage under way
    "wrote:scaler_mean.npy",  # driver: the version's first array written
    "wrote:embeddings.npy",  # driver: some of the version's arrays written, not all
    "wrote:catalog.json",  # driver: every array and the catalog written, no manifest yet
    "wrote:manifest.json",  # driver: the whole version written, CURRENT not moved
    "rename:CURRENT",  # driver: the new pointer in its temporary file, not renamed over CURRENT
    "retention",  # driver: published, one old version removed, the others not yet
)
PausePoint = Literal[POINTS]  # type: ignore[valid-type]
# A pause nobody ends exits the process (never resumes): an unkilled pause cannot pass for success.
EXIT_PAUSE_EXPIRED = 75


class FaultSettings(BaseSettings):
    """FRUITS_FAULT_* from the environment; all unset in production."""

    model_config = SettingsConfigDict(env_prefix="FRUITS_FAULT_", extra="ignore")

    pause_at: PausePoint | None = Field(None, description="the point where the process pauses")
    pause_dir: str | None = Field(
        None, description="folder where a paused process announces itself: a file <point>.<pid>"
    )
    pause_max_s: float = Field(300.0, gt=0, description="after this long unkilled, the process exits")

    @model_validator(mode="after")
    def _announced_somewhere(self) -> FaultSettings:
        if self.pause_at is not None and not self.pause_dir:
            raise ValueError("FRUITS_FAULT_PAUSE_AT needs FRUITS_FAULT_PAUSE_DIR")
        return self


@functools.cache
def fault_settings() -> FaultSettings:
    return FaultSettings()


def checkpoint(point: str) -> None:
    """Nothing, unless this process was told to pause at `point`: then announce it (the file
    appears whole, by rename) and wait to be killed."""
    settings = fault_settings()
    if settings.pause_at != point:
        return
    folder = Path(settings.pause_dir or ".")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{point.replace(':', '_')}.{os.getpid()}"
    tmp = folder / f".{name}"
    tmp.write_text(f"{os.getpid()}\n")
    tmp.rename(folder / name)
    deadline = time.monotonic() + settings.pause_max_s
    while time.monotonic() < deadline:
        time.sleep(0.2)
    os._exit(EXIT_PAUSE_EXPIRED)
