"""Paired test sets with faces: GT, LQ, landmarks and every image's degradation, reproducible from a seed.

Layout written under ``<out_dir>`` (e.g. ``datasets/test/FFHQ_iid``)::

    GT/<name>.png       gt_size x gt_size RGB
    LQ/<name>.png       gt_size / scale, degraded by the preset's degradation
    landmarks.json      {"<name>.png": {"faces": [{"landmarks": [[x, y] x 5]}, ...]}}, LQ pixel coordinates
                        (metaf2n_plugin.faces.annotations; MetaF2NPairedFaceDataset's landmarks face source)
    meta.json           "settings" (preset, seed, sizes, degradation options) and, per image, its seed,
                        its source files and its degradation draw (kernels without their zero padding)

Two kinds of set:

- single-face: every input image (an aligned face such as FFHQ or CelebA-HQ) is centre-cropped to a square
  and resized to ``gt_size``;
- multi-face (``backgrounds`` given): each image is a background, centre-cropped and resized to ``gt_size``,
  with 2-4 input faces pasted into distinct quadrants, each 60-90 % of a quadrant's side, blended with a
  feathered ellipse.

Landmarks of the inputs come from a landmarks JSON (input pixel coordinates) or, without one, from GPEN's
template (:func:`metaf2n_plugin.faces.face_template`): aligned FFHQ-style crops have their landmarks there,
to within a few pixels.

Presets: ``iid`` is the training degradation (:data:`~metaf2n_plugin.data.degradation.DEGRADATION_DEFAULTS`).
``ood`` moves three independent strengths just past the edges of the training ranges and keeps everything
else: first-stage blur sigma 3-4 with Gaussian-family kernels only (training: 0.2-3, sometimes sinc),
first-stage noise always Gaussian with sigma 30-40 (training: 1-30, or Poisson), JPEG quality 20-30 in both
stages (training: 30-95). Every ood image is thus outside the training distribution on blur, noise and
compression at once, yet made of the operators the network and the face restorer know, so the set measures
what adapting on the faces is for, extrapolating to a stronger unknown degradation, rather than a change of
artefact kind; the ranges touch the training edges so that faces stay recognisable at x4.

Reproducibility: image ``i`` (inputs in sorted order) gets the seed ``SeedSequence([seed, i])``; composition
and degradation use only that seed, so the same inputs and seed give byte-identical files (on one machine and
library version), and a skipped bad input changes no other image. The LQ image is the GT *file* degraded:
seeding ``random``, ``numpy.random`` and ``torch`` with an image's seed and calling
``apply_degradation(GT, sample_degradation(settings, 1), scale, DiffJPEG(differentiable=False))`` on the CPU
remakes its LQ file.
"""
import cv2
import numpy as np
import os
import random
import torch
from basicsr.utils import DiffJPEG, img2tensor, tensor2img
from dataclasses import dataclass, field
from tqdm import tqdm

from metaf2n_plugin.atomic_write import write_json
from metaf2n_plugin.data.degradation import PER_IMAGE, apply_degradation, degradation_options, sample_degradation
from metaf2n_plugin.faces import LandmarkSource, face_template
from metaf2n_plugin.image_io import read_image, write_image
from metaf2n_plugin.names import LANDMARKS_JSON, META_JSON

PRESETS = {
    'iid': {},
    'ood': {
        'blur_sigma': [3.0, 4.0],
        'sinc_prob': 0.0,
        'gaussian_noise_prob': 1.0,
        'noise_range': [30.0, 40.0],
        'jpeg_range': [20.0, 30.0],
        'jpeg_range2': [20.0, 30.0],
    },
}


@dataclass
class BuildReport:
    """What :func:`build_testset` did: names written, and ``(input path, reason)`` of every skipped image."""
    written: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


def build_testset(inputs,
                  out_dir,
                  preset='iid',
                  seed=0,
                  gt_size=512,
                  scale=4,
                  landmarks_json=None,
                  backgrounds=None,
                  num_images=None,
                  faces_per_image=(2, 4),
                  progress=True):
    """Build one test set (module docstring) and return a :class:`BuildReport`.

    Args:
        inputs: HQ face image paths (aligned crops, or any photo with ``landmarks_json``).
        out_dir: the set's folder; created; existing files of the same names are replaced.
        preset: ``'iid'`` or ``'ood'`` (:data:`PRESETS`).
        seed: the set's seed.
        gt_size: side of the GT images, a multiple of ``scale``.
        scale: integer SR factor s.
        landmarks_json: JSON of the inputs' landmarks (``LandmarkSource`` layouts); None: GPEN's template.
        backgrounds: background image paths; given, a multi-face set of ``num_images`` images (default: one per
            background, used in turn).
        faces_per_image: inclusive range of faces per multi-face image, at most 4.

    An input that cannot be read (or has no landmarks entry) is skipped and reported; the rest are written.
    """
    if preset not in PRESETS:
        raise ValueError(f'unknown preset {preset!r}; choose one of {sorted(PRESETS)}')
    if gt_size % scale:
        raise ValueError(f'gt_size {gt_size} must be a multiple of the scale {scale}')
    inputs = sorted(map(os.fspath, inputs))
    options = degradation_options(PRESETS[preset])
    source = LandmarkSource(landmarks_json) if landmarks_json is not None else None
    multi = backgrounds is not None
    if multi:
        backgrounds = sorted(map(os.fspath, backgrounds))
        count = len(backgrounds) if num_images is None else num_images
        low, high = faces_per_image
        if not 1 <= low <= high <= 4 or len(inputs) < high:
            raise ValueError(f'faces_per_image must be a range within 1-4 (one face per quadrant) and there must '
                             f'be at least {high} face images; got {faces_per_image} and {len(inputs)} images')
    else:
        count = len(inputs)
        stems = [os.path.splitext(os.path.basename(path))[0] for path in inputs]
        clashes = sorted({stem for stem in stems if stems.count(stem) > 1})
        if clashes:
            raise ValueError(f'inputs sharing a file stem would overwrite each other as <stem>.png: {clashes}')
    for sub in ('GT', 'LQ'):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    jpeger = DiffJPEG(differentiable=False)
    report, table = BuildReport(), {}
    meta = {
        'settings': {
            'preset': preset,
            'seed': seed,
            'gt_size': gt_size,
            'scale': scale,
            'multi_face': multi,
            'degradation_options': options
        }
    }
    for i in tqdm(range(count), desc=os.path.basename(os.path.normpath(out_dir)), disable=not progress):
        image_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        rng = np.random.default_rng(image_seed)
        if multi:
            name = f'{i:04d}.png'
            chosen = [inputs[j] for j in sorted(rng.choice(len(inputs), rng.integers(low, high + 1), replace=False))]
            sources = [backgrounds[i % len(backgrounds)], *chosen]
        else:
            name = os.path.splitext(os.path.basename(inputs[i]))[0] + '.png'
            sources = [inputs[i]]
        try:
            if multi:
                gt, faces = _compose(rng, sources[0], chosen, source, gt_size)
            else:
                image = read_image(inputs[i])
                gt, faces = _square(image, [_landmarks(source, inputs[i], image)], gt_size)
        except (OSError, ValueError) as err:
            report.skipped.append((', '.join(sources), str(err)))
            continue
        gt = (np.round(gt * 255) / 255).astype(np.float32)  # as GT/<name>.png stores it: LQ = degrade(GT file)
        random.seed(image_seed)
        np.random.seed(image_seed)
        torch.manual_seed(image_seed)
        draw = sample_degradation(options, 1)
        lq = apply_degradation(img2tensor(gt, bgr2rgb=False)[None], draw, scale, jpeger)
        write_image(os.path.join(out_dir, 'GT', name), gt)
        write_image(os.path.join(out_dir, 'LQ', name), tensor2img(lq, rgb2bgr=False, out_type=np.float32))
        shift = (scale - 1) / 2  # HQ pixel centre -> LQ pixel centre (faces.alignment.upscale_map)
        table[name] = {'faces': [{'landmarks': np.round((lm - shift) / scale, 3).tolist()} for lm in faces]}
        meta[name] = {'seed': image_seed, 'sources': sources, 'degradation': _jsonable(draw)}
        report.written.append(name)
    write_json(os.path.join(out_dir, LANDMARKS_JSON), table)
    write_json(os.path.join(out_dir, META_JSON), meta)
    return report


def _landmarks(source, path, image):
    """``(5, 2)`` landmarks of the one face of the input image at ``path`` (input pixels)."""
    if source is None:
        height, width = image.shape[:2]
        if height != width:
            raise ValueError(f'{path!r} is {width}x{height}: without a landmarks JSON an input must be a square '
                             'aligned face (FFHQ / CelebA-HQ style), whose landmarks are the template\'s; give '
                             'its landmarks (--landmarks) or align it first')
        return face_template(width)
    faces = source(image, path)
    if len(faces) != 1:
        raise ValueError(f'{path!r} has {len(faces)} faces in {source.json_path!r}; inputs need exactly one')
    return faces[0].landmarks


def _square(image, landmarks, size):
    """Centre-crop ``(H, W, 3)`` to a square, resize to ``size``; the landmarks follow (pixel-centre convention)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    square = cv2.resize(image[top:top + side, left:left + side], (size, size), interpolation=interpolation)
    ratio = size / side
    return np.clip(square, 0, 1), [(lm - [left, top] + 0.5) * ratio - 0.5 for lm in landmarks]


def _compose(rng, background_path, face_paths, source, size):
    """A background with faces pasted into distinct quadrants: ``(size, size, 3)`` and their landmarks."""
    canvas, _ = _square(read_image(background_path), [], size)
    half = size // 2
    all_landmarks = []
    for quadrant, path in zip(rng.permutation(4), face_paths):
        side = int(rng.uniform(0.6, 0.9) * half)
        y = (quadrant // 2) * half + int(rng.integers(0, half - side + 1))
        x = (quadrant % 2) * half + int(rng.integers(0, half - side + 1))
        image = read_image(path)
        face, (landmarks, ) = _square(image, [_landmarks(source, path, image)], side)
        yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / side - 0.5
        radius = np.sqrt((xx / 0.45)**2 + (yy / 0.5)**2)
        alpha = np.clip((1 - radius) / 0.15, 0, 1)[:, :, None]
        canvas[y:y + side, x:x + side] = alpha * face + (1 - alpha) * canvas[y:y + side, x:x + side]
        all_landmarks.append(landmarks + [x, y])
    return canvas.astype(np.float32), all_landmarks


def _jsonable(draw):
    """A draw as JSON values: kernels as nested lists without their zero border, rounded to 1e-8."""
    out = {}
    for key, value in draw.items():
        if key.startswith('gray_noise'):
            value = [bool(v) for v in value]
        elif key in PER_IMAGE:
            value = value.tolist()
        elif isinstance(value, torch.Tensor):
            kernel = value.numpy()
            rows, cols = np.nonzero(kernel.any(1))[0], np.nonzero(kernel.any(0))[0]
            pad = min(rows[0], cols[0])
            trimmed = kernel[pad:kernel.shape[0] - pad, pad:kernel.shape[1] - pad]
            value = np.round(trimmed.astype(np.float64), 8).tolist()
        out[key] = value
    return out
