"""Where the fruit is: a square crop proposed by the network's own feature map.

A pretrained network's last feature map is strong where it sees an object and weak on a plain
surface. Where the strong cells cover a small part of the frame (a fruit small in a phone
photo), the features of the crop around them are used instead of the whole frame's; a fruit
that fills the frame, as in every studio photo, is featurized whole. Numpy only."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# A cell belongs to the object where its activation norm is past this share of the way from
# the frame's weakest cell to its strongest.
THRESHOLD = 0.5
# Cells of context added on every side of the object's box (the studio photos show a margin).
MARGIN = 0.6
# A box that covers at least this share of the frame is not worth a second model call.
MAX_AREA = 0.6


def object_box(feature_map: np.ndarray) -> tuple[float, float, float] | None:
    """(h, w, channels) feature map -> the object's square (left, top, side) as fractions of
    the frame, or None when the object fills most of it (or the map is flat)."""
    strength = np.linalg.norm(feature_map.astype(np.float64), axis=-1)
    lo, hi = float(strength.min()), float(strength.max())
    if hi - lo <= 1e-6 * max(hi, 1e-12):
        return None
    cells, _ = ndimage.label(strength >= lo + THRESHOLD * (hi - lo))
    ys, xs = np.nonzero(cells == cells[np.unravel_index(np.argmax(strength), strength.shape)])
    grid = strength.shape[0]
    side = min(float(max(ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min())) + 2 * MARGIN, grid)
    if (side / grid) ** 2 >= MAX_AREA:
        return None
    centre_y, centre_x = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    top = min(max(centre_y - side / 2, 0.0), grid - side)
    left = min(max(centre_x - side / 2, 0.0), grid - side)
    return left / grid, top / grid, side / grid
