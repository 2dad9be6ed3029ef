"""models/preprocess.py on real photos re-encoded with Pillow: decode, EXIF, modes, limits, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models.preprocess import (
    DETAIL,
    ImageError,
    crop_input,
    empty_scene_photos,
    model_inputs,
    open_image,
    preprocess_image,
    preprocess_photo,
    to_model_input,
)
from tests.support import encode, fixture_photos, png_declaring


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(fixture_photos("Test", "Banana")[0]).convert("RGB")


def pixels(data: bytes, **kw) -> np.ndarray:
    return np.asarray(open_image(data, **kw), dtype=np.int16)


@pytest.mark.parametrize(
    ("orientation", "stored_by"),
    [
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_90),
        (8, Image.Transpose.ROTATE_270),
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_exif_orientation_gives_the_upright_photo(photo, orientation, stored_by):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(photo.transpose(stored_by), "PNG", exif=exif)
    assert np.array_equal(pixels(data), np.asarray(photo, dtype=np.int16))


def test_lossless_formats_decode_to_the_same_pixels(photo):
    expected = np.asarray(photo, dtype=np.int16)
    for fmt, kw in [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("WEBP", {"lossless": True}),
    ]:
        assert np.array_equal(pixels(encode(photo, fmt, **kw)), expected), fmt


def test_modes_are_converted_to_rgb(photo):
    grey = photo.convert("L")
    sixteen = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)  # I;16, full range
    grey_rgb = np.asarray(grey.convert("RGB"), dtype=np.int16)
    assert open_image(encode(sixteen, "PNG")).mode == "RGB"
    assert np.abs(pixels(encode(sixteen, "PNG")) - grey_rgb).max() <= 1
    assert np.array_equal(pixels(encode(grey, "PNG")), grey_rgb)
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE)
    assert np.array_equal(pixels(encode(palette, "PNG")), np.asarray(palette.convert("RGB"), dtype=np.int16))
    cmyk = pixels(encode(photo.convert("CMYK"), "JPEG", quality=95))
    rgb = pixels(encode(photo, "JPEG", quality=95))
    assert np.abs(cmyk - rgb).mean() < 6  # both lossy, same photo


def test_transparent_pixels_become_white_whatever_their_colour():
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red everywhere, but...
    rgba[:5, :, 3] = 0  # ...the top half fully transparent
    rgba[5:, :, 3] = 255
    out = pixels(encode(Image.fromarray(rgba), "PNG"))
    assert (out[:5] == 255).all()
    assert (out[5:] == [200, 0, 0]).all()
    la = Image.fromarray(rgba[..., [0, 3]].copy(), "LA")
    out = pixels(encode(la, "PNG"))
    assert (out[:5] == 255).all() and (out[5:] == 200).all()


def test_animated_gif_first_frame():
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    buf = io.BytesIO()
    red.save(buf, "GIF", save_all=True, append_images=[blue], duration=50)
    assert (pixels(buf.getvalue()) == [255, 0, 0]).all()


def test_model_input_pads_to_a_white_square_then_resizes():
    wide = Image.new("RGB", (40, 20), (0, 0, 0))
    out = to_model_input(wide, 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.float32
    assert (out[0] == 255).all() and (out[-1] == 255).all()  # padding rows are white
    assert (out[3:5] == 0).all()  # the black band stays in the middle


def test_the_photo_keeps_its_decoded_pixels_and_the_model_input_is_its_padded_square():
    img = Image.new("RGB", (30, 10), (0, 0, 0))
    img.paste((200, 100, 50), (0, 0, 15, 10))
    photo = preprocess_photo(encode(img, "PNG"), 8)
    assert 2 * DETAIL * 8 > 30 and photo.image.size == (30, 10)  # small: kept as decoded
    assert photo.square == (0.0, -10.0, 30.0)  # centred: 10 rows of white above, 10 below
    assert photo.input.shape == (8, 8, 3) and photo.input.dtype == np.uint8
    assert (photo.input[:2] == 255).all() and (photo.input[-2:] == 255).all()
    assert (photo.input[4, 0] == (200, 100, 50)).all() and (photo.input[4, -1] == 0).all()
    inputs = model_inputs([photo, photo])
    assert inputs.shape == (2, 8, 8, 3) and inputs.dtype == np.float32
    np.testing.assert_array_equal(inputs[1], photo.input)
    np.testing.assert_array_equal(preprocess_image(encode(img, "PNG"), 8), photo.input)


def test_a_big_photo_is_reduced_by_a_whole_factor_to_the_detail_a_crop_uses():
    img = Image.new("RGB", (96, 48), (0, 0, 0))
    img.paste((250, 0, 0), (0, 0, 48, 48))
    photo = preprocess_photo(encode(img, "PNG"), 8)  # 96 // (DETAIL x 8) = 6: reduced 6x
    assert 96 // (DETAIL * 8) == 6 and photo.image.size == (16, 8)
    assert photo.square == (0.0, -4.0, 16.0)
    np.testing.assert_array_equal(np.asarray(photo.image)[:, :8], np.full((8, 8, 3), (250, 0, 0)))


def test_a_crop_is_cut_from_the_photo_at_its_detail_and_white_beyond_it():
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    img.paste((10, 200, 10), (0, 10, 10, 20))  # a green patch in the photo's lower-left corner
    photo = preprocess_photo(encode(img, "PNG"), 8)  # square: left 0, top -10, side 40
    crop = crop_input(photo, (0.0, 0.5, 0.25), 8)  # left 0, top 10 px, side 10 px of the photo
    assert crop.shape == (8, 8, 3) and crop.dtype == np.float32
    assert np.abs(crop[1:-1, 1:-1] - (10, 200, 10)).max() <= 1  # the patch fills the crop
    assert (crop[..., 0] < 128).all()  # the rim blends a little of the white beyond it
    outside = crop_input(photo, (0.5, 0.0, 0.25), 8)  # above the photo: the square's padding
    assert (outside == 255).all()


def test_empty_scenes_are_flat_backdrops():
    scenes = empty_scene_photos(16)
    assert len(scenes) == 27 and all(s.input.shape == (16, 16, 3) for s in scenes)
    assert any((s.input == 255).all() for s in scenes)  # the white Fruits-360 backdrop
    assert all((s.input == s.input[0, 0]).all() for s in scenes)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"plain text, not a photo", "not_an_image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not_an_image"),
        (png_declaring(100_000, 100_000), "image_too_large"),  # Pillow's own bomb guard
        (png_declaring(9_000, 9_000), "image_too_large"),  # under Pillow's, over ours (64 Mpx)
    ],
)
def test_bad_bytes_raise_image_error_with_a_stable_code(data, code):
    with pytest.raises(ImageError) as err:
        open_image(data)
    assert err.value.code == code


def test_pixel_limit_is_checked_before_decoding(photo):
    data = encode(photo, "PNG")  # 100 x 100
    assert open_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageError) as err:
        open_image(data, max_pixels=9_999)
    assert err.value.code == "image_too_large"


def test_truncated_and_unsupported_files(photo):
    jpeg = encode(photo, "JPEG")
    with pytest.raises(ImageError) as err:
        open_image(jpeg[: len(jpeg) // 2])
    assert err.value.code == "corrupt_image"
    with pytest.raises(ImageError) as err:
        open_image(encode(photo, "ICO"))
    assert err.value.code == "unsupported_format"


def test_unconvertible_mode_is_an_image_error_not_a_crash(photo):
    lab = photo.convert("LAB")
    data = encode(lab, "TIFF")
    try:
        out = open_image(data)
    except ImageError as exc:
        assert exc.code == "unsupported_format"
    else:
        assert out.mode == "RGB"


def test_large_jpeg_is_decoded_reduced_and_matches_the_model_input_size(photo):
    big = encode(photo.resize((4000, 3000)), "JPEG", quality=80)
    assert open_image(big, min_side=224).size[0] < 4000  # JPEG draft mode: decoded smaller
    out = preprocess_image(big, 224)
    assert out.shape == (224, 224, 3)
