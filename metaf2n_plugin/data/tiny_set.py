"""The built-in tiny data set, made in seconds from photos shipped with scikit-image and matplotlib (docs/data.md).

Layout under ``root`` (default ``datasets/tiny``; same seed, same files)::

    faces/face_<photo>_<j>.png        8 aligned 256² faces: the 2 annotated built-in photos x 4 jitters (+-8 deg,
                                      +-8 % scale, a small shift) of GPEN-template alignment
    backgrounds/<image>_<j>.png       7 natural 400² crops (coffee, rocket, hubble_deep_field, immunohistochemistry,
                                      motorcycle)
    sources/photos/<photo>.png, sources/photos_landmarks.json     the 2 photos as 512² squares, their landmarks
    sources/test_backgrounds/<image>.png    4 held-out backgrounds (retina, right stereo motorcycle, gravel, grass)
    pairs/{gt,lq}/<i>.png             3 scale-1 pairs: 64² astronaut crops, and the same blurred (5x5, sigma 1)
    test/<set>/{GT,LQ}/, landmarks.json, meta.json     GT 512, LQ 128; Tiny_iid / Tiny_ood: the 2 photos;
                                      Tiny_Multi_iid / Tiny_Multi_ood: 4 images of faces/ on the held-out backgrounds

``photos`` limits the faces and the test sets to those photos' people (``people.json`` records them; the held-out
folds of ``metaf2n_plugin.data.people`` build one set per fold). By default both people are in, so the tiny test sets
show the training faces' people: use them to watch the mechanism, never for a held-out figure. ``faces/`` and
``backgrounds/`` feed ``MetaF2NTaskDataset``; a test set's LQ, GT and landmarks.json feed ``MetaF2NPairedFaceDataset``.
"""
import os

import cv2
import numpy as np
import skimage.data

from metaf2n_plugin.atomic_write import write_json
from metaf2n_plugin.data.people import checked_photos, write_people
from metaf2n_plugin.data.testset_builder import build_testset
from metaf2n_plugin.faces import builtin_photo, face_template, similarity_transform
from metaf2n_plugin.faces.alignment import align_face, compose_affine
from metaf2n_plugin.image_io import write_image

PHOTOS = ('astronaut', 'grace_hopper')
FACE_SIZE, FACES_PER_PHOTO = 256, 4
BACKGROUND_SIZE = 400
# (scikit-image image, top-left corners of its 400 x 400 crops)
BACKGROUNDS = (('coffee', [(0, 0), (0, 200)]), ('rocket', [(27, 120)]), ('hubble_deep_field', [(0, 0), (400, 500)]),
               ('immunohistochemistry', [(56, 56)]))
PAIR_CORNERS = ((180, 200), (100, 300), (300, 100))  # top-left corners of the astronaut's 64 x 64 pair crops
TEST_GT_SIZE = 512
# held-out test backgrounds, each a square crop (top, left, side) of a scikit-image picture; gray ones made RGB
TEST_BACKGROUNDS = {
    'retina': (450, 450, 512),
    'motorcycle_right': (0, 241, 500),
    'gravel': (0, 0, 512),
    'grass': (0, 0, 512)
}
# (set, preset, multi-face); set k is built with seed + k
TEST_SETS = (('Tiny_iid', 'iid', False), ('Tiny_Multi_iid', 'iid', True), ('Tiny_ood', 'ood', False), ('Tiny_Multi_ood',
                                                                                                       'ood', True))


def make_tiny_dataset(root='datasets/tiny', seed=0, progress=False, photos=PHOTOS):
    """Write the tiny data set of ``photos``' people under ``root`` (module docstring); returns ``root``."""
    photos = checked_photos(photos, 'make_tiny_dataset')
    write_people(root, photos)
    rng = np.random.default_rng(seed)
    folders = {name: os.path.join(root, name) for name in ('faces', 'backgrounds', 'sources/photos')}
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    landmarks = {}
    for photo in PHOTOS:
        image, (face, ) = builtin_photo(photo)
        jitters = [_jitter(rng) for _ in range(FACES_PER_PHOTO)]  # drawn for every photo: a photo's faces never
        if photo not in photos:  # depend on which others are in
            continue
        for j in range(FACES_PER_PHOTO):
            write_image(
                os.path.join(folders['faces'], f'face_{photo}_{j}.png'),
                align_face(image, None, FACE_SIZE, compose_affine(jitters[j], _to_template(face)))[0])
        square = image[:TEST_GT_SIZE, :TEST_GT_SIZE]  # grace_hopper is 600 high; her face is in the top 512 rows
        write_image(os.path.join(folders['sources/photos'], f'{photo}.png'), square)
        landmarks[f'{photo}.png'] = {'faces': [{'landmarks': face.landmarks.tolist()}]}
    write_json(os.path.join(root, 'sources', 'photos_landmarks.json'), landmarks)
    for name, corners in BACKGROUNDS:
        image = getattr(skimage.data, name)().astype(np.float32) / 255.0
        for j, (top, left) in enumerate(corners):
            write_image(
                os.path.join(folders['backgrounds'], f'{name}_{j}.png'), image[top:top + BACKGROUND_SIZE,
                                                                               left:left + BACKGROUND_SIZE])
    motorcycle = skimage.data.stereo_motorcycle()[0].astype(np.float32) / 255.0
    write_image(os.path.join(folders['backgrounds'], 'motorcycle_0.png'), motorcycle[50:450, 170:570])
    _write_pairs(os.path.join(root, 'pairs'))
    test_backgrounds = _write_test_backgrounds(os.path.join(root, 'sources', 'test_backgrounds'))
    photos = sorted(os.path.join(folders['sources/photos'], f'{photo}.png') for photo in photos)
    faces = sorted(os.path.join(folders['faces'], name) for name in os.listdir(folders['faces']))
    for k, (name, preset, multi) in enumerate(TEST_SETS):
        out_dir = os.path.join(root, 'test', name)
        if multi:
            build_testset(
                faces, out_dir, preset, seed + k, TEST_GT_SIZE, backgrounds=test_backgrounds, progress=progress)
        else:
            build_testset(
                photos,
                out_dir,
                preset,
                seed + k,
                TEST_GT_SIZE,
                progress=progress,
                landmarks_json=os.path.join(root, 'sources', 'photos_landmarks.json'))
    return root


def _write_pairs(folder):
    """``pairs/{gt,lq}``: 64 x 64 astronaut crops and the same crops blurred (scale 1)."""
    astronaut = skimage.data.astronaut().astype(np.float32) / 255.0
    for sub in ('gt', 'lq'):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    for i, (top, left) in enumerate(PAIR_CORNERS):
        gt = astronaut[top:top + 64, left:left + 64]
        write_image(os.path.join(folder, 'gt', f'{i}.png'), gt)
        write_image(os.path.join(folder, 'lq', f'{i}.png'), cv2.GaussianBlur(gt, (5, 5), 1.0))


def _write_test_backgrounds(folder):
    """Write :data:`TEST_BACKGROUNDS` into ``folder``; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, (top, left, side) in TEST_BACKGROUNDS.items():
        image = skimage.data.stereo_motorcycle()[1] if name == 'motorcycle_right' else getattr(skimage.data, name)()
        image = image[top:top + side, left:left + side].astype(np.float32) / 255.0
        paths.append(os.path.join(folder, f'{name}.png'))
        write_image(paths[-1], np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image)
    return paths


def _to_template(face):
    """The map from a built-in photo to its face aligned at ``FACE_SIZE``."""
    return similarity_transform(face.landmarks, face_template(FACE_SIZE))


def _jitter(rng):
    """A small random similarity about the centre of the aligned crop: ``(2, 3)``."""
    angle, zoom = np.deg2rad(rng.uniform(-8, 8)), rng.uniform(0.92, 1.08)
    shift = rng.uniform(-6, 6, 2)
    a, b = zoom * np.cos(angle), zoom * np.sin(angle)
    centre = (FACE_SIZE - 1) / 2
    linear = np.array([[a, -b], [b, a]])
    return np.hstack([linear, (centre - linear @ [centre, centre] + shift)[:, None]])
