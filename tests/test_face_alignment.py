"""Alignment: GPEN's template, the least-squares similarity, the warp, and the box of a landmark-only face."""
import cv2
import numpy as np
import pytest
from skimage.transform import estimate_transform

from metaf2n_plugin.faces import align_face, builtin_photo, face_template, landmark_box, similarity_transform
from metaf2n_plugin.faces.alignment import apply_affine, compose_affine, invert_affine, upscale_map

TEMPLATE_512 = [[202.0407, 242.8840], [309.4302, 242.2900], [256.0768, 303.9592], [211.9598, 366.8282],
                [300.8911, 366.3363]]


def similarity(angle_deg, scale, tx, ty):
    c, s = scale * np.cos(np.radians(angle_deg)), scale * np.sin(np.radians(angle_deg))
    return np.array([[c, -s, tx], [s, c, ty]])


@pytest.mark.parametrize('size', [512, 256])
def test_template_is_gpens_ffhq_template(size):
    expected = np.array(TEMPLATE_512) * size / 512
    np.testing.assert_allclose(face_template(size), expected, atol=1e-4)


def test_similarity_transform_recovers_an_exact_similarity():
    true = similarity(-23.0, 0.37, 41.5, -12.25)
    template = face_template(512)
    landmarks = apply_affine(invert_affine(true), template)
    np.testing.assert_allclose(similarity_transform(landmarks, template), true, atol=1e-9)


@pytest.mark.parametrize('name', ['astronaut', 'grace_hopper'])
def test_similarity_transform_is_the_least_squares_fit(name):
    landmarks = builtin_photo(name)[1][0].landmarks
    reference = estimate_transform('similarity', landmarks, face_template(512)).params[:2]
    np.testing.assert_allclose(similarity_transform(landmarks, face_template(512)), reference, atol=1e-8)


def test_degenerate_landmarks_are_refused():
    with pytest.raises(ValueError, match='coincide'):
        similarity_transform(np.full((5, 2), 7.0), face_template(512))
    with pytest.raises(ValueError, match='finite'):
        similarity_transform(np.array([[np.nan, 0]] * 5), face_template(512))


def test_warped_face_lands_on_the_template_within_half_a_pixel():
    """Gaussian dots at a rotated, shrunk face's landmarks; after alignment their centroids sit on the template."""
    size = 256
    to_crop = similarity(17.0, 1.9, -60.0, 20.0)
    landmarks = apply_affine(invert_affine(to_crop), face_template(size))
    yy, xx = np.mgrid[0:200, 0:220]
    image = np.zeros((200, 220, 3), np.float32)
    for x, y in landmarks:
        image += np.exp(-((xx - x)**2 + (yy - y)**2) / (2 * 1.5**2))[:, :, None]
    crop, matrix = align_face(image, landmarks, size)
    np.testing.assert_allclose(matrix, to_crop, atol=1e-9)
    gray = crop[:, :, 0]
    yy, xx = np.mgrid[0:size, 0:size]
    for x, y in face_template(size):
        near = (np.hypot(xx - x, yy - y) < 8) * gray
        centroid = np.array([(near * xx).sum(), (near * yy).sum()]) / near.sum()
        assert np.hypot(*(centroid - (x, y))) < 0.5


def test_upscale_map_follows_pixel_centres():
    """The bilinear x4 resize of a linear ramp equals the ramp mapped through upscale_map(4)."""
    ramp = np.tile(np.arange(40, dtype=np.float32) * 0.01, (3, 1))
    big = cv2.resize(ramp, None, fx=4, fy=4, interpolation=cv2.INTER_LINEAR)
    lq_x = apply_affine(invert_affine(upscale_map(4)), np.c_[np.arange(160), np.zeros(160)])[:, 0]
    np.testing.assert_allclose(big[5, 8:-8], lq_x[8:-8] * 0.01, atol=1e-5)


def test_compose_affine_applies_inner_first():
    a, b = similarity(10, 2, 1, 2), similarity(-30, 0.5, 3, -4)
    points = np.array([[1.0, 2.0], [-3.0, 5.0]])
    np.testing.assert_allclose(apply_affine(compose_affine(a, b), points), apply_affine(a, apply_affine(b, points)))


def test_landmark_box_is_the_central_two_thirds_of_the_aligned_crop():
    np.testing.assert_allclose(landmark_box(face_template(168)), [28, 28, 140, 140], atol=1e-9)
    # A face at half the template's size, shifted: the box follows.
    landmarks = face_template(168) * 0.5 + (100, 40)
    np.testing.assert_allclose(landmark_box(landmarks), [114, 54, 170, 110], atol=1e-9)


@pytest.mark.parametrize('name, eye_distance, size', [('astronaut', 44.0, (512, 512)),
                                                      ('grace_hopper', 82.1, (512, 600))])
def test_builtin_annotations_are_upright_faces_inside_their_photos(name, eye_distance, size):
    image, faces = builtin_photo(name)
    assert image.shape == (size[1], size[0], 3) and image.dtype == np.float32 and len(faces) == 1
    landmarks = faces[0].landmarks
    assert np.hypot(*(landmarks[1] - landmarks[0])) == pytest.approx(eye_distance, abs=0.1)
    matrix = similarity_transform(landmarks, face_template(512))
    assert abs(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))) < 3  # upright within 3 degrees
    residual = np.hypot(*(apply_affine(matrix, landmarks) - face_template(512)).T)
    assert residual[:2].max() < 10  # eyes on the template's eyes in the 512 crop
