"""Photos read and written for super-resolution: orientation, alpha, gray and 16 bits survive; bad files are named."""
import cv2
import numpy as np
import pytest
from PIL import Image

from metaf2n_plugin.image_io import Photo, read_photo, write_photo


def _asymmetric(height=6, width=9):
    """An (H, W, 3) uint8 RGB image whose every flip and rotation differs."""
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize('orientation', range(1, 9))
@pytest.mark.parametrize('suffix', ['.jpg', '.png'])
def test_exif_orientation_is_applied_as_opencv_shows_the_image(tmp_path, orientation, suffix):
    path = tmp_path / f'o{orientation}{suffix}'
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_asymmetric()).save(path, exif=exif.tobytes(), quality=100)
    upright_bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)  # OpenCV applies the orientation here
    photo = read_photo(path)
    assert photo.rgb.shape == upright_bgr.shape
    np.testing.assert_array_equal((photo.rgb * 255).round().astype(np.uint8), upright_bgr[:, :, ::-1])


def test_alpha_gray_and_16_bits_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    bgra16 = rng.integers(0, 65536, (5, 7, 4), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / 'deep.png'), bgra16)
    photo = read_photo(tmp_path / 'deep.png')
    assert (photo.bits, photo.gray, photo.alpha.shape, photo.rgb.shape) == (16, False, (5, 7), (5, 7, 3))
    write_photo(tmp_path / 'again.png', photo)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'again.png'), cv2.IMREAD_UNCHANGED), bgra16)

    gray = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'gray.png'), gray)
    photo = read_photo(tmp_path / 'gray.png')
    assert photo.gray and photo.alpha is None and photo.bits == 8
    np.testing.assert_array_equal(photo.rgb[:, :, 0], photo.rgb[:, :, 2])
    write_photo(tmp_path / 'gray_again.png', photo)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'gray_again.png'), cv2.IMREAD_UNCHANGED), gray)


def test_a_gray_image_with_alpha_stays_gray_in_its_colour(tmp_path):
    Image.fromarray(np.dstack([np.arange(12, dtype=np.uint8).reshape(3, 4)] * 2)).convert('LA').save(tmp_path /
                                                                                                     'la.png')
    photo = read_photo(tmp_path / 'la.png')
    assert photo.gray and photo.alpha is not None
    write_photo(tmp_path / 'out.png', Photo(photo.rgb, photo.alpha, True, 8))
    written = cv2.imread(str(tmp_path / 'out.png'), cv2.IMREAD_UNCHANGED)
    assert written.shape == (3, 4, 4)
    np.testing.assert_array_equal(written[:, :, 0], written[:, :, 2])


def test_cmyk_jpeg_is_read_as_rgb(tmp_path):
    rgb = _asymmetric(16, 16)
    Image.fromarray(rgb).convert('CMYK').save(tmp_path / 'cmyk.jpg', quality=100)
    photo = read_photo(tmp_path / 'cmyk.jpg')
    assert photo.rgb.shape == (16, 16, 3) and photo.alpha is None
    assert np.abs(photo.rgb * 255 - rgb).mean() < 12  # the JPEG's loss, not a channel mix-up


@pytest.mark.parametrize('cut', [0.5, 0.9])
def test_truncated_and_empty_files_are_named(tmp_path, cut):
    Image.fromarray(_asymmetric(64, 64)).save(tmp_path / 'whole.jpg')
    data = (tmp_path / 'whole.jpg').read_bytes()
    (tmp_path / 'cut.jpg').write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(ValueError, match="cannot read image '.*cut.jpg': OpenCV cannot decode it"):
        read_photo(tmp_path / 'cut.jpg')
    (tmp_path / 'empty.png').write_bytes(b'')
    with pytest.raises(ValueError, match=r"'.*empty.png': the file is empty \(0 bytes\)"):
        read_photo(tmp_path / 'empty.png')
