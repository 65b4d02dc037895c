"""The built-in tiny data set: made in seconds from photos that ship inside scikit-image and matplotlib.

Layout under ``root`` (``datasets/tiny`` by default; nothing of it is committed)::

    faces/face_<photo>_<j>.png          8 aligned 256 x 256 faces: the two annotated built-in photos
                                        (metaf2n_plugin.faces.builtin_photo), each aligned to GPEN's template
                                        4 times with a small random rotation (+-8 deg), scale (+-8 %) and shift
    backgrounds/<image>_<j>.png         7 natural 400 x 400 crops (scikit-image's coffee, rocket, Hubble deep
                                        field, immunohistochemistry, motorcycle)
    sources/photos/<photo>.png          the two built-in photos as 512 x 512 squares (inputs of the test sets)
    sources/photos_landmarks.json       their landmarks (input of make_testset)
    test/Tiny_iid/{GT,LQ}/, landmarks.json, meta.json        single-face test set, GT 512, LQ 128 (x4)
    test/Tiny_Multi_iid/{GT,LQ}/, landmarks.json, meta.json  2 multi-face images (faces/ into backgrounds/)

``faces/`` and ``backgrounds/`` are ``MetaF2NTaskDataset``'s ``dataroot_face`` / ``dataroot_background``; a
test set's ``LQ``, ``GT`` and ``landmarks.json`` are ``MetaF2NPairedFaceDataset``'s ``dataroot_lq``,
``dataroot_gt`` and ``face_source: {type: landmarks, json_path: ...}``. The same seed gives the same files.
"""
import os

import numpy as np
import skimage.data

from metaf2n_plugin.data.testset_builder import build_testset
from metaf2n_plugin.faces import builtin_photo, face_template, similarity_transform, write_image, write_json
from metaf2n_plugin.faces.alignment import align_face, compose_affine

PHOTOS = ('astronaut', 'grace_hopper')
FACE_SIZE, FACES_PER_PHOTO = 256, 4
BACKGROUND_SIZE = 400
# (scikit-image image, top-left corners of its 400 x 400 crops)
BACKGROUNDS = (('coffee', [(0, 0), (0, 200)]), ('rocket', [(27, 120)]), ('hubble_deep_field', [(0, 0), (400, 500)]),
               ('immunohistochemistry', [(56, 56)]))
TEST_GT_SIZE = 512


def make_tiny_dataset(root='datasets/tiny', seed=0, progress=False):
    """Write the tiny data set under ``root`` (module docstring); returns ``root``."""
    rng = np.random.default_rng(seed)
    folders = {name: os.path.join(root, name) for name in ('faces', 'backgrounds', 'sources/photos')}
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    landmarks = {}
    for photo in PHOTOS:
        image, (face, ) = builtin_photo(photo)
        for j in range(FACES_PER_PHOTO):
            write_image(os.path.join(folders['faces'], f'face_{photo}_{j}.png'),
                        align_face(image, None, FACE_SIZE, compose_affine(_jitter(rng), _to_template(face)))[0])
        square = image[:TEST_GT_SIZE, :TEST_GT_SIZE]  # grace_hopper is 600 high; her face is in the top 512 rows
        write_image(os.path.join(folders['sources/photos'], f'{photo}.png'), square)
        landmarks[f'{photo}.png'] = {'faces': [{'landmarks': face.landmarks.tolist()}]}
    write_json(os.path.join(root, 'sources', 'photos_landmarks.json'), landmarks)
    for name, corners in BACKGROUNDS:
        image = getattr(skimage.data, name)().astype(np.float32) / 255.0
        for j, (top, left) in enumerate(corners):
            write_image(os.path.join(folders['backgrounds'], f'{name}_{j}.png'),
                        image[top:top + BACKGROUND_SIZE, left:left + BACKGROUND_SIZE])
    motorcycle = skimage.data.stereo_motorcycle()[0].astype(np.float32) / 255.0
    write_image(os.path.join(folders['backgrounds'], 'motorcycle_0.png'), motorcycle[50:450, 170:570])
    photos = sorted(os.path.join(folders['sources/photos'], f'{photo}.png') for photo in PHOTOS)
    build_testset(photos, os.path.join(root, 'test', 'Tiny_iid'), seed=seed, gt_size=TEST_GT_SIZE,
                  landmarks_json=os.path.join(root, 'sources', 'photos_landmarks.json'), progress=progress)
    faces = sorted(os.path.join(folders['faces'], name) for name in os.listdir(folders['faces']))
    backgrounds = sorted(os.path.join(folders['backgrounds'], name) for name in os.listdir(folders['backgrounds']))
    build_testset(faces, os.path.join(root, 'test', 'Tiny_Multi_iid'), seed=seed, gt_size=TEST_GT_SIZE,
                  backgrounds=backgrounds, num_images=2, progress=progress)
    return root


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
