"""The robustness benchmark's phone-photo conditions: seeded, decodable, and each one what it claims."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from benchmarks.scenes import CONDITIONS, SCENE_SIZE, make_variant
from tests.support import fixture_photos

NEW_SMALL = ["angle", "gamma", "vivid", "cut_by_frame"]  # the 100 px Test frame, changed
NEW_SCENES = ["hand", "phone_shot", "two_fruits"]  # an 800x600 phone frame


def photo(label: str) -> Image.Image:
    return Image.open(fixture_photos("Test", label)[0]).convert("RGB")


def decoded(blob: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"), dtype=np.float32)


def fruit_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels clearly away from the studio white."""
    return (255 - rgb).max(-1) > 40


def extent(mask: np.ndarray) -> np.ndarray:
    """The (width, height) of the mask's bounding box."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()])


def skin_toned(rgb: np.ndarray) -> np.ndarray:
    """The classic YCbCr skin box (Chai & Ngan 1999): Cb in 77..127 and Cr in 133..173."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return (cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)


@pytest.mark.parametrize("name", NEW_SMALL + NEW_SCENES)
def test_new_condition_is_seeded_and_a_sensible_jpeg(name):
    kiwi, cherry = photo("Kiwi"), photo("Cherry 1")
    blob = make_variant(name, kiwi, 3, cherry)
    assert blob == make_variant(name, kiwi, 3, cherry)
    assert blob != make_variant(name, kiwi, 4, cherry)
    img = Image.open(io.BytesIO(blob))
    assert img.format == "JPEG"
    img.load()
    if name in NEW_SCENES:
        assert img.size == SCENE_SIZE and 10_000 < len(blob) < 400_000
    else:
        assert img.size == kiwi.size and 1_000 < len(blob) < 30_000
    assert CONDITIONS[name][0] and "\n" not in CONDITIONS[name][0]


def test_gamma_is_a_curve_either_side_of_one_that_keeps_white():
    banana = photo("Banana")
    rgb = np.asarray(banana, dtype=np.float32)
    mid = fruit_mask(rgb) & (rgb.mean(-1) > 40) & (rgb.mean(-1) < 200)
    gammas = []
    for seed in range(10):
        out = decoded(make_variant("gamma", banana, seed, banana))
        # out = 255 (in / 255) ** gamma, so gamma = log(out / 255) / log(in / 255) pixel by pixel.
        gammas.append(float(np.median(np.log(np.clip(out[mid], 1, 254) / 255) / np.log(rgb[mid] / 255))))
        assert out[~fruit_mask(rgb)].mean() > 250  # unlike brightness, the white stays white
    assert all(0.55 < g < 0.8 or 1.3 < g < 1.7 for g in gammas), gammas
    assert min(gammas) < 0.8 and max(gammas) > 1.3  # brighter and darker both occur


def test_vivid_raises_the_fruits_saturation():
    for label in ("Kiwi", "Banana", "Apple Red 1"):
        before = photo(label)
        mask = fruit_mask(np.asarray(before, dtype=np.float32))
        after = Image.open(io.BytesIO(make_variant("vivid", before, 0, before)))
        saturation = [np.asarray(img.convert("HSV"))[..., 1][mask].mean() for img in (before, after)]
        assert saturation[1] > 1.1 * saturation[0], (label, saturation)


@pytest.mark.parametrize("seed", range(4))
def test_angle_squashes_the_fruit_along_one_axis(seed):
    kiwi = photo("Kiwi")
    before = extent(fruit_mask(np.asarray(kiwi, dtype=np.float32)))
    after = extent(fruit_mask(decoded(make_variant("angle", kiwi, seed, kiwi))))
    squashed, kept = sorted(after / before)
    assert squashed == pytest.approx(0.725, abs=0.1)  # 65-80% on one axis
    assert kept == pytest.approx(1.0, abs=0.04)


@pytest.mark.parametrize("seed", range(4))
def test_cut_by_frame_loses_a_quarter_to_two_fifths_of_the_fruit_at_one_edge(seed):
    kiwi = photo("Kiwi")
    whole = fruit_mask(np.asarray(kiwi, dtype=np.float32))
    width, height = extent(whole)
    cut = fruit_mask(decoded(make_variant("cut_by_frame", kiwi, seed, kiwi)))
    shorter, kept = sorted(extent(cut) / (width, height))
    assert 0.55 < shorter < 0.8 and kept > 0.95
    # The frame cuts across the fruit: a long chord of fruit pixels along one edge.
    chords = [cut[[0, -1]].sum(1) / width, cut[:, [0, -1]].sum(0) / height]
    assert np.concatenate(chords).max() > 0.4
    assert cut.sum() < 0.85 * whole.sum()


@pytest.mark.parametrize("seed", range(6))
def test_hand_enters_from_the_bottom_edge_in_skin_tones(seed):
    banana = photo("Banana")  # yellow: hardly skin-toned itself
    out = decoded(make_variant("hand", banana, seed, banana))
    skin = skin_toned(out)
    assert skin[-1].mean() > 0.15  # the wrist and fingers cross the bottom edge
    assert skin[: SCENE_SIZE[1] // 10].mean() < 0.02  # the wall or room above is not skin


@pytest.mark.parametrize("seed", range(6))
def test_two_fruits_are_two_separate_blobs_the_test_fruit_the_larger(seed):
    banana, cherry = photo("Banana"), photo("Cherry 1")
    out = decoded(make_variant("two_fruits", banana, seed, cherry))
    labels, count = ndimage.label(ndimage.binary_opening(fruit_mask(out), iterations=2))
    sizes = np.bincount(labels.ravel())[1:]
    blobs = [i + 1 for i in np.flatnonzero(sizes > 0.005 * labels.size)]
    assert len(blobs) == 2
    # Which blob is the banana: the one whose mean colour is nearer the banana photo's fruit.
    ref = np.asarray(banana, dtype=np.float32)[fruit_mask(np.asarray(banana, dtype=np.float32))].mean(0)
    dist = [np.linalg.norm(out[labels == i].mean(0) - ref) for i in blobs]
    main, other = (blobs[0], blobs[1]) if dist[0] < dist[1] else (blobs[1], blobs[0])
    width = SCENE_SIZE[0]
    assert 0.3 * width < extent(labels == main).max() < 0.56 * width
    assert 0.15 * width < extent(labels == other).max() < 0.31 * width


@pytest.mark.parametrize("seed", range(4))
def test_phone_shot_is_a_low_quality_jpeg_of_a_surface(seed):
    kiwi = photo("Kiwi")
    blob = make_variant("phone_shot", kiwi, seed, kiwi)
    img = Image.open(io.BytesIO(blob))
    # libjpeg scales the luminance table's first entry (16) by (200 - 2q) / 100: 13 at q60, 6 at q80.
    assert 5 <= img.quantization[0][0] <= 14
    out = np.asarray(img.convert("RGB"), dtype=np.float32)
    assert fruit_mask(out).mean() > 0.98  # a surface fills the frame, no studio white
