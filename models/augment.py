"""Seeded extra views of a training photo (rotation, scale, shift, light, blur, noise) for the reference set.

The job featurizes `views` of these per training photo as extra labelled rows, so the
nearest-neighbour search also finds a fruit photographed turned, under other light or a
little out of focus. Each view is a pure function of (photo bytes' hash, view index, seed):
the same photo gets the same views on any executor, in any partition, on every run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

WHITE = (255, 255, 255)


@dataclass(frozen=True)
class AugmentSpec:
    """How many views per photo, the seed, and the ranges each view draws from."""

    views: int = 0
    seed: int = 0
    rotation_deg: float = 15.0  # uniform in +-this; the preprocessing turns elongated fruit upright
    scale: tuple[float, float] = (0.7, 1.0)  # the fruit's share of the frame
    light: tuple[float, float] = (0.6, 1.4)  # brightness and contrast factors
    blur_px: float = 2.0  # Gaussian radius at 100 px, up to this
    blur_share: float = 0.5  # share of views that are blurred
    noise_sigma: float = 14.0  # sensor noise, up to this
    noise_share: float = 0.3  # share of views that get sensor noise

    def __post_init__(self):
        if not 0 <= self.views <= 32:
            raise ValueError("--augment must be between 0 and 32 views per photo")


def view_rng(spec: AugmentSpec, photo: bytes, view: int) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256(photo).digest()[:8], "little")
    return np.random.default_rng([spec.seed, key, view])


def augmented_view(img: Image.Image, spec: AugmentSpec, rng: np.random.Generator) -> Image.Image:
    """One view of an upright RGB photo: turned, shrunk and moved on white, relit, maybe blurred."""
    out = img.rotate(
        float(rng.uniform(-spec.rotation_deg, spec.rotation_deg)),
        Image.Resampling.BILINEAR,
        expand=True,
        fillcolor=WHITE,
    )
    side = max(out.size)
    share = float(rng.uniform(*spec.scale))
    canvas = Image.new("RGB", (round(side / share),) * 2, WHITE)
    free = canvas.width - side
    canvas.paste(out, (int(rng.integers(0, free + 1)), int(rng.integers(0, free + 1))))
    out = ImageEnhance.Brightness(canvas).enhance(float(rng.uniform(*spec.light)))
    out = ImageEnhance.Contrast(out).enhance(float(rng.uniform(*spec.light)))
    if rng.random() < spec.blur_share:
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, spec.blur_px)) * out.width / 100))
    if rng.random() < spec.noise_share:
        arr = np.asarray(out, dtype=np.float32)
        arr = arr + rng.normal(0.0, rng.uniform(2.0, spec.noise_sigma), size=arr.shape).astype(np.float32)
        out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return out


def augmented_views(img: Image.Image, photo: bytes, spec: AugmentSpec) -> list[Image.Image]:
    """The spec's views of a photo (empty when augmentation is off)."""
    return [augmented_view(img, spec, view_rng(spec, photo, v)) for v in range(1, spec.views + 1)]
