"""The task degradation: one draw shared by many images, per-image noise magnitudes and gray/colour choices."""
import random

import numpy as np
import pytest
import torch
from basicsr.utils import DiffJPEG

from metaf2n_plugin.data.degradation import (DEGRADATION_DEFAULTS, add_noise, apply_degradation, degradation_options,
                                             sample_degradation, select_images)
from tolerances import rounding_bound


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def textured(n, size=128, seed=0):
    """``(n, 3, size, size)`` smooth random images in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 8, size // 8, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode='bicubic').clamp(0, 1)


@pytest.fixture(scope='module')
def jpeger():
    return DiffJPEG(differentiable=False)


def test_draw_shares_every_choice_and_holds_noise_level_and_gray_choice_per_image():
    seed_all(0)
    draw = sample_degradation({}, 6)
    for stage, (low, high) in ((1, (1, 30)), (2, (1, 25))):
        levels = draw[f'noise_level{stage}']
        assert levels.shape == (6, ) and len(set(levels.tolist())) == 6
        assert draw[f'gray_noise{stage}'].shape == (6, ) and set(draw[f'gray_noise{stage}'].tolist()) <= {0.0, 1.0}
        if draw[f'noise{stage}'] == 'poisson':
            low, high = DEGRADATION_DEFAULTS[f'poisson_scale_range{"" if stage == 1 else 2}']
        assert low <= levels.min() and levels.max() <= high
    for name in ('kernel1', 'kernel2', 'sinc_kernel'):
        # Normalised in float64 (441 terms), rounded to float32, summed here in float64; sinc kernels have negative
        # lobes, so the bound scales with Σ|k|.
        kernel = draw[name].double()
        magnitude = kernel.abs().sum().item()
        cast = rounding_bound(torch.float32, terms=1, magnitude=magnitude)
        sums = rounding_bound(torch.float64, terms=2 * 21 * 21 + 1, magnitude=magnitude)  # normalisation, this sum
        assert kernel.shape == (21, 21) and kernel.sum().item() == pytest.approx(1, rel=0, abs=cast + sums)
    assert isinstance(draw['jpeg_quality1'], float) and 30 <= draw['jpeg_quality1'] <= 95
    assert draw['final_order'] in ('resize_sinc_jpeg', 'jpeg_resize_sinc')


def test_draws_follow_the_configured_probabilities_and_ranges():
    seed_all(1)
    opt = {
        'gaussian_noise_prob': 1.0,
        'noise_range': [5, 6],
        'gaussian_noise_prob2': 0.0,
        'poisson_scale_range2': [0.1, 0.2],
        'jpeg_range': [40, 41],
        'resize_prob': [0, 1, 0],
        'kernel_size_range': [7, 9]
    }
    draws = [sample_degradation(opt, 2) for _ in range(300)]
    assert all(d['noise1'] == 'gaussian' and 5 <= d['noise_level1'].min() <= d['noise_level1'].max() <= 6
               for d in draws)
    assert all(d['noise2'] == 'poisson' and 0.1 <= d['noise_level2'].min() <= d['noise_level2'].max() <= 0.2
               for d in draws)
    assert all(40 <= d['jpeg_quality1'] <= 41 and 0.15 <= d['resize1'] <= 1 for d in draws)
    assert all(d['kernel1'].shape == (9, 9) for d in draws)
    sinc = np.mean([d['sinc_kernel'].count_nonzero().item() > 1 for d in draws])
    blur2 = np.mean([d['blur2'] for d in draws])
    gray = np.mean([d['gray_noise1'].mean().item() for d in draws])
    mixed = np.mean([d['gray_noise1'].min() != d['gray_noise1'].max() for d in draws])
    assert abs(mixed - 2 * 0.4 * 0.6) < 0.08  # two images: gray and colour in one draw
    assert abs(sinc - 0.8) < 0.07 and abs(blur2 - 0.8) < 0.07 and abs(gray - 0.4) < 0.08


def test_kernels_are_padded_to_the_largest_size():
    seed_all(2)
    draw = sample_degradation({'kernel_size_range': [7, 7]}, 1)
    assert draw['kernel1'].shape == (7, 7)
    seed_all(2)
    draw = sample_degradation({'kernel_size_range': [7, 11]}, 1)
    assert draw['kernel1'].shape == (11, 11)


@pytest.mark.parametrize('opt, message', [({
    'kernel_size_range': [7, 20]
}, 'odd'), ({
    'jpeg_range': [0, 50]
}, r'\[1, 100\]')])
def test_bad_options_are_refused(opt, message):
    with pytest.raises(ValueError, match=message):
        degradation_options(opt)


def test_lq_is_an_8_bit_quantised_quarter_size_image(jpeger):
    seed_all(3)
    draw = sample_degradation({}, 2)
    lq = apply_degradation(textured(2, 96), draw, 4, jpeger)
    assert lq.shape == (2, 3, 24, 24) and lq.dtype == torch.float32
    assert 0 <= lq.min() and lq.max() <= 1
    assert torch.equal((lq * 255).round(), lq * 255)


def test_images_sharing_a_draw_are_degraded_identically_apart_from_noise(jpeger):
    image = textured(1, 128, seed=4)
    for seed in range(5):  # kernels, resize scales and modes, JPEG qualities and order all vary across draws
        seed_all(seed)
        draw = sample_degradation({}, 2)
        draw['noise_level1'] = torch.zeros(2)
        draw['noise_level2'] = torch.zeros(2)
        lq = apply_degradation(image.repeat(2, 1, 1, 1), draw, 4, jpeger)
        assert torch.equal(lq[0], lq[1])
    other = apply_degradation(image, select_images(sample_degradation({}, 2), slice(0, 1)), 4, jpeger)
    assert not torch.equal(other[0], lq[0])


def test_noise_magnitude_is_per_image():
    seed_all(5)
    image = 0.1 + 0.8 * textured(1, 64, seed=6).repeat(2, 1, 1, 1)  # away from the clipping at 0 and 1
    for noise in ('gaussian', 'poisson'):
        draw = {
            'noise1': noise,
            'noise_level1': torch.tensor([0.2, 2.0]) if noise == 'poisson' else torch.tensor([2.0, 20.0]),
            'gray_noise1': torch.zeros(2)
        }
        deviation = (add_noise(image, draw, 1) - image).std(dim=(1, 2, 3))
        assert 7 < deviation[1] / deviation[0] < 13, noise  # 10x the magnitude, 10x the deviation


def test_gray_or_colour_noise_is_chosen_per_image():
    seed_all(8)
    image = torch.full((2, 3, 32, 32), 0.5)
    draw = {'noise1': 'gaussian', 'noise_level1': torch.full((2, ), 20.0), 'gray_noise1': torch.tensor([1.0, 0.0])}
    noise = add_noise(image, draw, 1) - image
    assert torch.equal(noise[0, 0], noise[0, 1]) and torch.equal(noise[0, 1], noise[0, 2])  # gray: one field
    assert (noise[1, 0] - noise[1, 1]).abs().mean() > 0.03  # colour: a field per channel


def test_a_draw_for_other_images_is_refused(jpeger):
    with pytest.raises(ValueError, match='2 values of noise_level1 for 3 images'):
        apply_degradation(textured(3, 64), sample_degradation({}, 2), 4, jpeger)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_runs_on_the_device_of_the_images():
    seed_all(7)
    draw = sample_degradation({}, 2)
    lq = apply_degradation(textured(2, 128).cuda(), draw, 4, DiffJPEG(differentiable=False).cuda())
    assert lq.is_cuda and lq.shape == (2, 3, 32, 32)


def test_every_image_gets_a_noise_field_of_its_own_also_in_gray():
    """BasicSR's Gaussian noise shares one gray field across a batch; the original degrades images one by one."""
    seed_all(10)
    draw = {'noise1': 'gaussian', 'noise_level1': torch.full((2, ), 20.0), 'gray_noise1': torch.ones(2)}
    image = torch.full((2, 3, 64, 64), 0.5)
    noise = add_noise(image, draw, 1) - image
    assert noise.std() > 0.05 and torch.equal(noise[:, 0], noise[:, 1])  # gray: one field for R, G and B
    assert abs(torch.corrcoef(noise[:, 0].flatten(1))[0, 1]) < 0.1  # and another one for each image


def test_jpeg_quality_goes_in_as_a_float32_tensor_as_real_esrgan_passes_it():
    from basicsr.utils import DiffJPEG

    from metaf2n_plugin.data.degradation import _jpeg

    jpeger = DiffJPEG(differentiable=False)
    torch.manual_seed(0)
    images = torch.rand(3, 3, 40, 56)
    for quality in (30.0, 47.31, 94.9):
        real_esrgan = jpeger(images.clamp(0, 1), quality=images.new_full((3, ), quality))  # its feed_data's call
        assert torch.equal(_jpeg(images, quality, jpeger), real_esrgan.contiguous())
