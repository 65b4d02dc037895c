"""What the learned metrics (LPIPS, FID) share: their device, their input and their options check. Their backbone
weights are found by :func:`metaf2n_plugin.weights.locate_weights`; only ``random_weights: true`` builds untrained
ones.
"""
import inspect

import numpy as np
import torch
from basicsr.utils import img2tensor


def check_options(what, options, function):
    """ValueError naming the keys of a ``val.metrics`` entry that ``function`` does not take (``type`` and ``better``
    are BasicSR's)."""
    taken = {name for name, p in inspect.signature(function).parameters.items() if p.kind != p.VAR_KEYWORD}
    unknown = sorted(set(options) - taken - {'type', 'better'})
    if unknown:
        raise ValueError(f'{what}: unknown options {unknown}; it takes {sorted(taken - {"img", "img2"})}')


def metric_device(device=None):
    """``torch.device(device)``, or CUDA when available and ``device`` is None, else the CPU."""
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return torch.device(device)


def metric_input(img, device):
    """(H, W, 3) **BGR** image in [0, 255] (BasicSR's ``tensor2img`` output) -> (1, 3, H, W) float32 **RGB**
    tensor in [0, 1] on ``device``."""
    return img2tensor(np.asarray(img, dtype=np.float32), bgr2rgb=True)[None].to(device) / 255
