"""tf1_resize_bicubic: TensorFlow 1's resize_bicubic (no half-pixel centres), checked against TF's own outputs.

``fixtures/tf1_resize_bicubic.npz`` holds random float32 inputs (NCHW) and the outputs of TF 2.21's
``tf.compat.v1.image.resize_bicubic(align_corners=False, half_pixel_centers=False)`` on them, transposed to NCHW;
TensorFlow itself is not needed here.
"""
import math
import os

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from metaf2n_plugin.models.tf1_bicubic import tf1_resize_bicubic
from tolerances import rounding_bound

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'tf1_resize_bicubic.npz')


def keys(d, a=-0.75):
    """Keys' cubic convolution kernel at distance ``d``."""
    d = abs(d)
    if d <= 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a if d < 2 else 0.0


# Σ|w| of the 4 taps, at most (over TF's 1024 table offsets): bounds the magnitude of a resized image per axis
TAPS_ABS_SUM = max(sum(abs(keys(t / 1024 - k)) for k in (-1, 0, 1, 2)) for t in range(1025))


def naive_tf1_bicubic(x, out_h, out_w):
    """Loop-by-loop TF1 bicubic of a (C, H, W) array: one output pixel at a time, 4x4 clamped taps."""

    def taps(i, in_size, out_size):
        src = i * in_size / out_size
        floor = math.floor(src)
        t = round((src - floor) * 1024) / 1024  # TF reads the weights from a 1024-step table
        return [(min(max(floor + k, 0), in_size - 1), keys(t - k)) for k in (-1, 0, 1, 2)]

    channels, in_h, in_w = x.shape
    y = np.zeros((channels, out_h, out_w))
    for c in range(channels):
        for i in range(out_h):
            for j in range(out_w):
                for row, w_row in taps(i, in_h, out_h):
                    for col, w_col in taps(j, in_w, out_w):
                        y[c, i, j] += w_row * w_col * x[c, row, col]
    return y


@pytest.mark.parametrize('case', range(3))
def test_matches_tensorflow_1_resize_bicubic(case):
    # (2, 3, 7, 9) -> (28, 36), (1, 2, 16, 16) -> (64, 64), (1, 1, 10, 6) -> (4, 15)
    with np.load(FIXTURE) as fixture:
        x, expected = torch.from_numpy(fixture[f'input_{case}']), torch.from_numpy(fixture[f'output_{case}'])
    y = tf1_resize_bicubic(x, expected.shape[-2:])
    assert y.dtype == torch.float32 and y.shape == expected.shape
    # float32, magnitude Σ|w_row||w_col||x|. Ours: row and column weights cast to float32, a column then a row matrix
    # product (H + W terms, all but 4 + 4 of them zeros), border taps merged. TF: its float32 table weights (Keys'
    # polynomial in double, rounded once) and two 4-tap passes.
    in_h, in_w = x.shape[-2:]
    terms = (in_h + in_w + 3) + (2 + 4 + 4)
    bound = rounding_bound(torch.float32, terms, magnitude=TAPS_ABS_SUM**2 * x.abs().max().item())
    torch.testing.assert_close(y, expected, atol=bound, rtol=0)


@pytest.mark.parametrize('in_hw, out_hw', [((5, 6), (7, 11)), ((9, 4), (3, 10)), ((1, 3), (2, 1))])
def test_matches_a_naive_per_pixel_reference_in_float64(in_hw, out_hw):
    x = torch.randn(2, *in_hw, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 10
    y = tf1_resize_bicubic(x[None], out_hw)[0]
    # float64, magnitude Σ|w_row||w_col||x|. Both take the same weights (the same Keys polynomials of the same table
    # offsets, in float64); ours sums H + W terms and merges border taps, the loop multiplies them (2) and sums 16.
    terms = (sum(in_hw) + 1) + (2 + 16)
    bound = rounding_bound(torch.float64, terms, magnitude=TAPS_ABS_SUM**2 * x.abs().max().item())
    torch.testing.assert_close(y, torch.from_numpy(naive_tf1_bicubic(x.numpy(), *out_hw)), atol=bound, rtol=0)


def test_differs_from_torch_bicubic_which_uses_half_pixel_centres():
    x = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    torch_bicubic = F.interpolate(x, size=(28, 36), mode='bicubic', align_corners=False)
    assert (tf1_resize_bicubic(x, (28, 36)) - torch_bicubic).abs().max() > 0.1


def test_gradients_flow_to_the_input():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: tf1_resize_bicubic(v, (5, 7)), (x, ))


@pytest.mark.parametrize('out_hw', [(28, 36), (3, 4), (10, 9)])
def test_constant_image_stays_constant(out_hw):
    x = torch.full((1, 3, 7, 9), 0.37, dtype=torch.float64)
    torch.testing.assert_close(tf1_resize_bicubic(x, out_hw), torch.full((1, 3, *out_hw), 0.37, dtype=torch.float64))
