"""Command-line options several benchmarks share."""

from __future__ import annotations

import argparse

from models.featurizer import PRECISIONS


def add_precisions(parser: argparse.ArgumentParser, how: str) -> None:
    """`--precisions fp32 bf16`: measured in one run, the first is the baseline of the ratios."""
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=["fp32", "bf16"], help=how)
