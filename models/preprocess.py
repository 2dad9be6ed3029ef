"""Photo bytes -> model input array: the one preprocessing path shared by the job and the service."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Formats we accept, detected from the bytes (never from a file name or content type).
# MPO is what many phone cameras write: a JPEG with extra frames.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})

# A phone photo is ~12-50 Mpx; anything far above is a decompression bomb.
DEFAULT_MAX_PIXELS = 64_000_000

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
            raise ImageError("corrupt_image", f"The image could not be read: {exc}") from None
        if img.format not in ACCEPTED_FORMATS:
            raise ImageError(
                "unsupported_format",
                f"Image format {img.format} is not accepted; send JPEG, PNG, WebP, GIF, BMP or TIFF.",
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
            raise ImageError("corrupt_image", f"The image data is damaged: {exc}") from None
    try:
        return _to_rgb(img)
    except Exception as exc:  # a mode Pillow cannot convert (e.g. a LAB TIFF) is not a 500
        raise ImageError("unsupported_format", f"Image mode {img.mode} cannot be read: {exc}") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB, compositing transparency on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        # 16/32-bit greyscale: scale to 8 bits instead of clipping to white.
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if mode == "F" and arr.max(initial=0) <= 1.0 else 65535.0
        if mode == "I" and arr.max(initial=0) <= 255:
            top = 255.0
        arr = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "P" or mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        canvas = Image.new("RGB", img.size, BACKGROUND)
        canvas.paste(img, mask=img.getchannel("A"))
        return canvas
    return img.convert("RGB")


def to_model_input(img: Image.Image, size: int) -> np.ndarray:
    """Pad to a white square (keeps the fruit's shape) and resize to size x size float32 RGB."""
    width, height = img.size
    if width != height:
        side = max(width, height)
        canvas = Image.new("RGB", (side, side), BACKGROUND)
        canvas.paste(img, ((side - width) // 2, (side - height) // 2))
        img = canvas
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(img, dtype=np.float32)


# Backdrops a photo of nothing shows: white paper (the Fruits-360 backdrop), a covered lens,
# a wall... every flat colour of a 3-level RGB grid.
EMPTY_SCENE_COLOURS = tuple((r, g, b) for r in (0, 128, 255) for g in (0, 128, 255) for b in (0, 128, 255))


def empty_scene_inputs(size: int) -> np.ndarray:
    """Model inputs of photos that show only a flat backdrop: the references for "no fruit"."""
    return np.stack([to_model_input(Image.new("RGB", (size, size), c), size) for c in EMPTY_SCENE_COLOURS])


def preprocess_image(data: bytes, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """THE preprocessing function: bytes -> (size, size, 3) float32 RGB in [0, 255]."""
    return to_model_input(open_image(data, max_pixels=max_pixels, min_side=size), size)
