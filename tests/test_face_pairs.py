"""Face pairs end to end (align, restore, paste back) and the patch batch cut from them, on real photos."""

import cv2
import numpy as np
import pytest
import torch

from metaf2n_plugin.faces import (Face, FacePair, FacePairExtractor, IdentityRestorer, OracleRestorer, builtin_photo,
                                  face_template, paste_back, sample_patches)
from metaf2n_plugin.faces.alignment import apply_affine, invert_affine, upscale_map
from tolerances import rounding_bound


def psnr(a, b, mask=None):
    err = (np.asarray(a, np.float64) - np.asarray(b, np.float64))**2
    return 10 * np.log10(1 / (err[mask] if mask is not None else err).mean())


def lq_photo(name, scale):
    """A builtin photo as GT, its ``scale``x area-downscaled LQ (block means), and the LQ faces."""
    gt, faces = builtin_photo(name)
    height, width = gt.shape[0] // scale, gt.shape[1] // scale
    gt = gt[:scale * height, :scale * width]
    lq = cv2.resize(gt, (width, height), interpolation=cv2.INTER_AREA)
    to_lq = invert_affine(upscale_map(scale))
    return lq, gt, [Face(apply_affine(to_lq, face.landmarks)) for face in faces]


def fixed_faces(faces):
    return lambda image, image_path: faces


@pytest.mark.parametrize('name', ['astronaut', 'grace_hopper'])
def test_identity_on_hq_round_trip_reproduces_the_face_region(name):
    """Scale 1, the photo itself as LQ, identity restorer: align + paste back is (nearly) lossless."""
    image, faces = builtin_photo(name)
    (pair, ) = FacePairExtractor(fixed_faces(faces), IdentityRestorer(512), scale=1)(image)
    x0, y0, x1, y1 = pair.box
    assert pair.mask.mean() > 0.9
    assert psnr(pair.hq, image[y0:y1, x0:x1], pair.mask) >= 35


@pytest.mark.parametrize('name', ['astronaut', 'grace_hopper'])
def test_oracle_pairs_at_x4_match_the_gt_at_the_same_place(name):
    lq, gt, faces = lq_photo(name, 4)
    (pair, ) = FacePairExtractor(fixed_faces(faces), OracleRestorer(512), scale=4)(lq, gt)
    x0, y0, x1, y1 = pair.box
    np.testing.assert_array_equal(pair.lq, lq[y0:y1, x0:x1])
    assert pair.hq.shape == (4 * (y1 - y0), 4 * (x1 - x0), 3) and pair.hq.dtype == np.float32
    hq_region = gt[4 * y0:4 * y1, 4 * x0:4 * x1]
    assert psnr(pair.hq, hq_region, pair.mask) >= 35
    # The test can tell a misplaced pair: the original's shift of (scale - 1) / 2 = 1.5 px costs > 5 dB.
    shifted = cv2.warpAffine(hq_region, np.float32([[1, 0, 1.5], [0, 1, 1.5]]), hq_region.shape[1::-1])
    assert psnr(pair.hq, shifted, pair.mask) < psnr(pair.hq, hq_region, pair.mask) - 5


def test_patch_pairs_from_real_pairs_line_up():
    """LQ = 4x4 block means of the GT, so an aligned patch pair satisfies LR ~ block_mean(HR)."""
    lq, gt, faces = lq_photo('astronaut', 4)
    pairs = FacePairExtractor(fixed_faces(faces), OracleRestorer(512), scale=4)(lq, gt)
    batch = sample_patches(pairs, 4, 16, 64, rng=np.random.default_rng(0))
    assert len(batch) == 16
    means = batch.hq.reshape(16, 3, 16, 4, 16, 4).mean((3, 5))
    assert psnr(means, batch.lq) > 40
    assert psnr(means[..., 1:], batch.lq[..., :-1]) < 30  # one LR pixel off is visible


def test_patch_pairs_line_up_exactly():
    rng = np.random.default_rng(1)
    hq = rng.random((4 * 30, 4 * 23, 3), dtype=np.float32)
    lq = hq.reshape(30, 4, 23, 4, 3).mean((1, 3))
    pair = FacePair(lq, hq, np.ones(hq.shape[:2], bool))
    batch = sample_patches([pair], 4, 16, 64, rng=rng)
    assert batch.lq.shape == (16, 3, 16, 16) and batch.hq.shape == (16, 3, 64, 64)
    assert batch.mask.shape == (16, 1, 64, 64) and bool((batch.mask == 1).all())
    # Two float32 means of 4 x 4 values in [0, 1) (NumPy's and PyTorch's, in their own orders; / 16 is exact).
    bound = 2 * rounding_bound(torch.float32, terms=4 * 4, magnitude=1.0)
    torch.testing.assert_close(batch.hq.reshape(16, 3, 16, 4, 16, 4).mean((3, 5)), batch.lq, atol=bound, rtol=0)
    assert len({tuple(p.flatten()[:8].tolist()) for p in batch.lq}) == 16  # distinct positions


def test_patches_come_only_from_valid_pixels():
    hq = np.random.default_rng(2).random((160, 160, 3), dtype=np.float32)
    mask = np.zeros((160, 160), bool)
    mask[:, 72:] = True  # LR columns 18..39 are valid
    pair = FacePair(hq[::4, ::4], hq, mask)
    batch = sample_patches([pair], 4, 16, 64, rng=np.random.default_rng(0))
    assert len(batch) == 16 and bool((batch.mask == 1).all())


def test_all_faces_of_an_image_share_one_batch():
    ones = np.ones((200, 200), bool)
    pairs = [
        FacePair(np.full((50, 50, 3), v, np.float32), np.full((200, 200, 3), v, np.float32), ones) for v in (0.2, 0.8)
    ]
    batch = sample_patches(pairs, 4, 5, 64, rng=np.random.default_rng(0))
    assert batch.face_index.tolist() == [0] * 5 + [1] * 5
    assert batch.lq[:5].max() == pytest.approx(0.2) and batch.lq[5:].min() == pytest.approx(0.8)


def test_a_face_smaller_than_a_patch_is_used_whole_padded_and_logged(basicsr_log):
    lq = np.full((10, 12, 3), 0.5, np.float32)
    pair = FacePair(lq, np.full((40, 48, 3), 0.5, np.float32), np.ones((40, 48), bool))
    batch = sample_patches([pair], 4, 16, 64, image_name='tiny.png')
    assert len(batch) == 1
    assert batch.mask.sum() == 40 * 48 and batch.mask[0, 0, :40, :48].min() == 1
    assert batch.lq[0, :, :10, :12].min() == 0.5 and batch.lq[0, :, 10:, :].abs().max() == 0
    assert any('tiny.png, face 0: 12x10' in r.getMessage() and 'used whole' in r.getMessage() for r in basicsr_log)


def test_a_face_without_valid_pixels_is_skipped_and_logged(basicsr_log):
    pair = FacePair(np.zeros((20, 20, 3), np.float32), np.zeros((80, 80, 3), np.float32), np.zeros((80, 80), bool))
    batch = sample_patches([pair], 4, 16, 64, image_name='dark.png')
    assert len(batch) == 0 and batch.lq.shape == (0, 3, 16, 16)
    assert any('dark.png, face 0: no valid HQ pixel' in r.getMessage() for r in basicsr_log)


def test_patch_size_must_be_a_multiple_of_the_scale():
    with pytest.raises(ValueError, match='multiple of the scale'):
        sample_patches([], 3, 16, 64)


def test_paste_back_mask_marks_exactly_the_warped_face():
    """Aligned crop = a translated 64x64 window of the LQ image; the box is the whole image."""
    restored = np.full((64, 64, 3), 0.7, np.float32)
    matrix = np.array([[1.0, 0.0, -30.0], [0.0, 1.0, -50.0]])  # LQ (30, 50) -> crop (0, 0)
    hq, mask = paste_back(restored, matrix, (0, 0, 120, 140), scale=1)
    assert mask.sum() == 64 * 64 and mask[50:114, 30:94].all()
    np.testing.assert_allclose(hq[mask], 0.7, atol=1e-6)  # exact: whole-pixel shift, cubic weights (0, 1, 0, 0)
    # At x2, HQ pixel X has its centre at LQ (X - 0.5) / 2: LQ 30..93 covers X = 61..186, 126 pixels.
    hq, mask = paste_back(restored, matrix, (0, 0, 120, 140), scale=2)
    assert mask.shape == (280, 240) and mask.sum() == 126 * 126 and mask[101:227, 61:187].all()


def test_paste_back_averages_a_face_that_shrinks():
    """A 1-pixel checkerboard shrunk 4x must come out flat grey, not aliased."""
    checker = (np.indices((256, 256)).sum(0) % 2).astype(np.float32)[:, :, None].repeat(3, 2)
    matrix = np.array([[4.0, 0.0, -80.0], [0.0, 4.0, -80.0]])  # LQ (20, 20) -> crop (0, 0), 4x larger
    hq, mask = paste_back(checker, matrix, (20, 20, 84, 84), scale=1)
    assert mask.all() and np.abs(hq[4:-4, 4:-4] - 0.5).max() < 0.02


def test_multiple_faces_and_a_face_cut_by_the_border():
    """Two photos side by side, the right one pushed half out of the frame: both faces are paired."""
    lq_a, gt_a, faces_a = lq_photo('astronaut', 2)
    lq_g, gt_g, faces_g = lq_photo('grace_hopper', 2)
    cut = 120  # LQ columns of grace_hopper kept; her right eye (x = 151) and right mouth corner are outside
    lq = np.zeros((300, 256 + cut, 3), np.float32)
    gt = np.zeros((600, 2 * (256 + cut), 3), np.float32)
    lq[:256, :256], lq[:, 256:] = lq_a, lq_g[:, :cut]
    gt[:512, :512], gt[:, 512:] = gt_a, gt_g[:, :2 * cut]
    faces = faces_a + [Face(faces_g[0].landmarks + (256, 0))]
    pairs = FacePairExtractor(fixed_faces(faces), OracleRestorer(512), scale=2)(lq, gt)
    assert len(pairs) == 2
    assert pairs[1].box[2] == lq.shape[1]  # clipped at the right border
    for pair in pairs:
        x0, y0, x1, y1 = pair.box
        assert psnr(pair.hq, gt[2 * y0:2 * y1, 2 * x0:2 * x1], pair.mask) >= 35


def test_landmarks_outside_the_image_name_the_face():
    lq, gt, faces = lq_photo('astronaut', 4)
    outside = [faces[0], Face(faces[0].landmarks * 4)]  # GT coordinates by mistake
    extractor = FacePairExtractor(fixed_faces(outside), OracleRestorer(512), scale=4)
    with pytest.raises(ValueError, match=r"'a.png', face 1: .* outside the 128x128 image; .* LQ pixel"):
        extractor(lq, gt, image_path='a.png')


def test_an_image_without_faces_gives_no_pairs_and_an_empty_batch():
    pairs = FacePairExtractor(fixed_faces([]), IdentityRestorer(512), scale=4)(np.zeros((32, 32, 3), np.float32))
    assert pairs == []
    assert len(sample_patches(pairs, 4, 16, 64)) == 0


def test_gt_of_the_wrong_size_is_refused():
    lq, gt, faces = lq_photo('astronaut', 4)
    extractor = FacePairExtractor(fixed_faces(faces), OracleRestorer(512), scale=4)
    with pytest.raises(ValueError, match=r'GT of .* is 511x512; at scale 4 the 128x128 LQ image needs a 512x512'):
        extractor(lq, gt[:, :511])
    with pytest.raises(ValueError, match='oracle restorer needs the GT'):
        extractor(lq)


@pytest.mark.parametrize('bad',
                         [np.zeros((8, 8, 3), np.uint8),
                          np.zeros((8, 8), np.float32),
                          np.zeros((8, 8, 4), np.float32)])
def test_images_must_be_float_rgb_arrays(bad):
    with pytest.raises(ValueError, match=r'expected an \(H, W, 3\) float RGB array'):
        FacePairExtractor(fixed_faces([]), IdentityRestorer(512))(bad)


def test_template_face_maps_onto_the_template_through_the_extractor():
    """The extractor aligns at the restorer's size: a face already at the 64-template is a pure crop."""
    image = np.random.default_rng(3).random((64, 64, 3))  # float64 is accepted, pairs are float32
    (pair, ) = FacePairExtractor(fixed_faces([Face(face_template(64))]), IdentityRestorer(64), scale=1)(image)
    x0, y0, x1, y1 = pair.box
    assert pair.lq.dtype == pair.hq.dtype == np.float32
    # Both warps land on whole pixels (OpenCV rounds positions to 1/32 px), so they copy: only the cast to float32.
    np.testing.assert_allclose(pair.hq, image[y0:y1, x0:x1], rtol=0, atol=rounding_bound(np.float32, terms=1))
