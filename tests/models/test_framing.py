"""models/framing.py: the object's square from a feature map, and its use by featurize_photos."""

from __future__ import annotations

import numpy as np
import pytest

from models.framing import MARGIN, MAX_AREA, object_box

GRID = 7


def feature_map(strong: list[tuple[int, int]], value: float = 5.0) -> np.ndarray:
    """A (7, 7, 4) map, weak everywhere (norm 1) but at the `strong` cells."""
    fm = np.zeros((GRID, GRID, 4))
    fm[..., 0] = 1.0
    for y, x in strong:
        fm[y, x] = [value, 0.0, 0.0, 0.0]
    return fm


def test_a_flat_map_or_an_object_filling_the_frame_gives_no_box():
    assert object_box(np.ones((GRID, GRID, 4))) is None
    # 5 x 5 strong cells: with the margin the square is the whole frame.
    assert object_box(feature_map([(y, x) for y in range(1, 6) for x in range(1, 6)])) is None


def test_one_strong_cell_gives_a_square_around_it_with_the_margin():
    left, top, side = object_box(feature_map([(2, 4)]))
    cells = 1 + 2 * MARGIN
    assert side == pytest.approx(cells / GRID)
    assert side**2 < MAX_AREA
    # Centred on the cell's centre (4.5, 2.5), in fractions of the frame.
    assert left + side / 2 == pytest.approx(4.5 / GRID)
    assert top + side / 2 == pytest.approx(2.5 / GRID)


def test_the_box_stays_inside_the_frame_and_follows_the_strongest_object():
    # A strong cell in the corner and a weaker one elsewhere: the box is the strong one's.
    fm = feature_map([(0, 0)], value=9.0)
    fm[5, 5] = [6.0, 0, 0, 0]
    left, top, side = object_box(fm)
    assert (left, top) == (0.0, 0.0)
    assert side == pytest.approx((1 + 2 * MARGIN) / GRID)


def test_a_wide_object_gets_a_square_as_wide_as_it():
    left, top, side = object_box(feature_map([(3, 1), (3, 2), (3, 3)]))
    assert side == pytest.approx((3 + 2 * MARGIN) / GRID)
    assert left + side / 2 == pytest.approx(2.5 / GRID)
