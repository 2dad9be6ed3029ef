"""Training photos as the app shows them: read through the storage layer, sent as JPEG, optionally shrunk."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from models.storage import StorageError, StorageUnavailable, storage_for

JPEG_QUALITY = 85


class PhotoMissing(LookupError):
    """The bundle names the photo but the store no longer has it (or cannot read it)."""


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def render_photo(data: bytes, size: int | None, max_pixels: int) -> bytes:
    """JPEG bytes of a photo whose longer side is at most `size` (never enlarged). A JPEG asked
    for at its own size is sent as stored, byte for byte."""
    with Image.open(io.BytesIO(data)) as img:
        if img.width * img.height > max_pixels:
            raise PhotoMissing("the stored photo declares too many pixels")
        if _is_jpeg(data) and (size is None or max(img.size) <= size):
            return data
        img = ImageOps.exif_transpose(img).convert("RGB")
        if size is not None:
            img.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=JPEG_QUALITY)
        return buf.getvalue()


def load_photo(uri: str, size: int | None, max_pixels: int) -> bytes:
    """Read + render one training photo; raises PhotoMissing, or StorageUnavailable (store down)."""
    try:
        data = storage_for(uri).read_bytes(uri)
    except StorageUnavailable:
        raise
    except (StorageError, OSError) as exc:
        raise PhotoMissing(type(exc).__name__) from None
    try:
        return render_photo(data, size, max_pixels)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PhotoMissing(type(exc).__name__) from None
