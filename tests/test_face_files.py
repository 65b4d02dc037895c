"""Image files: channel order, odd formats and broken files; atomic writes."""
import os

import cv2
import numpy as np
import pytest

from metaf2n_plugin.atomic_write import write_json
from metaf2n_plugin.image_io import read_image, write_image
from tolerances import rounding_bound


def test_read_image_returns_rgb_float(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255  # red, in OpenCV's order
    cv2.imwrite(str(tmp_path / 'red.png'), bgr)
    image = read_image(tmp_path / 'red.png')
    assert image.shape == (4, 5, 3) and image.dtype == np.float32
    assert image[0, 0].tolist() == [1.0, 0.0, 0.0]


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    cv2.imwrite(str(tmp_path / 'gray.png'), np.full((3, 3), 51, np.uint8))
    assert read_image(tmp_path / 'gray.png')[1, 1].tolist() == pytest.approx([0.2] * 3)


def test_alpha_is_dropped_and_the_colour_kept(tmp_path):
    bgra = np.zeros((3, 3, 4), np.uint8)
    bgra[..., 1], bgra[..., 3] = 200, 0  # green, fully transparent
    cv2.imwrite(str(tmp_path / 'rgba.png'), bgra)
    assert read_image(tmp_path / 'rgba.png')[0, 0].tolist() == pytest.approx([0, 200 / 255, 0])


def test_16_bit_is_reduced_to_8_bits(tmp_path):
    cv2.imwrite(str(tmp_path / 'deep.png'), np.full((3, 3, 3), 51 * 257 + 100, np.uint16))
    assert read_image(tmp_path / 'deep.png')[0, 0].tolist() == pytest.approx([0.2] * 3)


@pytest.mark.parametrize('content, message', [(b'', r'the file is empty \(0 bytes\)'),
                                              (b'\x89PNG\r\n\x1a\n broken', 'OpenCV cannot decode it')])
def test_broken_files_are_named(tmp_path, content, message):
    (tmp_path / 'bad.png').write_bytes(content)
    with pytest.raises(ValueError, match=f"cannot read image '.*bad.png': {message}"):
        read_image(tmp_path / 'bad.png')
    with pytest.raises(FileNotFoundError, match="image '.*none.png' does not exist"):
        read_image(tmp_path / 'none.png')


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path):
    image = np.random.default_rng(0).random((6, 7, 3)).astype(np.float32)
    write_image(tmp_path / 'a.png', image)
    write_image(tmp_path / 'm.png', np.eye(4, dtype=bool))
    write_json(tmp_path / 'a.json', {'x': 1})
    # 8 bits: half a step, plus the float32 roundings of x * 255 (it may cross a .5) and of q / 255.
    np.testing.assert_allclose(read_image(tmp_path / 'a.png'), image, atol=0.5 / 255 + rounding_bound(np.float32, 2))
    assert cv2.imread(str(tmp_path / 'm.png'), cv2.IMREAD_GRAYSCALE).tolist() == (np.eye(4) * 255).tolist()
    with pytest.raises(ValueError, match='cannot encode'):
        write_image(tmp_path / 'a.unknown', image)
    assert sorted(os.listdir(tmp_path)) == ['a.json', 'a.png', 'm.png']


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path):
    from metaf2n_plugin.atomic_write import write_json
    write_json(tmp_path / 'a.json', {'k': 1})
    (tmp_path / 'plain').write_text('x')
    assert (tmp_path / 'a.json').stat().st_mode & 0o777 == (tmp_path / 'plain').stat().st_mode & 0o777
