"""The team's real-photo set: fruit in real scenes from public repositories (benchmarks/real-photos.tsv).

Each row names a photo's source repository, commit, path, SHA-256 and licence, the catalog
fruit it shows and its split: `dev` (tune on it) or `holdout` (a quarter, by source SHA-256;
report it, never tune on it). Most licences are unknown, so the photos are not committed:
`python -m benchmarks.real_photos --dest DIR` rebuilds the folder (DIR/<fruit>/<name>.jpg)
from clones of the sources, or from bare mirrors already on disk (--mirrors).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

MANIFEST = Path(__file__).with_name("real-photos.tsv")
MAX_SIDE = 1024  # the copies are JPEGs (quality 92) at most this long, as the manifest's hashes


@dataclass(frozen=True)
class RealPhoto:
    file: str  # relative to the folder: <fruit>/<name>.jpg
    fruit: str  # the catalog's fruit id
    split: str  # dev or holdout
    source_repo: str
    commit: str
    source_path: str
    source_sha256: str
    file_sha256: str
    license: str


def manifest(path: Path = MANIFEST) -> list[RealPhoto]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [RealPhoto(**row) for row in csv.DictReader(fh, delimiter="\t")]


HOW_TO_GET = (
    "real photos: none given. Rebuild the set with `python -m benchmarks.real_photos --dest DIR` "
    "(clones the public sources in benchmarks/real-photos.tsv; needs internet), then pass --real DIR"
)


def available(folder: Path, rows: list[RealPhoto]) -> tuple[list[tuple[RealPhoto, Path]], int]:
    """The manifest's photos present in `folder`, and how many are missing."""
    found = [(r, folder / r.file) for r in rows if (folder / r.file).is_file()]
    return found, len(rows) - len(found)


def converted(source: bytes) -> bytes:
    """The copy kept of a source photo: upright RGB (transparency on white), at most MAX_SIDE."""
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(source)))
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        canvas = Image.new("RGB", img.size, (255, 255, 255))
        canvas.paste(img, mask=img.getchannel("A"))
        img = canvas
    img = img.convert("RGB")
    if max(img.size) > MAX_SIDE:
        k = MAX_SIDE / max(img.size)
        img = img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))), Image.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    return out.getvalue()


def _git_dir(repo: str, commit: str, mirrors: Path | None, clones: Path) -> Path:
    if mirrors is not None:
        mirror = mirrors / repo.replace("/", "+")
        for git in (mirror, mirror / "repo", mirror / ".git"):
            if (git / "HEAD").is_file():
                return git
    target = clones / repo.replace("/", "+")
    if not target.exists():
        url = f"https://github.com/{repo}.git"
        subprocess.run(["git", "clone", "--bare", "--filter=blob:none", url, str(target)], check=True)
    return target


def gather(dest: Path, mirrors: Path | None = None) -> tuple[int, int]:
    """Write every manifest photo into dest; returns (written, refused: source hash differs)."""
    written = refused = 0
    with tempfile.TemporaryDirectory(prefix="real-photos-") as clones:
        for row in manifest():
            git = _git_dir(row.source_repo, row.commit, mirrors, Path(clones))
            source = subprocess.run(
                ["git", f"--git-dir={git}", "show", f"{row.commit}:{row.source_path}"],
                check=True,
                capture_output=True,
            ).stdout
            if hashlib.sha256(source).hexdigest() != row.source_sha256:
                print(f"refused {row.file}: the source's SHA-256 differs", file=sys.stderr)
                refused += 1
                continue
            (dest / row.file).parent.mkdir(parents=True, exist_ok=True)
            (dest / row.file).write_bytes(converted(source))
            written += 1
    return written, refused


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real_photos", description=__doc__)
    p.add_argument("--dest", type=Path, required=True, help="folder to write <fruit>/<name>.jpg into")
    p.add_argument(
        "--mirrors", type=Path, help="folder of git mirrors named owner+name (those found are not cloned)"
    )
    args = p.parse_args(argv)
    written, refused = gather(args.dest, args.mirrors)
    print(f"wrote {written} photos to {args.dest}; {refused} refused")
    return 0 if refused == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
