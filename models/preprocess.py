"""Photo bytes -> model input array: the one preprocessing path shared by the job and the service."""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from models.objects import (
    WORK_SIDE,
    FoundObject,
    dilate,
    find_object,
    largest_region,
    mask_box,
    veil_share,
    white_balance_gains,
)

# Changes whenever the pixels a photo becomes change: bundles record it, the service and an
# incremental refresh refuse features made by another version. 2: on a textured backdrop the
# fruit's mask is refined by GrabCut (models/objects.py). 3: textures described by colour and
# busyness, every fruit turned to one angle, its light moved halfway to a common level.
# 5 (4 was a reverted experiment): a darker pixel of a coloured backdrop's hue is no longer
# taken for its shadow. 6: on a texture the mask is grown by a watershed to the fruit's outline,
# and on a backdrop without fine detail (out of focus) the fruit is what is in focus. 7: on a
# page darker than white, a fruit whose darkest parts are not dark has its veil lifted.
# 8: the veil's share is read against a darker fruit (models.objects.VEIL_DARKNESS 240 -> 250),
# and a page darker than 1/1.35 of white is taken for dim light, never for a veil.
PREPROCESSING_VERSION = "object-centred-8"

# Formats we accept, detected from the bytes (never from a file name or content type).
# MPO is what many phone cameras write: a JPEG with extra frames.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF"})


@cache
def _register_heif() -> None:
    """Teach Pillow HEIC/HEIF (an iPhone's default format) through pillow-heif, once per process,
    when the first photo is decoded rather than at import."""
    from pillow_heif import register_heif_opener

    register_heif_opener()


# A phone photo is ~12-50 Mpx; anything far above is a decompression bomb.
DEFAULT_MAX_PIXELS = 64_000_000

log = logging.getLogger("models.preprocess")

# Fruits-360 photos sit on white, so transparency and letterboxing become white too.
BACKGROUND = (255, 255, 255)


class ImageError(ValueError):
    """A photo we cannot use; `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def open_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> Image.Image:
    """Decode bytes into an upright 8-bit RGB image, or raise ImageError.

    With `min_side`, a large JPEG is decoded at a reduced scale (1/2..1/8) that keeps
    both sides >= min_side: a 12 Mpx phone photo then decodes ~10x faster.
    """
    if not data:
        raise ImageError("empty_file", "The file is empty.")
    _register_heif()
    with warnings.catch_warnings():
        # Pillow warns (then errors) on huge canvases; we apply our own limit first.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError("not_an_image", "The file is not an image we can read.") from None
        except Image.DecompressionBombError:
            raise ImageError("image_too_large", "The image declares too many pixels.") from None
        except Exception as exc:  # Pillow raises many types on hostile headers
            log.info("unreadable image header: %s: %s", type(exc).__name__, exc)
            raise ImageError("corrupt_image", "The image could not be read.") from None
        if img.format not in ACCEPTED_FORMATS:
            raise ImageError(
                "unsupported_format",
                f"Image format {img.format} is not accepted; send JPEG, PNG, WebP, HEIC, GIF, BMP or TIFF.",
            )
        width, height = img.size
        if width < 1 or height < 1:
            raise ImageError("corrupt_image", "The image has no pixels.")
        if width * height > max_pixels:
            raise ImageError(
                "image_too_large",
                f"The image is {width}x{height} pixels; at most {max_pixels} pixels are accepted.",
            )
        try:
            img.seek(0)  # first frame of an animation
            if min_side and img.format in ("JPEG", "MPO"):
                img.draft("RGB", (min_side, min_side))
            img.load()
            img = ImageOps.exif_transpose(img)
        except Exception as exc:
            log.info("damaged image data: %s: %s", type(exc).__name__, exc)
            raise ImageError("corrupt_image", "The image data is damaged.") from None
    try:
        return _to_rgb(img)
    except Exception as exc:  # a mode Pillow cannot convert (e.g. a LAB TIFF) is not a 500
        log.info("image mode %s not converted: %s: %s", img.mode, type(exc).__name__, exc)
        raise ImageError("unsupported_format", f"Image mode {img.mode} cannot be read.") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB, compositing transparency on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        # 16/32-bit greyscale: scale to 8 bits instead of clipping to white.
        return Image.fromarray(_grey_to_8bit(np.asarray(img), mode), mode="L").convert("RGB")
    if mode == "P" or mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        canvas = Image.new("RGB", img.size, BACKGROUND)
        canvas.paste(img, mask=img.getchannel("A"))
        return canvas
    return img.convert("RGB")


# Rows converted at a time from 16/32-bit greyscale: the float32 temporaries stay a few MB
# whatever the canvas (a flat 8000x8000 16-bit PNG is a few KB upload and 128 MB decoded).
_GREY_ROWS = 256


def _grey_to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit greyscale pixels -> uint8, by blocks of rows (no full-size float copy)."""
    peak = float(arr.max(initial=0))
    top = 1.0 if mode == "F" and peak <= 1.0 else 65535.0
    if mode == "I" and peak <= 255:
        top = 255.0
    out = np.empty(arr.shape, dtype=np.uint8)
    for start in range(0, arr.shape[0], _GREY_ROWS):
        block = arr[start : start + _GREY_ROWS]
        if block.dtype.kind in "iu":  # exact integer scaling: x * 255 // top
            scaled = np.clip(block.astype(np.int64), 0, int(top)) * 255 // int(top)
        else:
            scaled = np.clip(block.astype(np.float32) * np.float32(255.0 / top), 0, 255)
        out[start : start + _GREY_ROWS] = scaled
    return out


def to_model_input(img: Image.Image, size: int) -> np.ndarray:
    """Frame the fruit (see frame_object) and resize to size x size float32 RGB in [0, 255].

    With a fruit found: cut it out onto white at the model's resolution, re-frame it on the
    mask drawn there (the thumbnail's box is a pixel or two coarse), move its light halfway to
    a common level and turn it to its canonical angle. Without one: the whole photo, padded to
    a white square.
    """
    return _soften(_framed(img, size), size)


# Every model input is slightly blurred (sigma INPUT_BLUR px at 224 px, scaled with the side):
# detail finer than a phone's focus, noise and JPEG blocks hold no fruit, and the random-weight
# features otherwise react to it (defocus, motion blur and sensor noise rows gained 3-5 points,
# clean gained a little; docs/robustness.md).
INPUT_BLUR = 1.0


def _soften(rgb: np.ndarray, size: int) -> np.ndarray:
    sigma = INPUT_BLUR * size / 224
    return ndimage.gaussian_filter(rgb, (sigma, sigma, 0)).astype(np.float32) if sigma > 0 else rgb


def _framed(img: Image.Image, size: int) -> np.ndarray:
    framing = frame_object(img)
    if framing.gains is not None:
        levels = np.broadcast_to(np.arange(256, dtype=np.float32)[:, None], (256, 3))
        levels = balanced(levels, framing.gains, framing.veil)
        img = img.point(np.round(levels.T).astype(int).ravel().tolist())
    if framing.found is None:
        return np.asarray(_square_on_white(img, framing.square, size), dtype=np.float32)
    rgb, mask = _cut_out(img, framing, framing.square, framing.mask_square, size)
    box = mask_box(mask)
    if box is not None:
        square = _inner_square(framing.square, box, size)
        mask_square = _inner_square(framing.mask_square, box, size)
        rgb, mask = _cut_out(img, framing, square, mask_square, size)
    rgb = _relit(rgb, mask)
    alpha = ndimage.gaussian_filter(mask.astype(np.float32), 0.6)[..., None]
    rgb = rgb * alpha + np.float32(255.0) * (1.0 - alpha)
    return _turn_upright(rgb, mask, size)


# Light: the fruit's mean brightness is moved halfway (geometrically) to LIGHT_LEVEL, the
# median of the training photos' fruits, so a photo under x f the light reaches the model
# under x sqrt(f). All the way would undo light completely but also erase how dark a variety
# is; halfway, measured on 250 Test photos with 2 views a photo: brightness x0.6-1.4 76 -> 85%,
# contrast 71 -> 77%, rotation and plain colour +2-3 points, clean within a photo or two.
LIGHT_LEVEL = 75.0


def _relit(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if mask.sum() < 20:
        return rgb
    level = float(rgb[mask].mean(dtype=np.float64))
    return np.minimum(rgb * np.float32(np.sqrt(LIGHT_LEVEL / max(level, 1.0))), np.float32(255.0))


# Every found fruit is turned to a canonical angle, so a photo of it at any angle reaches the
# model as the studio shots do (the rotation row went from 84 to 93% top-1 on 250 Test photos
# without views, clean unchanged; docs/robustness.md):
# - an elongated fruit (banana, carrot, pepper, pear) stands its long axis vertical, pointing to
#   its heavier end when the shape is lopsided enough to tell, else to its darker end (below),
#   else the smaller turn is taken; a mask whose principal axes differ by less than ELONGATION
#   is round;
# - a round fruit is turned so that its darker side faces down: the darkness-weighted centre
#   lies off the shape's centre towards the side the light does not reach, and the studio light
#   came from one side for every photo. A fruit lit so evenly that this offset is under
#   SHADING_OFFSET of its radius has no such side and is left as it is.
ELONGATION = 1.25
LOPSIDED = 0.15
SHADING_OFFSET = 0.02


def _upright_turn(rgb: np.ndarray, mask: np.ndarray) -> float | None:
    """Degrees counter-clockwise (as Pillow turns) that bring the fruit to its canonical angle;
    None to leave it as it is."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 20:
        return None
    (minor, major), vectors = np.linalg.eigh(np.cov(np.stack([xs, ys]).astype(np.float64)))
    # = 255 - rgb[ys, xs].mean(-1, dtype=np.float64), the same sums in the same order, without
    # gathering three channels (a third of the time).
    darkness = 255.0 - (rgb[..., 0].astype(np.float64) + rgb[..., 1] + rgb[..., 2])[ys, xs] / 3
    weight = max(float(darkness.sum()), 1e-9)
    shading = np.array(
        [(darkness * xs).sum() / weight - xs.mean(), (darkness * ys).sum() / weight - ys.mean()]
    )
    shaded = np.hypot(*shading) >= SHADING_OFFSET * np.sqrt(len(xs) / np.pi)
    if major >= ELONGATION**2 * max(minor, 1e-9):
        axis = vectors[:, 1]
        along = (xs - xs.mean()) * axis[0] + (ys - ys.mean()) * axis[1]
        skew = float((along**3).mean() / max((along**2).mean(), 1e-9) ** 1.5)
        if abs(skew) >= LOPSIDED:
            axis = axis if skew > 0 else -axis
        elif shaded:  # a symmetric shape: its darker end goes down
            axis = axis if float(shading @ axis) > 0 else -axis
        elif axis[1] < 0:  # keep the turn under 90 degrees
            axis = -axis
    elif shaded:
        axis = shading
    else:
        return None
    # The turn that brings the axis to point down (+y).
    return float(np.degrees(np.arctan2(axis[1], axis[0]))) - 90.0


def _turn_upright(rgb: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    turn = _upright_turn(rgb, mask)
    if turn is None or abs(turn) < 1.0:
        return rgb.astype(np.float32)
    photo = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    photo = photo.rotate(turn, Image.Resampling.BILINEAR, expand=True, fillcolor=BACKGROUND)
    turned = Image.fromarray(mask.astype(np.uint8) * 255).rotate(turn, Image.Resampling.NEAREST, expand=True)
    box = turned.getbbox()
    if box is None:
        return rgb.astype(np.float32)
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * (1 + 2 * OBJECT_MARGIN)
    square = ((left + right - side) / 2, (top + bottom - side) / 2, side)
    return np.asarray(_square_on_white(photo, square, size), dtype=np.float32)


# The margin left around a found fruit, as a share of its larger side (Fruits-360's frames
# leave a few pixels around the fruit).
OBJECT_MARGIN = 0.06


@dataclass(frozen=True)
class Framing:
    """Where the fruit is: the square of the photo to keep and, when found, the fruit."""

    square: tuple[float, float, float]  # (left, top, side) in photo pixels; may pass the edges
    gains: np.ndarray | None = None  # per-channel white-balance gains, applied first
    veil: float = 1.0  # then the share of darkness a veil left is stretched back (1.0: none)
    found: FoundObject | None = None  # None: no clear object, the whole photo is kept
    mask: Image.Image | None = None  # the object's mask as an "L" image, thumbnail pixels
    mask_square: tuple[float, float, float] | None = None  # the square in thumbnail pixels


def frame_object(img: Image.Image) -> Framing:
    """Find the fruit and frame it as Fruits-360 does: centred, filling the square, on white.

    A plain near-white backdrop sets white-balance gains (dim, warm or cool light undone).
    When no clear object stands out (models.objects.find_object), the whole photo is kept,
    padded to a white square: the path every photo took before object framing.
    """
    thumb = img.copy()
    thumb.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)
    rgb = np.asarray(thumb, dtype=np.float32)
    gains = white_balance_gains(rgb)
    veil = 1.0
    if gains is not None:
        veil = veil_share(np.minimum(rgb * gains, 255.0), gains)
        rgb = balanced(rgb, gains, veil)

    def detail() -> np.ndarray:  # the photo at twice the thumbnail's side, only when a texture asks
        finer = img.copy()
        finer.thumbnail((2 * WORK_SIDE, 2 * WORK_SIDE), Image.Resampling.BOX)
        arr = np.asarray(finer, dtype=np.float32)
        return arr if gains is None else balanced(arr, gains, veil)

    found = find_object(rgb, detail)
    if found is None:
        side = float(max(img.width, img.height))
        return Framing(((img.width - side) / 2, (img.height - side) / 2, side), gains, veil)
    scale = img.width / thumb.width
    left, top, right, bottom = found.box
    side = max(right - left, bottom - top) * (1 + 2 * OBJECT_MARGIN)
    square = ((left + right - side) / 2, (top + bottom - side) / 2, side)
    mask = Image.fromarray(found.mask.astype(np.uint8) * 255, mode="L")
    return Framing(tuple(v * scale for v in square), gains, veil, found, mask, square)


def balanced(rgb: np.ndarray, gains: np.ndarray, veil: float) -> np.ndarray:
    """`rgb` (..., 3) under the white-balance gains, then the darkness a veil left (its share
    `veil`) stretched back: one tone curve per channel, for the photo and its thumbnails."""
    out = np.minimum(rgb * gains, 255.0)
    if veil < 1.0:
        out = np.maximum(255.0 - (255.0 - out) / np.float32(veil), 0.0)
    return out


def _inner_square(square, box, size):
    """The square framing `box` (pixels of a size x size view of `square`) with the margin, in
    the coordinates `square` is given in."""
    left, top, side = square
    k = side / size
    x0, y0, x1, y1 = box
    inner = max(x1 - x0, y1 - y0) * (1 + 2 * OBJECT_MARGIN)
    return (left + k * (x0 + x1 - inner) / 2, top + k * (y0 + y1 - inner) / 2, k * inner)


def _cut_out(img, framing, square, mask_square, size) -> tuple[np.ndarray, np.ndarray]:
    """The square of the photo at size x size, and the fruit's mask there (bool)."""
    rgb = np.asarray(_square_on_white(img, square, size), dtype=np.float32)
    mask = np.asarray(_square_on_white(framing.mask, mask_square, size, fill=0)) > 127
    backdrop = framing.found.backdrop
    if backdrop.plain:
        # On a plain backdrop the edge found on the thumbnail is re-drawn at the model's
        # resolution, so no rim of the backdrop is left around the fruit.
        reach = max(1, round(2 * size / WORK_SIDE))
        mask = dilate(mask, reach)
        box = mask_box(mask)
        if box is None:
            return rgb, mask
        # Only the pixels the dilated mask keeps can stay: smooth and measure those alone (the
        # hot path). The 3x3 mean of a pixel in the mask's box needs one more pixel around it.
        left, top, right, bottom = box
        rows = slice(max(0, top - 1), bottom + 1)
        cols = slice(max(0, left - 1), right + 1)
        smooth = ndimage.uniform_filter(rgb[rows, cols], size=(3, 3, 1), mode="nearest")
        keep = np.zeros_like(mask)
        keep[mask] = backdrop.distance(smooth[mask[rows, cols]][None])[0] > backdrop.threshold
        mask = largest_region(keep)
    return rgb, mask


def _square_on_white(img: Image.Image, square, size: int, fill=BACKGROUND) -> Image.Image:
    """The square (left, top, side) of img, resized to size x size; outside the photo is `fill`."""
    left, top, side = square
    k = size / side
    x0, y0 = max(0.0, left), max(0.0, top)
    x1, y1 = min(float(img.width), left + side), min(float(img.height), top + side)
    out = Image.new(img.mode, (size, size), fill)
    w, h = round((x1 - x0) * k), round((y1 - y0) * k)
    if w < 1 or h < 1:
        return out
    part = img.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1), reducing_gap=3.0)
    out.paste(part, (round((x0 - left) * k), round((y0 - top) * k)))
    return out


# Backdrops a photo of nothing shows: white paper (the Fruits-360 backdrop), a covered lens,
# a wall... every flat colour of a 3-level RGB grid.
EMPTY_SCENE_COLOURS = tuple((r, g, b) for r in (0, 128, 255) for g in (0, 128, 255) for b in (0, 128, 255))


def empty_scene_inputs(size: int) -> np.ndarray:
    """Model inputs of photos that show only a flat backdrop: the references for "no fruit"."""
    return np.stack([to_model_input(Image.new("RGB", (size, size), c), size) for c in EMPTY_SCENE_COLOURS])


def open_for_model(data: bytes, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode a photo for a model of input side `size`, or raise ImageError.

    A large JPEG is decoded at >= 2x the model's side: a fruit at a quarter of the frame
    still reaches the model at about half its resolution after framing.
    """
    return open_image(data, max_pixels=max_pixels, min_side=2 * size)


def preprocess_image(data: bytes, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """THE preprocessing function: bytes -> (size, size, 3) float32 RGB in [0, 255]."""
    return to_model_input(open_for_model(data, size, max_pixels=max_pixels), size)
