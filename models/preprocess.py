"""Photo bytes -> the decoded photo and the model's input: the one preprocessing path shared by
the job and the service."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Changes whenever the pixels a photo becomes change: bundles record it, the service and an
# incremental refresh refuse features made by another version (history: docs/decisions.md).
PREPROCESSING_VERSION = "square-3"
# A photo keeps at least this multiple of the model's side: a crop of the object
# (models.framing) is cut from it at up to this much more detail than the whole photo has.
DETAIL = 2

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


@dataclass(frozen=True, eq=False)
class Photo:
    """A decoded photo, ready for the model: `input` is its white-padded square at the model's
    side; a crop (crop_input) is cut later from `image`, which keeps up to 2 x DETAIL x that
    detail (what the photo has, when it has less)."""

    image: Image.Image  # upright RGB, its square's side at most 2 x DETAIL x the model's
    square: tuple[float, float, float]  # the square (left, top, side) around it, in its pixels
    input: np.ndarray  # (size, size, 3) uint8


def photo_of(img: Image.Image, size: int) -> Photo:
    """An upright RGB image -> its Photo for a model of input side `size`. With pretrained weights
    every crafted step (white balance, relighting, turning, blur) cost accuracy (docs/decisions.md)."""
    side = max(img.width, img.height)
    factor = side // (DETAIL * size)
    if factor >= 2:  # keep the detail a crop can use, not a phone sensor's (a box filter, in C)
        img = img.reduce(factor)
    side = max(img.width, img.height)
    square = ((img.width - side) / 2, (img.height - side) / 2, float(side))
    return Photo(img, square, np.asarray(_square_on_white(img, square, size), dtype=np.uint8))


def to_model_input(img: Image.Image, size: int) -> np.ndarray:
    """The model's input for the whole photo: (size, size, 3) float32 RGB in [0, 255]."""
    return photo_of(img, size).input.astype(np.float32)


def model_inputs(photos: Sequence[Photo]) -> np.ndarray:
    """Photos -> the model's inputs for the whole photos, (n, size, size, 3) float32 in [0, 255]."""
    return np.stack([p.input for p in photos]).astype(np.float32)


def crop_input(photo: Photo, box: tuple[float, float, float], size: int) -> np.ndarray:
    """The part (left, top, side, as fractions of the photo's square) of a photo, resized to the
    model's input (size, size, 3) float32; outside the photo is white, as in its square."""
    left, top, side = photo.square
    part = (left + box[0] * side, top + box[1] * side, box[2] * side)
    return np.asarray(_square_on_white(photo.image, part, size), dtype=np.float32)


def _square_on_white(img: Image.Image, square, size: int) -> Image.Image:
    """The square (left, top, side) of img, resized to size x size; outside the photo is white."""
    left, top, side = square
    k = size / side
    x0, y0 = max(0.0, left), max(0.0, top)
    x1, y1 = min(float(img.width), left + side), min(float(img.height), top + side)
    out = Image.new(img.mode, (size, size), BACKGROUND)
    w, h = round((x1 - x0) * k), round((y1 - y0) * k)
    if w < 1 or h < 1:
        return out
    part = img.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1), reducing_gap=3.0)
    out.paste(part, (round((x0 - left) * k), round((y0 - top) * k)))
    return out


# Backdrops a photo of nothing shows: white paper (the Fruits-360 backdrop), a covered lens,
# a wall... every flat colour of a 3-level RGB grid.
EMPTY_SCENE_COLOURS = tuple((r, g, b) for r in (0, 128, 255) for g in (0, 128, 255) for b in (0, 128, 255))


def empty_scene_photos(size: int, colours=EMPTY_SCENE_COLOURS) -> list[Photo]:
    """Photos (preprocess_photo) that show only a flat backdrop of each colour: the references
    for "no fruit"."""
    return [photo_of(Image.new("RGB", (size, size), c), size) for c in colours]


def open_for_model(data: bytes, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode a photo for a model of input side `size`, or raise ImageError.

    A large JPEG is decoded at >= DETAIL x the model's side (a reduced JPEG decode is ~10x
    faster, and keeps the detail a crop needs).
    """
    return open_image(data, max_pixels=max_pixels, min_side=DETAIL * size)


def preprocess_photo(data: bytes, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """THE preprocessing function: bytes -> the Photo (photo_of) that
    models.featurizer.featurize_photos makes features of."""
    return photo_of(open_for_model(data, size, max_pixels=max_pixels), size)


def preprocess_image(data: bytes, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """bytes -> the model's input for the whole photo, (size, size, 3) float32 RGB in [0, 255]."""
    return to_model_input(open_for_model(data, size, max_pixels=max_pixels), size)
