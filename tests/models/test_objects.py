"""The object finder and object framing on synthetic scenes whose fruit box is known exactly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter
from scipy import ndimage

from models import objects
from models.objects import close, dilate, find_object, largest_region, open_, white_balance_gains
from models.preprocess import frame_object, open_image, to_model_input
from tests.support import encode, fixture_photos

W, H = 128, 96  # a thumbnail-sized scene: find_object's own resolution


def scene(backdrop: Image.Image, box: tuple[int, int, int, int], colour=(200, 30, 40)) -> Image.Image:
    """An ellipse (a fruit) filling `box` = (left, top, right, bottom), exclusive, on a backdrop."""
    img = backdrop.copy()
    left, top, right, bottom = box
    ImageDraw.Draw(img).ellipse((left, top, right - 1, bottom - 1), fill=colour)
    return img


def stripes(w=W, h=H, period=6) -> Image.Image:
    """Wood-like stripes of two browns."""
    x = np.arange(w)[None, :, None]
    dark, light = np.array([100, 65, 35]), np.array([165, 120, 70])
    arr = np.where((x // (period // 2)) % 2 == 0, dark, light) * np.ones((h, 1, 1))
    return Image.fromarray(arr.astype(np.uint8))


def found_box(img: Image.Image):
    found = find_object(np.asarray(img, dtype=np.float32))
    return None if found is None else found.box


@pytest.mark.parametrize(
    ("name", "backdrop"),
    [
        ("white page", Image.new("RGB", (W, H), (255, 255, 255))),
        ("coloured paper", Image.new("RGB", (W, H), (60, 110, 190))),
        ("grey table", Image.new("RGB", (W, H), (120, 120, 118))),
        ("wood stripes", stripes()),
    ],
)
@pytest.mark.parametrize("box", [(70, 20, 110, 62), (8, 50, 38, 88), (40, 30, 64, 54)])
def test_the_box_found_matches_the_fruit_within_two_pixels(name, backdrop, box):
    got = found_box(scene(backdrop, box))
    assert got is not None, name
    assert np.abs(np.subtract(got, box)).max() <= 2, (name, got, box)


def test_a_cast_shadow_is_not_part_of_the_fruit():
    page = Image.new("RGB", (W, H), (255, 255, 255))
    shadow = Image.new("L", (W, H), 0)
    ImageDraw.Draw(shadow).ellipse((52, 38, 100, 86), fill=255)  # offset down-right
    shadow = shadow.filter(ImageFilter.GaussianBlur(4))
    arr = np.asarray(page, dtype=np.float32) * (
        1 - 0.45 * np.asarray(shadow, dtype=np.float32)[..., None] / 255
    )
    img = scene(Image.fromarray(arr.astype(np.uint8)), (40, 26, 80, 66), colour=(230, 190, 40))
    assert np.abs(np.subtract(found_box(img), (40, 26, 80, 66))).max() <= 2


@pytest.mark.parametrize(
    ("cloth", "fruit"),
    [((190, 40, 40), (105, 22, 22)), ((70, 150, 60), (30, 64, 26))],
    ids=["dark red apple on red cloth", "avocado on green cloth"],
)
def test_a_fruit_of_a_coloured_backdrops_hue_is_not_taken_for_its_shadow(cloth, fruit):
    """The fruit is the cloth's colour, only darker (as a shadow would be): on a coloured
    backdrop that is a fruit, found whole."""
    box = (40, 26, 80, 66)
    got = found_box(scene(Image.new("RGB", (W, H), cloth), box, colour=fruit))
    assert got is not None and np.abs(np.subtract(got, box)).max() <= 2, got


def test_a_fruit_touching_the_edges_is_still_found_whole():
    box = (4, 0, 124, 96)  # fills the frame, touching top and bottom, as Fruits-360 photos do
    got = found_box(scene(Image.new("RGB", (W, H), (255, 255, 255)), box))
    assert np.abs(np.subtract(got, box)).max() <= 2


@pytest.mark.parametrize(
    "img",
    [
        Image.new("RGB", (W, H), (255, 255, 255)),
        Image.new("RGB", (W, H), (30, 160, 60)),
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)),
        stripes(),
    ],
    ids=["blank page", "flat colour", "noise", "bare wood"],
)
def test_no_object_in_an_empty_scene(img):
    assert found_box(img) is None


def test_white_balance_only_for_a_plain_near_neutral_backdrop():
    grey_page = scene(Image.new("RGB", (W, H), (150, 150, 150)), (40, 30, 80, 70))
    np.testing.assert_allclose(
        white_balance_gains(np.asarray(grey_page, dtype=np.float32)), 255 / 150, rtol=1e-3
    )
    warm_page = scene(Image.new("RGB", (W, H), (250, 225, 200)), (40, 30, 80, 70))
    gains = white_balance_gains(np.asarray(warm_page, dtype=np.float32))
    np.testing.assert_allclose(gains, [255 / 250, 255 / 225, 255 / 200], rtol=1e-3)
    blue_paper = scene(Image.new("RGB", (W, H), (60, 110, 190)), (40, 30, 80, 70))
    assert white_balance_gains(np.asarray(blue_paper, dtype=np.float32)) is None
    assert white_balance_gains(np.asarray(stripes(), dtype=np.float32)) is None


@pytest.fixture(scope="module")
def studio() -> Image.Image:
    """A real Fruits-360 photo: one fruit filling a 100 px frame on white."""
    return Image.open(fixture_photos("Test", "Banana")[0]).convert("RGB")


def test_a_small_off_centre_fruit_reaches_the_model_framed_like_the_studio_photo(studio):
    reference = to_model_input(studio, 64)
    for left, top, side in [(30, 40, 180), (560, 300, 220), (250, 100, 300)]:
        page = Image.new("RGB", (800, 600), (255, 255, 255))
        page.paste(studio.resize((side, side), Image.Resampling.BICUBIC), (left, top))
        framed = to_model_input(open_image(encode(page, "JPEG", quality=92)), 64)
        assert np.abs(framed - reference).mean() < 6, (left, top, side)
        # Without framing (the whole page, padded) the fruit would be a small dot: far off.
        padded = np.asarray(page.resize((64, 48)), dtype=np.float32)
        assert np.abs(padded - reference[:48]).mean() > 25


def test_dim_light_on_a_white_page_is_undone(studio):
    dim = Image.fromarray((np.asarray(studio, dtype=np.float32) * 0.65).astype(np.uint8))
    framing = frame_object(dim)
    assert framing.gains is not None
    assert np.abs(to_model_input(dim, 64) - to_model_input(studio, 64)).mean() < 6


def test_dim_light_is_not_taken_for_a_veil(studio):
    """Dim light keeps the fruit's darkness. A page this dark (x0.65: gains of 1.5) is dim
    light, never a veil. Under milder dim light (x0.8: gains of 1.25) this pale fruit (its
    darkest parts short of the darkness a veil's share is read against) reads as a trace of a
    veil, far less than a photo washed out by a quarter."""
    dim = Image.fromarray((np.asarray(studio, dtype=np.float32) * 0.65).astype(np.uint8))
    assert frame_object(dim).veil == 1.0
    slightly_dim = Image.fromarray((np.asarray(studio, dtype=np.float32) * 0.8).astype(np.uint8))
    washed_out = ImageEnhance.Contrast(studio).enhance(0.75)
    assert frame_object(washed_out).veil < frame_object(slightly_dim).veil - 0.1
    assert frame_object(studio).veil == 1.0  # a white page: never read for a veil


@pytest.mark.parametrize("factor", [0.6, 0.75])
def test_a_veiled_photo_gets_its_dark_tones_back(studio, factor, monkeypatch):
    """A washed-out photo (every tone pulled towards the mean grey, as PIL's contrast does):
    the page comes out grey and the fruit's darkest parts are no longer dark."""
    veiled = ImageEnhance.Contrast(studio).enhance(factor)
    framing = frame_object(veiled)
    assert framing.veil == pytest.approx(factor, abs=0.1)
    reference = to_model_input(studio, 64)
    lifted = np.abs(to_model_input(veiled, 64) - reference).mean()
    monkeypatch.setattr(objects, "VEIL_MIN_GAIN", np.inf)  # white balance alone
    balanced_only = np.abs(to_model_input(veiled, 64) - reference).mean()
    assert lifted < 6 < balanced_only, (lifted, balanced_only)


def test_framing_keeps_the_old_path_when_nothing_stands_out():
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8))
    framing = frame_object(noise)
    assert framing.found is None
    assert framing.square == (0.0, -15.0, 90.0)  # padded to a square, centred


def noise_backdrop(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(60, 200, (H, W, 3)).astype(np.uint8))


@pytest.mark.parametrize("box", [(70, 20, 110, 62), (8, 40, 48, 88), (40, 30, 70, 64)])
def test_grabcut_refines_the_fruit_on_a_texture(box, monkeypatch):
    """A fruit whose lower third has a colour the noisy backdrop also has: the colour-distance
    mask alone frays there; GrabCut, seeded by it, follows the fruit's outline."""
    img = noise_backdrop()
    truth = Image.new("1", (W, H), 0)
    left, top, right, bottom = box
    ImageDraw.Draw(img).ellipse((left, top, right - 1, bottom - 1), fill=(200, 30, 40))
    ImageDraw.Draw(truth).ellipse((left, top, right - 1, bottom - 1), fill=1)
    rgb, fruit = np.asarray(img, dtype=np.float32).copy(), np.asarray(truth)
    lower = np.zeros_like(fruit)
    lower[top + 2 * (bottom - top) // 3 :] = True
    rgb[fruit & lower] = (100, 65, 35)

    def iou(iterations: int) -> float:
        monkeypatch.setattr("models.objects.GRABCUT_ITERATIONS", iterations)
        mask = find_object(rgb).mask
        return float((mask & fruit).sum() / (mask | fruit).sum())

    rough, refined = iou(0), iou(3)
    assert refined > rough + 0.01, (rough, refined)
    assert refined >= 0.97, refined


def busy_backdrop(seed: int = 0) -> Image.Image:
    """A grainy surface of every colour (a patterned cloth): each channel uniform in 0..255."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3)).astype(np.uint8))


@pytest.mark.parametrize("box", [(70, 20, 110, 62), (8, 40, 48, 88), (40, 30, 70, 64)])
def test_a_smooth_fruit_on_a_busy_backdrop_of_its_colours_is_found(box, monkeypatch):
    """The backdrop shows every colour, the fruit's too, so colour alone cannot tell them apart;
    the fruit is smooth where the backdrop is grainy, and that finds it."""
    img = scene(busy_backdrop(), box, colour=(150, 120, 90))
    assert found_box(img) is not None
    assert np.abs(np.subtract(found_box(img), box)).max() <= 2, (found_box(img), box)
    monkeypatch.setattr("models.objects.TEXTURE_WEIGHT", 0.0)  # colour alone
    alone = found_box(img)
    assert alone is None or np.abs(np.subtract(alone, box)).max() > 2, alone


@pytest.mark.parametrize("box", [(60, 22, 100, 62), (10, 40, 50, 80)])
def test_a_sharp_fruit_on_a_blurred_close_up_of_its_colour_is_found(box):
    """A phone's shallow focus: the backdrop is a blurred close-up of a fruit of the same
    colour; the sharp fruit is still found."""
    apple = Image.open(fixture_photos("Test", "Apple Red 1")[0]).convert("RGB")
    backdrop = apple.crop((30, 30, 70, 60)).resize((W, H)).filter(ImageFilter.GaussianBlur(4))
    fruit = apple.resize((box[2] - box[0], box[3] - box[1]))
    img = backdrop.copy()
    img.paste(fruit, box[:2], Image.fromarray(((np.asarray(fruit).min(-1) < 235) * 255).astype(np.uint8)))
    got = found_box(img)
    assert got is not None
    assert np.abs(np.subtract(got, box)).max() <= 3, (got, box)


def mottled(seed: int) -> np.ndarray:
    """A mottled surface of every colour, thumbnail-sized: 12 x 16 random colour blotches, grain."""
    rng = np.random.default_rng(seed)
    blotches = Image.fromarray(rng.integers(40, 230, (12, 16, 3)).astype(np.uint8))
    smooth = np.asarray(blotches.resize((W, H), Image.Resampling.BICUBIC), dtype=np.float32)
    return np.clip(smooth + rng.normal(0, 8, (H, W, 3)), 0, 255)


@pytest.mark.parametrize("box", [(70, 20, 110, 62), (8, 40, 48, 88)])
def test_the_shaded_half_of_a_fruit_on_a_mottled_surface_is_found_too(box, monkeypatch):
    """Lit from the left, the fruit's right half is dark in colours the surface also has: the
    colour mask and GrabCut keep only the lit half. The watershed grows it to the outline."""
    left, top, right, bottom = box
    truth = Image.new("1", (W, H), 0)
    ImageDraw.Draw(truth).ellipse((left, top, right - 1, bottom - 1), fill=1)
    fruit = np.asarray(truth)
    across = np.clip((np.arange(W) - left) / (right - left), 0, 1)[None, :, None]
    shading = np.array([230, 90, 70]) * (1 - across) + np.array([70, 30, 30]) * across
    rgb = np.where(fruit[..., None], shading, mottled(1)).astype(np.float32)

    def iou() -> float:
        found = find_object(rgb)
        return 0.0 if found is None else float((found.mask & fruit).sum() / (found.mask | fruit).sum())

    assert iou() >= 0.97
    assert np.abs(np.subtract(find_object(rgb).box, box)).max() <= 2
    monkeypatch.setattr("models.objects.grow_by_watershed", lambda rgb, mask: mask)
    assert iou() < 0.5  # the half-moon the watershed mends


@pytest.mark.parametrize("box", [(20, 60, 100, 140), (140, 40, 236, 136)])
def test_on_a_backdrop_out_of_focus_the_fruit_is_what_is_in_focus(box):
    """A sharp red apple before a blurred close-up of a red apple (a phone's shallow focus): one
    colour, so the colour mask merges them; the fine detail of the photo at twice the
    thumbnail's side finds the sharp apple alone."""
    apple = Image.open(fixture_photos("Test", "Apple Red 1")[0]).convert("RGB")
    w, h = apple.size
    close_up = apple.crop((w // 10, h // 10, w - w // 10, h - h // 10))
    photo = close_up.resize((2 * W, 2 * H), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(6))
    fruit = apple.resize((box[2] - box[0], box[3] - box[1]))
    alpha = Image.fromarray(((np.asarray(fruit).min(-1) < 235) * 255).astype(np.uint8))
    photo.paste(fruit, box[:2], alpha)
    truth = Image.new("L", photo.size, 0)
    truth.paste(alpha, box[:2])
    expected = np.array(truth.getbbox()) / 2  # thumbnail pixels
    framing = frame_object(photo)
    assert framing.found is not None
    assert np.abs(np.subtract(framing.found.box, expected)).max() <= 2, framing.found.box
    thumb = photo.copy()
    thumb.thumbnail((W, W), Image.Resampling.BOX)
    colours_only = find_object(np.asarray(thumb, dtype=np.float32))
    assert colours_only is None or np.abs(np.subtract(colours_only.box, expected)).max() > 10


def test_a_backdrop_other_than_white_is_plain_only_when_most_of_its_border_is_one_colour():
    """70% of the border one red, the rest a blurred other red (a close-up out of focus): one
    colour would call the rest foreground, so it is learnt as a texture; with one small patch
    of another colour, it is plain."""
    from models.objects import plain_backdrop

    arr = np.zeros((H, W, 3), dtype=np.float32) + (150, 30, 35)
    arr[:, int(0.7 * W) :] = (90, 15, 25)
    rgb = np.asarray(
        Image.fromarray(arr.astype(np.uint8)).filter(ImageFilter.GaussianBlur(2)), dtype=np.float32
    )
    assert plain_backdrop(rgb) is None
    mostly = np.zeros((H, W, 3), dtype=np.float32) + (150, 30, 35)
    mostly[-25:, -25:] = (90, 15, 25)  # a corner
    assert plain_backdrop(mostly) is not None


@pytest.mark.parametrize(("name", "limit"), [("Apple Red 1", 6), ("Cherry 1", 6), ("Kiwi", 6)])
def test_a_fruit_turned_by_any_angle_reaches_the_model_at_one_angle(name, limit, monkeypatch):
    """A round fruit (its darker side turned down) and a symmetric oval one (its darker end
    down): turned by any angle, the model input matches the unturned photo's; without the
    canonical turn it would not."""
    photo = Image.open(fixture_photos("Test", name)[0]).convert("RGB")
    reference = to_model_input(photo, 64)
    for angle in (35, 120, 200, 290):
        turned = photo.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
        assert np.abs(to_model_input(turned, 64) - reference).mean() < limit, angle
    monkeypatch.setattr("models.preprocess.SHADING_OFFSET", np.inf)  # no darker side: no turn
    off = [
        np.abs(
            to_model_input(photo.rotate(a, Image.Resampling.BICUBIC, expand=True, fillcolor="white"), 64)
            - reference
        ).mean()
        for a in (35, 120, 200, 290)
    ]
    assert max(off) > 2 * limit, off


def test_a_brighter_photo_reaches_the_model_half_as_much_brighter(studio):
    """x1.3 light on a white page (the page stays white, so white balance cannot see it): the
    fruit reaches the model about x sqrt(1.3) as bright, not x1.3."""
    bright = Image.fromarray(np.clip(np.asarray(studio, dtype=np.float32) * 1.3, 0, 255).astype(np.uint8))
    gains = frame_object(bright).gains
    assert gains is None or np.allclose(gains, 1.0, atol=0.01), gains

    def fruit_level(img: Image.Image) -> float:
        rgb = to_model_input(img, 64)
        return float(rgb[rgb.min(-1) < 200].mean())

    ratio = fruit_level(bright) / fruit_level(studio)
    assert 1.05 < ratio < 1.2, ratio  # sqrt(1.3) = 1.14; clipping at white keeps it a little lower


def test_largest_region_fills_holes_as_scipy_does():
    """Random blobs (holes, regions touching the edge, one-pixel gaps): the largest region
    with its holes filled equals ndimage.binary_fill_holes of that region."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        shape = tuple(int(v) for v in rng.integers(8, 120, size=2))
        mask = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.5, 3)) > rng.uniform(0.45, 0.55)
        labels, count = ndimage.label(mask)
        if count == 0:
            assert not largest_region(mask).any()
            continue
        biggest = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
        np.testing.assert_array_equal(largest_region(mask), ndimage.binary_fill_holes(biggest))


def test_largest_region_of_a_tie_is_the_first_in_raster_order():
    mask = np.zeros((40, 50), dtype=bool)
    mask[25:30, 5:10] = True  # lower, further left
    mask[3:8, 30:35] = True  # the same size, met first scanning rows
    np.testing.assert_array_equal(largest_region(mask), mask & (np.arange(40) < 20)[:, None])
    # A strided view (not contiguous) is read as the mask it shows.
    np.testing.assert_array_equal(largest_region(mask[::1, ::-1]), largest_region(mask[:, ::-1].copy()))


def test_morphology_equals_scipy_ndimage():
    """OpenCV's dilation, opening and closing give ndimage's masks, edges included."""
    rng = np.random.default_rng(1)
    for _ in range(150):
        shape = tuple(int(v) for v in rng.integers(6, 150, size=2))
        mask = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.3, 2)) > rng.uniform(0.4, 0.6)
        reach = int(rng.integers(1, 6))
        np.testing.assert_array_equal(dilate(mask, reach), ndimage.binary_dilation(mask, iterations=reach))
        for side in (2, 3):
            square = np.ones((side, side))
            np.testing.assert_array_equal(open_(mask, side), ndimage.binary_opening(mask, structure=square))
            np.testing.assert_array_equal(
                close(mask, side), ndimage.binary_closing(mask, structure=square, border_value=0)
            )
