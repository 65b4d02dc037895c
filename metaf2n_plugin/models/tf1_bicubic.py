"""TF1's ``resize_bicubic(align_corners=False, half_pixel_centers=False)``, which the original MetaF2N used.

Output index ``i`` samples the input at ``i * in / out`` (``F.interpolate``: ``(i + 0.5) * in / out - 0.5``; up to ~0.7
apart on random data), taps ``floor - 1 .. floor + 2`` clamped to the border, Keys' weights (a = -0.75, as
``F.interpolate``) at the offset rounded to 1/1024 (TF's table).
"""
import functools

import torch

_TABLE_SIZE = 1024  # TF's kTableSize
_A = -0.75


@functools.lru_cache(maxsize=64)
def _interp_matrix(in_size, out_size):
    """(out_size, in_size) float64 CPU matrix M: ``M @ v`` is TF1's bicubic resize of v (in_size,)."""
    # Source coordinates in float32, as TF computes them.
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    floor = torch.floor(src)
    t = torch.round((src - floor).double() * _TABLE_SIZE) / _TABLE_SIZE  # lrintf(delta * kTableSize) / kTableSize
    weights = torch.stack(
        [
            ((_A * (t + 1) - 5 * _A) * (t + 1) + 8 * _A) * (t + 1) - 4 * _A,  # tap floor - 1, distance 1 + t
            ((_A + 2) * t - (_A + 3)) * t * t + 1,  # tap floor, distance t
            ((_A + 2) * (1 - t) - (_A + 3)) * (1 - t) * (1 - t) + 1,  # tap floor + 1, distance 1 - t
            ((_A * (2 - t) - 5 * _A) * (2 - t) + 8 * _A) * (2 - t) - 4 * _A,  # tap floor + 2, distance 2 - t
        ],
        dim=1)
    index = (floor.long()[:, None] + torch.arange(-1, 3)).clamp(0, in_size - 1)
    return torch.zeros(out_size, in_size, dtype=torch.float64).scatter_add_(1, index, weights)


def tf1_resize_bicubic(x, size):
    """(N, C, H, W) float32/float64, any range, any device -> (N, C, *size) of x's dtype and device, not clamped;
    differentiable."""
    out_h, out_w = (int(s) for s in size)
    rows = _interp_matrix(x.shape[-2], out_h).to(x)
    cols = _interp_matrix(x.shape[-1], out_w).to(x)
    return rows @ x @ cols.T
