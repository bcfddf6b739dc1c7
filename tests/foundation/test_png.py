"""cxr_platform.png: how generated radiographs are stored."""

import io

import numpy as np
import pytest
from PIL import Image

from cxr_platform.png import encode_gray_png, picture_to_png


def _decoded(data: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(data))
    picture.load()
    return picture


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (64, 64), (33, 100)])
def test_any_reader_gets_the_exact_pixels_back(shape):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    picture = _decoded(encode_gray_png(pixels))
    assert picture.format == "PNG" and picture.mode == "L" and picture.size == (shape[1], shape[0])
    assert np.array_equal(np.asarray(picture), pixels)


def test_a_radiograph_is_stored_about_as_small_as_pillow_stores_it(cxr_public_dir):
    source = sorted((cxr_public_dir / "images").glob("*.png"))[0]
    with Image.open(source) as picture:
        radiograph = picture.convert("L").resize((512, 512))
    ours = picture_to_png(radiograph)
    pillows = io.BytesIO()
    radiograph.save(pillows, format="PNG")
    assert np.array_equal(np.asarray(_decoded(ours)), np.asarray(radiograph))
    assert len(ours) < 1.15 * len(pillows.getvalue())


def test_colour_pictures_are_stored_as_grayscale():
    picture = Image.new("RGB", (8, 4), (200, 100, 50))
    assert np.array_equal(np.asarray(_decoded(picture_to_png(picture))), np.asarray(picture.convert("L")))


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint16), np.zeros((0, 4), np.uint8)])
def test_refuses_what_is_not_an_8_bit_grayscale_image(bad):
    with pytest.raises(ValueError, match="2-D uint8"):
        encode_gray_png(bad)
