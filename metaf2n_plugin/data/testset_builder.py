"""Paired test sets with faces, reproducible from a seed (docs/data.md: layout, kinds, presets and why).

Under ``<out_dir>``: ``GT/<name>.png`` (gt_size², RGB), ``LQ/<name>.png`` (gt_size / scale), ``landmarks.json``
(``{"<name>.png": {"faces": [{"landmarks": [[x, y] x 5]}, ...]}}``, LQ pixels) and ``meta.json`` ("settings", and
per image its seed, source files and draw, kernels without zero padding). Multi-face images paste each face at
60-90 % of a quadrant's side, blended with a feathered ellipse. ``ood``'s ranges only touch the training edges so
that faces stay recognisable at x4.

Image ``i`` (inputs sorted) uses only the seed ``SeedSequence([seed, i])``: a skipped input changes no other image,
and seeding ``random``, ``numpy.random`` and ``torch`` with it, then ``apply_degradation(GT file,
sample_degradation(settings, 1), scale, DiffJPEG(differentiable=False))`` on the CPU remakes the LQ file. The
caller's global random state is left as it was (``metaf2n_plugin.data.global_seed``).
"""
import os
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from basicsr.utils import DiffJPEG, img2tensor
from tqdm import tqdm

from metaf2n_plugin.atomic_write import write_json
from metaf2n_plugin.data.degradation import PER_IMAGE, apply_degradation, degradation_options, sample_degradation
from metaf2n_plugin.data.global_seed import seeded_globally
from metaf2n_plugin.faces import LandmarkSource, face_template
from metaf2n_plugin.image_io import read_image, tensor_to_image, write_image
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
                  progress=True,
                  only=None):
    """Build one test set in ``out_dir`` (files of the same names replaced) and return a :class:`BuildReport`.

    inputs: HQ face paths (aligned crops; any photo with ``landmarks_json``, else GPEN's template is used).
    backgrounds: given, a multi-face set of ``num_images`` images (default: one per background), with
    ``faces_per_image`` an inclusive range within 1-4. ValueError: unknown preset (:data:`PRESETS`), gt_size not a
    multiple of ``scale``, a bad face range or too few faces, inputs sharing a stem. Unreadable inputs, or ones
    without exactly one landmarks entry, are skipped and reported. ``only``: the input stems to write (one-face
    sets); the others are not written, and each written image is degraded as it is in the whole set.
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
            if only is not None and name[:-4] not in only:
                continue
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
        with seeded_globally(image_seed):
            draw = sample_degradation(options, 1)
            lq = apply_degradation(img2tensor(gt, bgr2rgb=False)[None], draw, scale, jpeger)
        write_image(os.path.join(out_dir, 'GT', name), gt)
        write_image(os.path.join(out_dir, 'LQ', name), tensor_to_image(lq))
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
