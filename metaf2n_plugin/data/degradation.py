"""Real-ESRGAN's second-order degradation, drawn once per task on the CPU and applied on the images' device.

What a draw shares across a task's images and what is per image: docs/data.md. BasicSR's random noise functions
would redraw the noise type per image, so the draw holds every value and :func:`apply_degradation` calls the
non-random ``add_*_noise_pt``. A draw (:func:`sample_degradation`) is a dict; once collated, every value gains a
leading task dimension (tensors ``(T, ...)``, strings a list of T), which :func:`task_draw` removes::

    kernel1, kernel2, sinc_kernel   (K, K) float32, K = kernel_size_range[1]: the stages' blurs (zero-padded) and
                                    the final sinc (a unit pulse when none was drawn)
    resize1, resize2                float factors
    resize_mode1, resize_mode2, final_resize_mode   'area' | 'bilinear' | 'bicubic'
    noise1, noise2                  'gaussian' | 'poisson'
    gray_noise1, gray_noise2        (N,) float32 0/1 per image; 1: one gray field for the three channels
    noise_level1, noise_level2      (N,) float32 per image: Gaussian sigma (0-255 scale) or Poisson scale
    jpeg_quality1, jpeg_quality2    float in [1, 100]
    blur2                           bool: the second-stage blur is applied
    final_order                     'resize_sinc_jpeg' | 'jpeg_resize_sinc'
"""
import math
import random

import numpy as np
import torch
from basicsr.data.degradations import (add_gaussian_noise_pt, add_poisson_noise_pt, circular_lowpass_kernel,
                                       random_mixed_kernels)
from basicsr.utils.img_process_util import filter2D
from torch.nn import functional as F

KERNEL_TYPES = ['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso']
RESIZE_MODES = ('area', 'bilinear', 'bicubic')
FINAL_ORDERS = ('resize_sinc_jpeg', 'jpeg_resize_sinc')

# The original's settings (reference table; Real-ESRGAN's option names, a trailing 2 for the second stage).
DEGRADATION_DEFAULTS = {
    'kernel_size_range': [7, 21],  # odd sizes, for both stages and the final sinc filter
    'kernel_list': KERNEL_TYPES,
    'kernel_prob': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    'blur_sigma': [0.2, 3.0],
    'betag_range': [0.5, 4.0],
    'betap_range': [1.0, 2.0],
    'sinc_prob': 0.1,
    'resize_prob': [0.2, 0.7, 0.1],  # up, down, keep
    'resize_range': [0.15, 1.5],
    'gaussian_noise_prob': 0.5,
    'noise_range': [1.0, 30.0],
    'poisson_scale_range': [0.05, 3.0],
    'gray_noise_prob': 0.4,
    'jpeg_range': [30.0, 95.0],
    'second_blur_prob': 0.8,
    'kernel_list2': KERNEL_TYPES,
    'kernel_prob2': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    'blur_sigma2': [0.2, 1.5],
    'betag_range2': [0.5, 4.0],
    'betap_range2': [1.0, 2.0],
    'sinc_prob2': 0.1,
    'resize_prob2': [0.3, 0.4, 0.3],
    'resize_range2': [0.3, 1.2],
    'gaussian_noise_prob2': 0.5,
    'noise_range2': [1.0, 25.0],
    'poisson_scale_range2': [0.05, 2.5],
    'gray_noise_prob2': 0.4,
    'jpeg_range2': [30.0, 95.0],
    'final_sinc_prob': 0.8,
    'final_jpeg_first_prob': 0.5,  # probability of JPEG before [resize back + sinc]
}


def degradation_options(opt):
    """:data:`DEGRADATION_DEFAULTS` updated by ``opt``'s keys (other keys ignored).

    ValueError: an even or too small kernel size, or a JPEG quality outside [1, 100].
    """
    o = {key: opt.get(key, default) for key, default in DEGRADATION_DEFAULTS.items()}
    low, high = o['kernel_size_range']
    if low % 2 == 0 or high % 2 == 0 or not 3 <= low <= high:
        raise ValueError(f'kernel_size_range must be two odd sizes 3 <= low <= high, got {o["kernel_size_range"]}')
    for key in ('jpeg_range', 'jpeg_range2'):
        if not 1 <= o[key][0] <= o[key][1] <= 100:
            raise ValueError(f'{key} must lie in [1, 100] (JPEG quality; DiffJPEG divides by it), got {o[key]}')
    return o


def sample_degradation(opt, num_images):
    """One draw (module docstring) for N = ``num_images`` images, with ``random`` and ``numpy.random`` as BasicSR.

    ``opt`` is completed by :func:`degradation_options`.
    """
    o = degradation_options(opt)
    draw = {'kernel1': _blur_kernel(o, ''), 'kernel2': _blur_kernel(o, '2'), 'sinc_kernel': _final_sinc(o)}
    for stage, suffix in ((1, ''), (2, '2')):
        if stage == 2:
            draw['blur2'] = bool(np.random.uniform() < o['second_blur_prob'])
        direction = random.choices(['up', 'down', 'keep'], o[f'resize_prob{suffix}'])[0]
        low, high = o[f'resize_range{suffix}']
        if direction == 'up':
            draw[f'resize{stage}'] = float(np.random.uniform(1, high))
        elif direction == 'down':
            draw[f'resize{stage}'] = float(np.random.uniform(low, 1))
        else:
            draw[f'resize{stage}'] = 1.0
        draw[f'resize_mode{stage}'] = random.choice(RESIZE_MODES)
        gaussian = np.random.uniform() < o[f'gaussian_noise_prob{suffix}']
        draw[f'noise{stage}'] = 'gaussian' if gaussian else 'poisson'
        low, high = o[f'noise_range{suffix}'] if gaussian else o[f'poisson_scale_range{suffix}']
        draw[f'noise_level{stage}'] = torch.from_numpy(np.random.uniform(low, high, num_images)).float()
        gray = np.random.uniform(size=num_images) < o[f'gray_noise_prob{suffix}']
        draw[f'gray_noise{stage}'] = torch.from_numpy(gray).float()
        draw[f'jpeg_quality{stage}'] = float(np.random.uniform(*o[f'jpeg_range{suffix}']))
    draw['final_resize_mode'] = random.choice(RESIZE_MODES)
    draw['final_order'] = FINAL_ORDERS[int(np.random.uniform() < o['final_jpeg_first_prob'])]
    return draw


def _blur_kernel(o, suffix):
    """A first- (suffix '') or second-stage (suffix '2') blur kernel as RealESRGANDataset draws it."""
    size = random.choice(range(o['kernel_size_range'][0], o['kernel_size_range'][1] + 1, 2))
    if np.random.uniform() < o[f'sinc_prob{suffix}']:
        cutoff = np.random.uniform(np.pi / 3 if size < 13 else np.pi / 5, np.pi)
        kernel = circular_lowpass_kernel(cutoff, size)
    else:
        sigma = o[f'blur_sigma{suffix}']
        kernel = random_mixed_kernels(
            o[f'kernel_list{suffix}'],
            o[f'kernel_prob{suffix}'],
            size,
            sigma,
            sigma, [-math.pi, math.pi],
            o[f'betag_range{suffix}'],
            o[f'betap_range{suffix}'],
            noise_range=None)
    return _padded(kernel, o['kernel_size_range'][1])


def _final_sinc(o):
    """The final sinc filter, or a unit pulse (no filtering)."""
    if np.random.uniform() < o['final_sinc_prob']:
        size = random.choice(range(o['kernel_size_range'][0], o['kernel_size_range'][1] + 1, 2))
        return _padded(circular_lowpass_kernel(np.random.uniform(np.pi / 3, np.pi), size), o['kernel_size_range'][1])
    return _padded(np.ones((1, 1)), o['kernel_size_range'][1])


def _padded(kernel, size):
    pad = (size - kernel.shape[0]) // 2
    return torch.from_numpy(np.pad(kernel, pad)).float()


def task_draw(draws, t):
    """Task ``t``'s draw out of a collated batch of draws (leading task dimension on every value)."""
    return {key: value[t] for key, value in draws.items()}


PER_IMAGE = ('noise_level1', 'noise_level2', 'gray_noise1', 'gray_noise2')


def select_images(draw, index):
    """The draw restricted to some of its images: the per-image values indexed by ``index`` (slice or indices)."""
    return {key: value[index] if key in PER_IMAGE else value for key, value in draw.items()}


@torch.no_grad()
def apply_degradation(gt, draw, scale, jpeger):
    """Degrade ``gt`` ``(N, 3, H, W)`` float32 RGB in [0, 1] with one draw, on its device, ``jpeger`` (DiffJPEG) too.

    Returns ``(N, 3, H / s, W / s)`` in [0, 1], quantised to multiples of 1/255. ValueError: H or W not a multiple
    of ``scale``, or per-image draw values not N long (the draw's tensors may be on any device).
    """
    n, _, h, w = gt.shape
    if h % scale or w % scale:
        raise ValueError(f'image size {w}x{h} is not a multiple of the scale {scale}')
    for key in PER_IMAGE:
        if len(draw[key]) != n:
            raise ValueError(f'the draw has {len(draw[key])} values of {key} for {n} images')

    def blur(image, name):
        return filter2D(image, draw[name].to(image).unsqueeze(0))  # (1, K, K): one kernel for the whole batch

    def resize_back_and_sinc(image):
        image = F.interpolate(image, size=(h // scale, w // scale), mode=draw['final_resize_mode'])
        return blur(image, 'sinc_kernel')

    out = blur(gt, 'kernel1')
    out = F.interpolate(out, scale_factor=float(draw['resize1']), mode=draw['resize_mode1'])
    out = add_noise(out, draw, 1)
    out = _jpeg(out, draw['jpeg_quality1'], jpeger)
    if draw['blur2']:
        out = blur(out, 'kernel2')
    resize2 = float(draw['resize2'])
    out = F.interpolate(out, size=(int(h / scale * resize2), int(w / scale * resize2)), mode=draw['resize_mode2'])
    out = add_noise(out, draw, 2)
    if draw['final_order'] == 'jpeg_resize_sinc':
        out = resize_back_and_sinc(_jpeg(out, draw['jpeg_quality2'], jpeger))
    else:
        out = _jpeg(resize_back_and_sinc(out), draw['jpeg_quality2'], jpeger)
    return torch.clamp((out * 255.0).round(), 0, 255) / 255.0


def add_noise(image, draw, stage):
    """The draw's stage-``stage`` noise on ``(N, 3, H, W)`` images in [0, 1], clipped; per image its own fields."""
    level = draw[f'noise_level{stage}'].to(image)
    gray = draw[f'gray_noise{stage}'].to(image)
    if draw[f'noise{stage}'] == 'gaussian':  # one image at a time: BasicSR shares a gray field across the batch
        return torch.cat([
            add_gaussian_noise_pt(
                image[i:i + 1], sigma=level[i:i + 1], gray_noise=gray[i:i + 1], clip=True, rounds=False)
            for i in range(len(image))
        ])
    return add_poisson_noise_pt(image, scale=level, gray_noise=gray, clip=True, rounds=False)


def _jpeg(image, quality, jpeger):
    """JPEG at one quality in [1, 100] for the whole batch."""
    # A fresh float32 (N,) tensor (DiffJPEG overwrites it), as Real-ESRGAN's feed_data: a Python number takes a
    # float64 path that rounds some outputs differently (7,877 of 20,160 values on 40x56 images at quality 30).
    # contiguous(): the output is a view when H or W is not a multiple of 16, which filter2D's view() rejects.
    quality = image.new_full((len(image), ), float(quality), dtype=torch.float32)
    return jpeger(torch.clamp(image, 0, 1), quality=quality).contiguous()
