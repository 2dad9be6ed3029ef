"""Phone-photo conditions made from studio photos: seeded, deterministic variants for `make robustness`.

Each condition is a function (photo, rng, backdrop) -> (image, jpeg options). The photo is a
Fruits-360 Test photo (one fruit filling a 100 px frame on white); the variant is what a phone
would send of the same fruit: smaller and anywhere in the frame, on a coloured or textured
surface, under other light, blurred, noisy, rotated, shadowed, or as a big EXIF-rotated JPEG;
held in a hand, seen at an angle, cut by the frame, or beside a second, smaller fruit.
This module is the benchmark's own and shares no code with the job's augmentation, so the
benchmark does not grade the training views with themselves.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter
from scipy import ndimage

SCENE_SIZE = (800, 600)  # a phone photo after the app's recommended resize


@dataclass(frozen=True)
class Variant:
    image: Image.Image
    jpeg_quality: int = 92
    exif_orientation: int | None = None

    def encode(self) -> bytes:
        img = self.image
        kw: dict = {"quality": self.jpeg_quality}
        if self.exif_orientation:
            exif = Image.Exif()
            exif[0x0112] = self.exif_orientation
            stored = {
                6: Image.Transpose.ROTATE_90,
                8: Image.Transpose.ROTATE_270,
                3: Image.Transpose.ROTATE_180,
            }
            img = img.transpose(stored[self.exif_orientation])
            kw["exif"] = exif
        buf = io.BytesIO()
        img.save(buf, "JPEG", **kw)
        return buf.getvalue()


def fruit_alpha(photo: Image.Image) -> Image.Image:
    """The fruit's mask in a Fruits-360 photo (everything not near-white), as an "L" image."""
    rgb = np.asarray(photo, dtype=np.float32)
    away = (255.0 - rgb).max(-1)
    solid = ndimage.binary_fill_holes(ndimage.binary_opening(away > 18, iterations=1))
    solid = ndimage.binary_erosion(solid, iterations=1)  # no rim of the studio's white
    alpha = ndimage.gaussian_filter(solid.astype(np.float32), 0.8)
    return Image.fromarray(np.round(np.clip(alpha, 0, 1) * 255).astype(np.uint8), "L")


def _place(photo: Image.Image, backdrop: Image.Image, rng: np.random.Generator, lo=0.25, hi=0.60):
    """Paste the cut-out fruit at lo..hi of the frame's width, anywhere inside the frame."""
    w, h = backdrop.size
    side = int(rng.uniform(lo, hi) * w)
    side = min(side, h - 2)
    x = int(rng.integers(0, w - side + 1))
    y = int(rng.integers(0, h - side + 1))
    out = backdrop.copy()
    _paste(out, photo, side, (x, y))
    return out, (x, y, side)


def _paste(page: Image.Image, photo: Image.Image, side: int, xy: tuple[int, int]) -> None:
    """Paste the photo's cut-out fruit onto page (in place), resized to side x side, at xy."""
    fruit = photo.resize((side, side), Image.Resampling.BICUBIC)
    page.paste(fruit, xy, fruit_alpha(photo).resize((side, side), Image.Resampling.BILINEAR))


def _white() -> Image.Image:
    return Image.new("RGB", SCENE_SIZE, (255, 255, 255))


def plain_colour(rng: np.random.Generator) -> Image.Image:
    hue = Image.new(
        "HSV", (1, 1), (int(rng.integers(0, 256)), int(rng.integers(60, 200)), int(rng.integers(90, 235)))
    )
    return Image.new("RGB", SCENE_SIZE, hue.convert("RGB").getpixel((0, 0)))


def smooth_noise(rng: np.random.Generator) -> Image.Image:
    """A mottled surface: colour blotches at two scales plus fine grain (a stone or fabric)."""
    w, h = SCENE_SIZE
    base = rng.uniform(60, 200, size=3)

    def blotches(rows: int, cols: int, sigma: float) -> np.ndarray:
        small = np.clip(128 + rng.normal(0, sigma, size=(rows, cols, 3)), 0, 255).astype(np.uint8)
        big = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
        return np.asarray(big, dtype=np.float32) - 128

    field = base + blotches(6, 8, 35) + blotches(30, 40, 18) + rng.normal(0, 10, size=(h, w, 3))
    return Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))


def wood(rng: np.random.Generator) -> Image.Image:
    """Wood-like planks: warped brown stripes with grain."""
    w, h = SCENE_SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(-0.4, 0.4)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    warp = 12 * np.sin(v / rng.uniform(40, 90) + rng.uniform(0, 6.3))
    rings = 0.5 + 0.5 * np.sin((u + warp) / rng.uniform(4, 9))
    dark = np.array(rng.choice([[92, 58, 32], [120, 80, 45], [70, 45, 28]]), dtype=np.float32)
    light = dark + rng.uniform(40, 80, size=3).astype(np.float32) * np.array(
        [1.0, 0.8, 0.55], dtype=np.float32
    )
    field = dark + rings[..., None] * (light - dark) + rng.normal(0, 6, size=(h, w, 1))
    return Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))


def blurred_photo(backdrop_photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Another class's photo, its fruit filling the frame, out of focus: a busy bokeh backdrop."""
    w, h = backdrop_photo.size
    inner = backdrop_photo.crop((int(w * 0.2), int(h * 0.2), int(w * 0.8), int(h * 0.8)))
    big = inner.resize(SCENE_SIZE, Image.Resampling.BICUBIC)
    return big.filter(ImageFilter.GaussianBlur(rng.uniform(6, 14)))


def _on_page(photo: Image.Image) -> Image.Image:
    """The photo as it is: one fruit filling the frame (the clean framing)."""
    return photo


def _brightness(photo, rng):
    return ImageEnhance.Brightness(photo).enhance(
        rng.choice([rng.uniform(0.6, 0.85), rng.uniform(1.15, 1.4)])
    )


def _contrast(photo, rng):
    return ImageEnhance.Contrast(photo).enhance(rng.choice([rng.uniform(0.6, 0.85), rng.uniform(1.15, 1.4)]))


def _colour_cast(photo, rng):
    strength = rng.uniform(0.08, 0.2)
    warm = rng.random() < 0.5
    gains = (1.0, 1.0 - strength / 2, 1.0 - strength) if warm else (1.0 - strength, 1.0 - strength / 2, 1.0)
    arr = np.asarray(photo, dtype=np.float32) * np.array(gains, dtype=np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _defocus(photo, rng, lo=1.0, hi=2.5):
    return photo.filter(ImageFilter.GaussianBlur(rng.uniform(lo, hi)))


def _motion(photo, rng):
    length = int(rng.integers(5, 12))
    kernel = np.zeros((length, length), dtype=np.float32)
    kernel[length // 2, :] = 1.0
    kernel = ndimage.rotate(kernel, rng.uniform(0, 180), reshape=False, order=1)
    kernel /= kernel.sum()
    arr = np.asarray(photo, dtype=np.float32)
    out = np.stack([ndimage.convolve(arr[..., c], kernel, mode="nearest") for c in range(3)], -1)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _noise(photo, rng, lo=8, hi=20):
    arr = np.asarray(photo, dtype=np.float32)
    sigma = rng.uniform(lo, hi)
    noisy = arr + rng.normal(0, sigma, size=arr.shape) + rng.normal(0, sigma / 2, size=arr.shape[:2] + (1,))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _rotation(photo, rng):
    return photo.rotate(rng.uniform(0, 360), Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))


def _shadow(photo, rng):
    """The fruit on a wider white page with its soft shadow cast beside it."""
    w, h = photo.size
    page = Image.new("RGB", (int(w * 1.8), int(h * 1.8)), (255, 255, 255))
    x, y = int(w * 0.4), int(h * 0.4)
    alpha = fruit_alpha(photo)
    shadow = Image.new("L", page.size, 0)
    dx, dy = (int(v) for v in rng.uniform(-0.3, 0.3, size=2) * w)
    shadow.paste(alpha, (x + dx, y + dy))
    shadow = shadow.filter(ImageFilter.GaussianBlur(w * 0.08))
    depth = rng.uniform(0.3, 0.5)
    arr = np.asarray(page, dtype=np.float32) * (
        1 - depth * np.asarray(shadow, dtype=np.float32)[..., None] / 255
    )
    page = Image.fromarray(arr.astype(np.uint8))
    page.paste(photo, (x, y), alpha)
    return page


def _big_exif(photo, rng):
    """A 12 Mpx phone photo (4000x3000) of the fruit on white, stored sideways with EXIF."""
    page = Image.new("RGB", (4000, 3000), (255, 255, 255))
    side = int(rng.uniform(0.35, 0.6) * 3000)
    fruit = photo.resize((side, side), Image.Resampling.BICUBIC)
    page.paste(
        fruit,
        (int(rng.integers(0, 4000 - side)), int(rng.integers(0, 3000 - side))),
        fruit_alpha(photo).resize((side, side)),
    )
    return page


# Light to deep human skin tones; a hand's tone is drawn anywhere along this line.
SKIN_TONES = np.array(
    [(255, 224, 196), (236, 192, 160), (214, 160, 118), (180, 122, 84), (128, 82, 54), (86, 56, 40)],
    dtype=np.float32,
)
WALLS = [(236, 236, 232), (200, 202, 204), (188, 206, 222), (190, 208, 186), (150, 150, 156)]


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    at = rng.uniform(0, len(SKIN_TONES) - 1)
    return np.array([np.interp(at, np.arange(len(SKIN_TONES)), c) for c in SKIN_TONES.T], dtype=np.float32)


def _wall_or_room(rng: np.random.Generator) -> Image.Image:
    """A plain painted wall, or a generated room out of focus (the scene behind a held fruit)."""
    if rng.random() < 0.5:
        return indoor_scene(rng).filter(ImageFilter.GaussianBlur(rng.uniform(4, 8)))
    return Image.new("RGB", SCENE_SIZE, WALLS[int(rng.integers(len(WALLS)))])


def _capsule(a, b, width: float) -> Image.Image:
    """A finger's mask: a thick line with round ends from a to b."""
    mask = Image.new("L", SCENE_SIZE, 0)
    draw = ImageDraw.Draw(mask)
    draw.line((*a, *b), fill=255, width=int(width))
    for x, y in (a, b):
        draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    return mask


def _skin(page: Image.Image, masks: list[Image.Image], tone: np.ndarray, light: np.ndarray) -> None:
    """Paint each mask in skin, one after the other, darker at its rim so each part looks round."""
    for mask in masks:
        depth = np.asarray(mask.filter(ImageFilter.GaussianBlur(12)), dtype=np.float32)[..., None] / 255
        rgb = tone * light * (0.7 + 0.3 * depth)
        page.paste(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)), (0, 0), mask)


def _hand(photo, rng):
    """The fruit resting on a palm, fingers and thumb over its lower edge, on a wall or a blurred room."""
    w, h = SCENE_SIZE
    page = _wall_or_room(rng)
    side = int(rng.uniform(0.35, 0.6) * w)
    left, top, right, bottom = (v * side / photo.width for v in fruit_alpha(photo).getbbox())
    x = int(rng.uniform(0.05 * w, 0.95 * w - side))
    y = max(0, int(h * rng.uniform(0.7, 0.85) - bottom))
    cx, low = x + (left + right) / 2, y + bottom  # the fruit's centre line and lower edge
    s = max(right - left, 0.5 * side)  # the hand's size follows the fruit's width
    reach = min(0.15 * side, 0.25 * (bottom - top))  # how far the fingers cover the fruit
    tip = low + 0.09 * s  # where a fingertip's round end just touches the fruit's lower edge
    tone = _skin_tone(rng)
    light = np.linspace(*rng.choice([[1.08, 0.85], [0.85, 1.08]]), w, dtype=np.float32)[None, :, None]
    palm = _capsule((cx, low), (cx + rng.uniform(-0.3, 0.3) * s, h + s), 0.6 * s)  # the wrist
    ImageDraw.Draw(palm).ellipse((cx - 0.5 * s, low - 0.2 * s, cx + 0.5 * s, low + 0.4 * s), fill=255)
    _skin(page, [palm], tone, light)
    _paste(page, photo, side, (x, y))
    thumb = rng.choice([-1, 1])  # a left or a right hand
    fingers = [
        _capsule((cx + f * 0.2 * s, low + 0.4 * s), (cx + f * 0.23 * s, tip - reach * length), 0.17 * s)
        for f, length in zip((-1.5, -0.5, 0.5, 1.5), (0.8, 1.0, 0.95, 0.7)[::-thumb], strict=True)
    ]
    fingers.append(
        _capsule((cx + thumb * 0.7 * s, low + 0.4 * s), (cx + thumb * 0.42 * s, tip - reach), 0.19 * s)
    )
    _skin(page, fingers, tone, light)
    return page


def _angle(photo, rng):
    """Seen at an angle: squashed to 65-80% of its height or width, padded back on white."""
    w, h = photo.size
    f = rng.uniform(0.65, 0.8)
    size = (w, round(h * f)) if rng.random() < 0.5 else (round(w * f), h)
    page = Image.new("RGB", photo.size, (255, 255, 255))
    page.paste(photo.resize(size, Image.Resampling.BICUBIC), ((w - size[0]) // 2, (h - size[1]) // 2))
    return page


def _gamma(photo, rng):
    gamma = rng.choice([rng.uniform(0.6, 0.75), rng.uniform(1.4, 1.6)])
    arr = 255 * (np.asarray(photo, dtype=np.float32) / 255) ** gamma
    return Image.fromarray(np.round(arr).astype(np.uint8))


def _vivid(photo, rng):
    return ImageEnhance.Contrast(ImageEnhance.Color(photo).enhance(rng.uniform(1.4, 1.6))).enhance(1.1)


def _stone(rng: np.random.Generator) -> Image.Image:
    """The mottled surface greyed down: a stone worktop."""
    return ImageEnhance.Color(smooth_noise(rng)).enhance(0.25)


def _phone_shot(photo, rng):
    """The fruit small on a table-like surface, under a colour cast, slightly defocused and noisy."""
    surface = wood(rng) if rng.random() < 0.5 else _stone(rng)
    img = _colour_cast(_place(photo, surface, rng, 0.25, 0.45)[0], rng)
    return Variant(_noise(_defocus(img, rng, 0.8, 1.5), rng, 4, 8), int(rng.integers(60, 81)))


def _cut_by_frame(photo, rng):
    """The photo shifted so 25-40% of the fruit's width or height falls outside one edge."""
    w, h = photo.size
    left, top, right, bottom = fruit_alpha(photo).getbbox()
    cut_x, cut_y = rng.uniform(0.25, 0.4) * np.array([right - left, bottom - top])
    shifts = [(-left - cut_x, 0), (w - right + cut_x, 0), (0, -top - cut_y), (0, h - bottom + cut_y)]
    dx, dy = shifts[int(rng.integers(4))]
    page = Image.new("RGB", photo.size, (255, 255, 255))
    page.paste(photo, (round(dx), round(dy)))
    return page


def _two_fruits(photo, other, rng):
    """The Test photo's fruit large, another class's fruit smaller beside it (not overlapping), on white."""
    w, h = SCENE_SIZE
    big, small = int(rng.uniform(0.4, 0.55) * w), int(rng.uniform(0.2, 0.3) * w)
    gap = int(rng.uniform(0, 0.15) * small)
    x = int(rng.integers(0, w - big - gap - small + 1))
    big_x, small_x = (x, x + big + gap) if rng.random() < 0.5 else (x + small + gap, x)
    page = _white()
    _paste(page, photo, big, (big_x, int(rng.integers(0, h - big + 1))))
    _paste(page, other, small, (small_x, int(rng.integers(0, h - small + 1))))
    return page


Condition = Callable[[Image.Image, np.random.Generator, Image.Image], Variant]

CONDITIONS: dict[str, tuple[str, Condition]] = {
    "clean": ("the Test photo as it is", lambda p, r, b: Variant(_on_page(p))),
    "small_offcentre": (
        "fruit at 25-60% of the frame width, anywhere, on white",
        lambda p, r, b: Variant(_place(p, _white(), r)[0]),
    ),
    "plain_colour_bg": (
        "same, on a plain coloured backdrop",
        lambda p, r, b: Variant(_place(p, plain_colour(r), r)[0]),
    ),
    "textured_noise": (
        "same, on a mottled surface (generated noise)",
        lambda p, r, b: Variant(_place(p, smooth_noise(r), r)[0]),
    ),
    "textured_wood": (
        "same, on wood-like stripes",
        lambda p, r, b: Variant(_place(p, wood(r), r)[0]),
    ),
    "textured_photo": (
        "same, on a blurred photo of another class",
        lambda p, r, b: Variant(_place(p, blurred_photo(b, r), r)[0]),
    ),
    "brightness": ("brightness x0.6-0.85 or x1.15-1.4", lambda p, r, b: Variant(_brightness(p, r))),
    "contrast": ("contrast x0.6-0.85 or x1.15-1.4", lambda p, r, b: Variant(_contrast(p, r))),
    "colour_cast": ("warm or cool colour temperature cast", lambda p, r, b: Variant(_colour_cast(p, r))),
    "defocus_blur": ("Gaussian defocus, radius 1-2.5 px", lambda p, r, b: Variant(_defocus(p, r))),
    "motion_blur": ("motion blur, 5-11 px at any angle", lambda p, r, b: Variant(_motion(p, r))),
    "sensor_noise": ("Gaussian sensor noise, sigma 8-20", lambda p, r, b: Variant(_noise(p, r))),
    "jpeg_q20_40": (
        "re-compressed as JPEG quality 20-40",
        lambda p, r, b: Variant(p, int(r.integers(20, 41))),
    ),
    "rotation": ("rotated by any angle", lambda p, r, b: Variant(_rotation(p, r))),
    "big_exif": (
        "12 Mpx photo on white, stored sideways with EXIF orientation",
        lambda p, r, b: Variant(_big_exif(p, r), 90, int(r.choice([3, 6, 8]))),
    ),
    "shadow": ("on a wider white page with a soft cast shadow", lambda p, r, b: Variant(_shadow(p, r))),
    "hand": (
        "fruit at 35-60% of the frame held in a hand, on a wall or a blurred room",
        lambda p, r, b: Variant(_hand(p, r)),
    ),
    "angle": (
        "seen at an angle: squashed to 65-80% of its height or width",
        lambda p, r, b: Variant(_angle(p, r)),
    ),
    "gamma": ("gamma curve, gamma 0.6-0.75 or 1.4-1.6", lambda p, r, b: Variant(_gamma(p, r))),
    "vivid": ("phone vivid mode: saturation x1.4-1.6, contrast x1.1", lambda p, r, b: Variant(_vivid(p, r))),
    "phone_shot": (
        "fruit at 25-45% on a table, colour cast, slight defocus, noise, JPEG 60-80",
        lambda p, r, b: _phone_shot(p, r),
    ),
    "cut_by_frame": (
        "25-40% of the fruit's width or height cut off by one edge",
        lambda p, r, b: Variant(_cut_by_frame(p, r)),
    ),
    "two_fruits": (
        "fruit at 40-55% of the width beside a smaller fruit of another class, on white",
        lambda p, r, b: Variant(_two_fruits(p, b, r)),
    ),
}


def make_variant(condition: str, photo: Image.Image, seed: int, backdrop: Image.Image) -> bytes:
    """The seeded variant of `photo` under `condition`, as the JPEG bytes a phone would send."""
    rng = np.random.default_rng(seed)
    return CONDITIONS[condition][1](photo, rng, backdrop).encode()


def non_fruit_images(seed: int = 0) -> dict[str, bytes]:
    """Photos of no fruit: blank pages, text, noise, flat colours, an indoor scene, bare surfaces."""
    rng = np.random.default_rng(seed)
    w, h = SCENE_SIZE
    out: dict[str, Image.Image] = {}
    out["blank_white"] = _white()
    out["blank_grey_paper"] = Image.new("RGB", SCENE_SIZE, (214, 210, 200))
    for i, colour in enumerate([(20, 20, 20), (200, 30, 30), (30, 160, 60), (40, 60, 200), (240, 200, 40)]):
        out[f"flat_colour_{i}"] = Image.new("RGB", SCENE_SIZE, colour)
    text = _white()
    draw = ImageDraw.Draw(text)
    for line in range(12):
        draw.text(
            (40, 30 + 45 * line),
            "The quick brown fox jumps over the lazy dog " * 2,
            fill=(20, 20, 20),
            font_size=28,
        )
    out["text_on_paper"] = text
    out["noise_uniform"] = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    out["noise_gaussian"] = Image.fromarray(
        np.clip(rng.normal(128, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
    )
    out["surface_mottled"] = smooth_noise(rng)
    out["surface_wood"] = wood(rng)
    out["indoor_scene"] = indoor_scene(rng)
    out["indoor_scene_2"] = indoor_scene(rng)
    return {name: Variant(img).encode() for name, img in out.items()}


def indoor_scene(rng: np.random.Generator) -> Image.Image:
    """A generated room: wall and floor gradients, a window, a table, a lamp, a picture frame."""
    w, h = SCENE_SIZE
    img = Image.new("RGB", SCENE_SIZE)
    arr = np.zeros((h, w, 3), dtype=np.float32)
    wall = rng.uniform(150, 230, size=3)
    floor = rng.uniform(60, 140, size=3)
    horizon = int(h * rng.uniform(0.55, 0.7))
    shade = np.linspace(1.0, 0.75, w)[None, :, None]
    arr[:horizon] = wall * shade
    arr[horizon:] = floor * shade
    img = Image.fromarray(np.clip(arr + rng.normal(0, 4, arr.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    wx = int(rng.uniform(0.05, 0.5) * w)
    draw.rectangle((wx, 60, wx + 220, 60 + 160), fill=(190, 215, 240), outline=(250, 250, 250), width=8)
    draw.line((wx + 110, 60, wx + 110, 220), fill=(250, 250, 250), width=6)
    tx = int(rng.uniform(0.1, 0.4) * w)
    draw.rectangle((tx, horizon - 40, tx + 360, horizon - 20), fill=(110, 70, 40))
    draw.rectangle((tx + 20, horizon - 20, tx + 40, horizon + 80), fill=(90, 55, 30))
    draw.rectangle((tx + 320, horizon - 20, tx + 340, horizon + 80), fill=(90, 55, 30))
    draw.polygon(
        [
            (tx + 250, horizon - 130),
            (tx + 310, horizon - 130),
            (tx + 290, horizon - 90),
            (tx + 270, horizon - 90),
        ],
        fill=(240, 230, 180),
    )
    draw.rectangle((tx + 276, horizon - 90, tx + 284, horizon - 40), fill=(60, 60, 60))
    draw.rectangle(
        (w - 200, 80, w - 80, 200),
        fill=tuple(int(v) for v in rng.uniform(40, 200, 3)),
        outline=(60, 40, 20),
        width=10,
    )
    return img.filter(ImageFilter.GaussianBlur(1.0))
