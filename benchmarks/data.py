"""Where the benchmarks find Fruits-360: `--data`, else FRUITS360_DIR, else ../shared/data/fruits360.

The tests use the small committed set in tests/data; the benchmarks need the real dataset
(125 classes, Training/ and Test/ with one folder per class)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from service.launch import REPO_ROOT

DEFAULT_DATA = Path(os.environ.get("FRUITS360_DIR", REPO_ROOT.parent / "shared" / "data" / "fruits360"))


def require_fruits360(data: Path, *splits: str) -> Path:
    """`data` if it holds every split as a folder of class folders; otherwise exit saying what
    to point the benchmark at."""
    missing = [s for s in splits if not (data / s).is_dir() or not any((data / s).iterdir())]
    if missing:
        sys.exit(
            f"{data}: no {' or '.join(missing)} folder of photos. Point the benchmark at a Fruits-360 "
            "folder holding Training/<class>/*.jpg and Test/<class>/*.jpg: --data PATH, or "
            "FRUITS360_DIR=PATH, or `make bench SHARED=PATH`. On our machines it is "
            "../shared/data/fruits360; elsewhere download Fruits-360 (CC BY-SA 4.0, "
            "https://github.com/fruits-360)."
        )
    return data
