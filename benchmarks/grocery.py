"""Lays out the grocery-store photos (../shared/data/grocery-store) as the job's --real-photos
input: one folder per catalog fruit (MAPPING.tsv), links to the photos of one split.

    python -m benchmarks.grocery --dest DIR [--split train]

Only `train` and `val` are offered: the set's own test split is a holdout nobody uses."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "grocery-store"


def mapping(root: Path) -> dict[str, str]:
    """grocery class (a leaf folder's name) -> catalog fruit; classes mapped to none are left out."""
    rows = [line.rstrip("\n").split("\t") for line in (root / "MAPPING.tsv").read_text().splitlines()[1:]]
    return {cls: fruit for cls, fruit in rows if fruit not in ("none", "-", "")}


def lay_out(root: Path, dest: Path, split: str) -> dict[str, int]:
    """Link every mapped photo of `split` into dest/<fruit>/; returns photos per fruit."""
    fruit_of = mapping(root)
    counts: dict[str, int] = {}
    for photo in sorted((root / split).rglob("*.jpg")):
        fruit = fruit_of.get(photo.parent.name)
        if fruit is None:
            continue
        folder = dest / fruit
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / f"{photo.parent.name}_{photo.name}"
        if not link.exists():
            os.symlink(photo.resolve(), link)
        counts[fruit] = counts.get(fruit, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT, help="the grocery-store folder")
    p.add_argument("--dest", type=Path, required=True)
    p.add_argument("--split", choices=("train", "val"), default="train")
    args = p.parse_args(argv)
    if not (args.data / "MAPPING.tsv").is_file():
        p.exit(2, f"{args.data} has no MAPPING.tsv: point --data at the grocery-store folder\n")
    counts = lay_out(args.data, args.dest, args.split)
    print(f"linked {sum(counts.values())} {args.split} photos of {len(counts)} fruits under {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
